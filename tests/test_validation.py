"""Validation: every mistake of a file, located, with the field named; exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.errors import LocatedErrors
from engine.validation import load_runbook
from tests.conftest import ROOT, run_cli

FIVE_MISTAKES = """
version: 1
name: five-mistakes
providers:
  crm: {type: membrane}
steps:
  - id: first
    provider: crm
    dispatch: {id: create-contact}
    tiemout: 30s
  - id: second
    provider: crmm
    dispatch: {id: x}
  - id: third
    provider: crm
    dispatch: {id: x}
    input: {contact: "{{ steps.fourth.output.id }}"}
  - id: fourth
    provider: crm
    dispatch: {id: x, key: y}
  - id: first
    provider: crm
    dispatch: {key: y}
"""


def problems(path: Path) -> list[str]:
    with pytest.raises(LocatedErrors) as info:
        load_runbook(str(path))
    return [str(p) for p in info.value.problems]


def test_five_mistakes_give_five_located_errors_and_exit_2(write, tmp_path: Path) -> None:
    path = write(FIVE_MISTAKES)
    result = run_cli(["validate", str(path)], cwd=tmp_path)
    assert result.code == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith(str(path))]
    assert lines == [
        f"{path}:9:5: steps[0] (first): unknown key 'tiemout' (did you mean 'timeout'?)",
        f"{path}:11:15: steps[1] (second) provider: unknown provider 'crmm' (did you mean "
        "'crm'?): name an entry of providers: or a provider type (http, membrane, pipedream)",
        f"{path}:16:22: steps[2] (third) input.contact: step 'fourth' has not run yet here: "
        "a template can refer only to earlier steps",
        f"{path}:19:15: steps[3] (fourth) dispatch: needs exactly one dispatch style of id, "
        "key, api, code (found: id, key)",
        f"{path}:20:9: steps[4] (first) id: duplicate step id 'first' (first used on line 6)",
    ]
    assert result.stderr.strip().endswith("5 errors in 1 file")


def test_github_and_json_formats(write, tmp_path: Path) -> None:
    path = write(FIVE_MISTAKES)
    gh = run_cli(["validate", str(path), "--format", "github"], cwd=tmp_path)
    assert gh.code == 2
    first = gh.stdout.splitlines()[0]
    assert first == (f"::error file={path},line=9,col=5::steps[0] (first): unknown key "
                     "'tiemout' (did you mean 'timeout'?)")
    as_json = run_cli(["validate", str(path), "--format", "json"], cwd=tmp_path)
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    assert [(p["line"], p["col"]) for p in report["problems"]] == [
        (9, 5), (11, 15), (16, 22), (19, 15), (20, 9)]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("version: 1.0\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n",
         "1:10: version: must be the integer 1, not 1.0"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
         " with: {connection_key: 1.0}}]\n",
         "with.connection_key: expected a string, got the number 1.0; quote it to keep it "
         "as text: \"1.0\""),
        ("version: 1\nname: x\nsteps: [{id: 1a, provider: membrane, dispatch: {id: x}}]\n",
         "3:14: steps[0] (1a) id: '1a' is not a valid step id"),
        ("version: 1\nname: x\nsteps: []\n", "3:8: steps: a runbook needs at least one step"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
         " timeout: 3 seconds}]\n", "is not a duration"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
         " retry: {on: [5xx, sometimes]}}]\n", "'sometimes' is not a retry condition"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: http, dispatch: {code: 'x'}}]\n",
         "does not support dispatch style 'code'; it supports: api"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {api: "
         "{method: GET, url: 'https://x'}}}]\n", "the membrane provider takes path here, not url"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
         " input: '{{ stepz.a }}'}]\n", "unknown name 'stepz' (did you mean 'steps'?)"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
         " input: '{{ vars.a + }}'}]\n", "template syntax error"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
         " input: '{{ steps.nope.output }}'}]\n", "unknown step 'nope'"),
        ("version: 1\nname: x\nproviders: {p: {type: membrain}}\nsteps: [{id: a, provider: p,"
         " dispatch: {id: x}}]\n", "unknown provider type 'membrain' (did you mean 'membrane'?)"),
        ("version: 1\nname: x\nproviders: {p: {type: membrane, token: '{{ steps.a.output }}'}}\n"
         "steps: [{id: a, provider: p, dispatch: {id: x}}]\n",
         "provider configuration cannot refer to steps"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
         " with: {conection_key: k}}]\n", "unknown key 'conection_key' (did you mean "
         "'connection_key'?)"),
        ("name: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n",
         "1:1: runbook: missing required key 'version'"),
        ("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n"
         "finaly: []\n", "4:1: runbook: unknown key 'finaly' (did you mean 'finally'?)"),
    ],
)
def test_each_mistake_is_located_and_named(write, body: str, expected: str) -> None:
    found = problems(write(body))
    assert any(expected in p for p in found), found


def test_templated_option_values_are_left_for_run_time(write) -> None:
    path = write("""
        version: 1
        name: x
        vars: {key: hubspot}
        steps:
          - id: a
            provider: membrane
            dispatch: {id: x}
            with: {connection_key: "{{ vars.key }}", meta: "{{ {'a': 1} }}"}
            assert: ["steps.a.output is defined"]
        finally:
          - id: b
            provider: membrane
            dispatch: {id: "{{ steps.a.run_id }}"}
            when: "{{ run.status == 'failed' }}"
        outputs: {last: "{{ steps.b.status }}"}
    """)
    runbook, _ = load_runbook(str(path))
    assert [s.id for s in runbook.steps + runbook.finally_steps] == ["a", "b"]


def test_validate_takes_directories_and_globs(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    good = "version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n"
    (tmp_path / "d" / "one.yml").write_text(good)
    (tmp_path / "d" / "two.yaml").write_text(good.replace("id: a", "id: 9"))
    result = run_cli(["validate", "d"], cwd=tmp_path)
    assert result.code == 2
    assert "d/one.yml: valid" in result.stdout
    assert "d/two.yaml:3:14: steps[0] id: expected a string, got the number 9" in result.stderr
    assert run_cli(["validate", "d/*.yml"], cwd=tmp_path).code == 0
    missing = run_cli(["validate", "nothing-*.yml"], cwd=tmp_path)
    assert missing.code == 2 and "no runbook files matched" in missing.stderr


def test_unreadable_file_is_exit_2(tmp_path: Path) -> None:
    result = run_cli(["validate", "absent.yml"], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.startswith("absent.yml:1:1: cannot read file")


def test_schema_command_prints_the_schemas(tmp_path: Path) -> None:
    for which, title in (("runbook", "runbook"), ("manifest", "runbook results manifest")):
        result = run_cli(["schema", which], cwd=tmp_path)
        assert result.code == 0
        assert json.loads(result.stdout)["title"] == title


# --- The one wording of schema errors (engine.schemas) -------------------------------------


def test_a_rendered_provider_configuration_is_worded_as_validation_words_it(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: rendered
        vars: {flag: maybe, project: abc}
        providers:
          web: {type: http, base_url: "https://api.example.com", insecure: "{{ vars.flag }}"}
          pd: {type: pipedream, project_id: "{{ vars.project }}", environment: development, external_user_id: u}
        steps:
          - {id: a, provider: web, dispatch: {api: {path: /x}}}
          - {id: b, provider: pd, dispatch: {id: x}}
    """)
    assert run_cli(["validate", str(path)], cwd=tmp_path).code == 0  # templates are checked once rendered
    result = run_cli(["run", str(path)], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.splitlines() == [
        f"{path}:5:8: providers.web.insecure: expected true or false, got a string",
        f"{path}:6:7: providers.pd.project_id: 'abc' does not match the pattern ^proj_[a-zA-Z0-9]+$",
    ]
    assert not result.manifest_path.exists()


def test_messages_come_from_the_failed_keyword_and_the_schemas_annotation() -> None:
    from engine.schemas import checker, schema_messages

    schema = {
        "type": "object",
        "properties": {
            "every": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$",
                      "x-messages": {"pattern": "{value} is not an interval"}},
            "plain": {"type": "string", "pattern": "^(ms|s|m|h)$"},  # a duration-like regex, no annotation
            "odd": {"type": "string", "minLength": 3, "x-messages": {"minLength": "{nothing} we give"}},
            "pair": {"type": "object", "maxProperties": 1, "x-messages": {"maxProperties": "one of ({keys})"}},
        },
    }
    found = schema_messages(checker(schema), {"every": "soon", "plain": "10s", "odd": "ab", "pair": {"a": 1, "b": 2}},
                            ("top",))
    assert sorted((m.field, m.text) for m in found) == [
        (("top", "every"), "'soon' is not an interval"),
        (("top", "odd"), "'ab' is too short"),  # a placeholder we do not give: jsonschema's message
        (("top", "pair"), "one of (a, b)"),
        (("top", "plain"), "'10s' does not match the pattern ^(ms|s|m|h)$"),
    ]


def test_unknown_and_missing_keys_point_at_the_key() -> None:
    from engine.schemas import checker, schema_messages

    schema = {"type": "object", "required": ["name"], "additionalProperties": False,
              "properties": {"name": {"type": "string"}, "count": {"type": "integer"}}}
    found = schema_messages(checker(schema), {"label": "x", "count": "3"}, ("p",), written={("p", "count"): "3"})
    assert sorted((m.field, m.text, m.at, m.key) for m in found) == [
        (("p",), "missing required key 'name'", ("p",), False),
        (("p",), "unknown key 'label'", ("p", "label"), True),
        (("p", "count"), "expected an integer, got a string", ("p", "count"), False),
    ]
    # a misspelt required key is one mistake, one message (issue 16)
    typo = schema_messages(checker(schema), {"nmae": "x"}, ("p",))
    assert [(m.text, m.at) for m in typo] == [("unknown key 'nmae' (did you mean 'name'?)", ("p", "nmae"))]


def test_every_message_annotation_names_a_keyword_of_its_schema() -> None:
    from engine.schemas import load_schema, schema_dir

    def annotations(node: Any) -> Iterator[dict[str, Any]]:
        if isinstance(node, dict):
            if "x-messages" in node:
                yield node
            for key, value in node.items():
                if key not in ("examples", "default", "const", "enum", "x-messages"):
                    yield from annotations(value)
        elif isinstance(node, list):
            for value in node:
                yield from annotations(value)

    names = [str(p.relative_to(schema_dir())) for p in sorted(schema_dir().rglob("*.json"))]
    found = [node for name in names for node in annotations(load_schema(name))]
    assert len(found) >= 5
    for node in found:
        for keyword, text in node["x-messages"].items():
            assert keyword in node, f"x-messages names {keyword!r}, which its schema does not have"
            text.format(value="'v'", keys="a, b")  # only the placeholders engine.schemas gives


def test_checkers_are_kept_and_their_caches_bounded() -> None:
    from engine import conformance, schemas

    schema: dict[str, Any] = {"type": "object"}
    assert schemas.checker(schema) is schemas.checker(schema)
    assert schemas.validator("runbook.schema.json") is schemas.validator("runbook.schema.json")
    for i in range(100):
        schemas.checker({"type": "object", "maxProperties": i})
        conformance.conforms({"maxProperties": i}, {})
    for cached in (schemas._checker_of, schemas.validator, conformance._predicate_of):
        info = cached.cache_info()
        assert info.maxsize is not None and info.currsize <= info.maxsize


def test_validating_a_valid_runbook_never_imports_jsonschema(tmp_path: Path) -> None:
    code = ("import sys; from engine.validation import check_file; "
            "assert check_file(sys.argv[1]) == []; "
            "assert 'jsonschema' not in sys.modules, 'jsonschema imported'")
    for name in ("demo.yml", "pipedream-stash.yml", "http-api.yml"):
        proc = subprocess.run([sys.executable, "-c", code, str(ROOT / "runbooks" / name)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
