"""``validate`` as a compiler pass: located errors and warnings, in text, JSON and GitHub
annotations; unset vars; YAML 1.1 habits explained; the schema's editor help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, run_cli

MISTAKES = """\
version: 1
name: mistakes
vars:
  channel: C0123
  zip: 01234
providers:
  crm: {type: membrane}
steps:
  - id: notify
    provider: crm
    dispatch: {id: send}
    input:
      channel: "{{ vars.chanel }}"
      text: "{{ vars.greeting }}"
      urgent: yes
      quiet: "no"
      region: "{{ vars.region | default('eu') }}"
  - id: cleanup
    provider: crm
    dispatch: {id: "{{ steps.notfy.run_id }}"}
    continue_on_error: yes
    when: "{{ vars.flag is defined and vars.flag }}"
"""


def test_github_annotations_point_at_each_line(write, tmp_path: Path) -> None:
    path = write(MISTAKES, "mistakes.yml")
    result = run_cli(["validate", "mistakes.yml", "--format", "github"], cwd=tmp_path)
    assert result.code == 2
    assert result.stdout.splitlines() == [
        "::warning file=mistakes.yml,line=5,col=8::vars.zip: YAML reads 01234 as the number 1234; "
        'quote it ("01234") to keep it as written',
        "::warning file=mistakes.yml,line=13,col=16::steps[0] (notify) input.channel: vars.chanel is not set "
        "by vars:, --vars-file or --var (did you mean 'channel'?): a run fails here unless it is given "
        "--var chanel=VALUE (or add a default under vars:)",
        "::warning file=mistakes.yml,line=14,col=13::steps[0] (notify) input.text: vars.greeting is not set "
        "by vars:, --vars-file or --var: a run fails here unless it is given --var greeting=VALUE "
        "(or add a default under vars:)",
        "::warning file=mistakes.yml,line=15,col=15::steps[0] (notify) input.urgent: yes is the string 'yes' "
        "here, not a boolean (in YAML 1.2, which runbook reads, only true and false are booleans): write "
        'true for a boolean, or quote it ("yes") to keep the text',
        "::error file=mistakes.yml,line=20,col=20::steps[1] (cleanup) dispatch.id: unknown step 'notfy' "
        "(did you mean 'notify'?)",
        "::error file=mistakes.yml,line=21,col=24::steps[1] (cleanup) continue_on_error: expected true or "
        "false, got a string ('yes'): in YAML 1.2, which runbook reads, only true and false are booleans; "
        "write true",
    ]
    assert path.read_text() == MISTAKES


def test_vars_given_on_the_command_line_silence_their_warning(write, tmp_path: Path) -> None:
    write(MISTAKES.replace("yes", "true").replace("notfy", "notify"), "fixed.yml")
    (tmp_path / "vars.yml").write_text("greeting: hello\n")
    result = run_cli(["validate", "fixed.yml", "--var", "chanel=C1", "--vars-file", "vars.yml"], cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "vars.chanel" not in result.stderr and "vars.greeting" not in result.stderr
    assert result.stdout == "fixed.yml: valid (1 warning)\n"  # only the 01234 one is left
    assert result.stderr.startswith("fixed.yml:5:8: warning: vars.zip: YAML reads 01234")
    only_warnings = run_cli(["validate", "fixed.yml", "--format", "github"], cwd=tmp_path)
    assert only_warnings.code == 0  # warnings never fail validation
    assert all(line.startswith("::warning ") for line in only_warnings.stdout.splitlines())


def test_json_format_counts_errors_and_warnings(write, tmp_path: Path) -> None:
    write(MISTAKES, "mistakes.yml")
    write("version: 1\nname: ok\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n", "ok.yml")
    result = run_cli(["validate", ".", "--format", "json"], cwd=tmp_path)
    assert result.code == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    assert report["files"] == ["./mistakes.yml", "./ok.yml"]
    assert (report["errors"], report["warnings"]) == (2, 4)
    assert [(p["line"], p["severity"]) for p in report["problems"]] == [
        (5, "warning"), (13, "warning"), (14, "warning"), (15, "warning"), (20, "error"), (21, "error")]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("version: 1.0\n", "1:10: version: must be the integer 1, not 1.0 (YAML reads 1.0 as a decimal "
                           "number): write version: 1"),
        ('version: "1"\n', "version: must be 1, got '1'; write version: 1, without quotes"),
        ("version: 1\nsteps:\n  - {id: a, provider: membrane, dispatch: {id: x}, with: {connection_key: true}}\n",
         'with.connection_key: expected a string, got the boolean true; quote it to keep it as text: "true" '
         "(YAML reads an unquoted true as the boolean true)"),
        ("version: 1\nsteps:\n  - {id: a, provider: membrane, dispatch: {id: x}, with: {connection_key: 1.0}}\n",
         'expected a string, got the number 1.0; quote it to keep it as text: "1.0" (YAML reads an unquoted '
         "1.0 as the number 1.0)"),
        ("version: 1\nsteps:\n  - {id: a, provider: membrane, dispatch: {id: x}, when: off}\n",
         "when: 'off' is a string, not a boolean (in YAML 1.2, which runbook reads, only true and false are "
         "booleans): write when: false"),
    ],
)
def test_yaml_traps_are_explained_with_the_fix(write, tmp_path: Path, body: str, expected: str) -> None:
    if "name:" not in body:
        body = body.replace("\n", "\nname: traps\n", 1) if body.startswith("version") else body
    if "steps:" not in body:
        body += "steps: [{id: a, provider: membrane, dispatch: {id: x}}]\n"
    write(body, "traps.yml")
    result = run_cli(["validate", "traps.yml"], cwd=tmp_path)
    assert result.code == 2
    assert expected in result.stderr, result.stderr


def test_quoted_or_optional_values_raise_no_warning(write, tmp_path: Path) -> None:
    write("""\
version: 1
name: quiet
vars: {zip: "01234", ratio: 1.5, version: 1.0}
steps:
  - id: a
    provider: membrane
    dispatch: {id: x}
    with: {meta: {flag: true}}
    when: "{{ vars.channel is defined }}"
    input:
      answer: 'no'
      on: "yes"
      channel: "{{ vars.channel }}"
      region: "{{ vars.region | default('eu') }}"
      tier: "{{ vars['tier'] if 'tier' in vars else 'basic' }}"
      count: 12
""", "quiet.yml")
    result = run_cli(["validate", "quiet.yml"], cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stderr == ""
    assert result.stdout == "quiet.yml: valid\n"


def test_examples_validate_without_warnings(tmp_path: Path) -> None:
    result = run_cli(["validate", str(ROOT / "runbooks")], cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert "warning" not in result.stderr


def test_problems_of_several_files_are_sorted(write, tmp_path: Path) -> None:
    write("version: 1\nname: b\nsteps: [{id: a, provider: membrne, dispatch: {id: x}}]\n", "b.yml")
    write("version: 1\nname: a\nstep: []\n", "a.yml")
    result = run_cli(["validate", "b.yml", "a.yml"], cwd=tmp_path)
    assert result.code == 2
    files = [line.split(":")[0] for line in result.stderr.splitlines()[:-1]]
    assert files == sorted(files) and set(files) == {"a.yml", "b.yml"}
    assert "(did you mean 'membrane'?)" in result.stderr
    assert "unknown key 'step' (did you mean 'steps'?)" in result.stderr
    assert "missing required key 'steps'" not in result.stderr  # the misspelt key is one mistake (issue 16)
    assert result.stderr.splitlines()[-1] == "2 errors in 2 files"


_OK = "version: 1\nname: ok\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n"
_MODELINE = "# yaml-language-server: $schema=../schemas/runbook.schema.json\n"


def _tree(tmp_path: Path) -> None:
    """runbooks/ with two runbooks (one only by its modeline), a library part and two YAML files that are not."""
    (tmp_path / "runbooks" / "lib").mkdir(parents=True)
    (tmp_path / "runbooks" / "ok.yml").write_text(_OK)
    (tmp_path / "runbooks" / "typo.yml").write_text(_MODELINE + "version: 1\nname: typo\nstep: []\n")
    (tmp_path / "runbooks" / "settings.yml").write_text("a: 1\n")
    (tmp_path / "runbooks" / "matrix.yaml").write_text("include: [a, b]\nsteps_count: 3\n  nested_steps: x\n")
    (tmp_path / "runbooks" / "lib" / "part.yml").write_text(_OK.replace("id: a", "id: 9"))
    (tmp_path / "runbooks" / "lib" / "page.tmpl.yml").write_text('"steps": {{ steps }}\n')


def test_a_directory_skips_yaml_files_that_are_not_runbooks(tmp_path: Path) -> None:
    _tree(tmp_path)
    result = run_cli(["validate", "runbooks"], cwd=tmp_path)
    assert result.code == 2
    assert result.stdout.splitlines() == [
        "runbooks/ok.yml: valid",
        "skipped 2 YAML files that are not runbooks (no steps: and no runbook $schema modeline)",
    ]
    assert "runbooks/typo.yml:4:1: runbook: unknown key 'step' (did you mean 'steps'?)" in result.stderr
    assert "runbooks/lib/part.yml:3:" in result.stderr and "page.tmpl.yml:" in result.stderr
    assert "settings.yml" not in result.stderr and "matrix.yaml" not in result.stderr
    by_glob = run_cli(["validate", "runbooks/*.y*ml", "--format", "json"], cwd=tmp_path)
    assert by_glob.code == 2
    report = json.loads(by_glob.stdout)
    assert report["files"] == ["runbooks/ok.yml", "runbooks/typo.yml"]
    assert report["skipped"] == ["runbooks/matrix.yaml", "runbooks/settings.yml"]


def test_excludes_match_the_path_or_the_name(tmp_path: Path) -> None:
    _tree(tmp_path)
    result = run_cli(["validate", "runbooks", "--exclude", "runbooks/lib/*", "--exclude", "typo.yml"], cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.stdout == ("runbooks/ok.yml: valid\n"
                             "skipped 2 YAML files that are not runbooks (no steps: and no runbook $schema "
                             "modeline)\n")
    assert result.stderr == ""
    dotted = run_cli(["validate", "./runbooks", "--exclude", "runbooks/lib/*", "--exclude", "*.tmpl.yml",
                      "--exclude", "runbooks/typo.yml", "--format", "json"], cwd=tmp_path)
    assert dotted.code == 0, dotted.stdout
    assert json.loads(dotted.stdout)["files"] == ["./runbooks/ok.yml"]
    named = run_cli(["validate", "runbooks/ok.yml", "runbooks/typo.yml", "--exclude", "typo.yml"], cwd=tmp_path)
    assert (named.code, named.stdout) == (0, "runbooks/ok.yml: valid\n")


def test_files_named_on_the_command_line_are_always_checked(tmp_path: Path) -> None:
    _tree(tmp_path)
    result = run_cli(["validate", "runbooks/settings.yml", "runbooks/ok.yml"], cwd=tmp_path)
    assert result.code == 2
    assert result.stdout == "runbooks/ok.yml: valid\n"  # nothing skipped
    assert "runbooks/settings.yml:1:1: runbook: unknown key 'a'" in result.stderr


def test_a_directory_without_runbooks_is_still_an_error(tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "settings.yml").write_text("a: 1\n")
    result = run_cli(["validate", "config"], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr == ("validate: no runbook files matched config (skipped 1 YAML file that is not a "
                             "runbook (no steps: and no runbook $schema modeline))\n")
    assert result.stdout == ""


def test_runbooks_only_skips_named_files_too_and_nothing_left_is_a_quiet_success(tmp_path: Path) -> None:
    _tree(tmp_path)
    quiet = run_cli(["validate", "--runbooks-only", "runbooks/settings.yml", "runbooks/matrix.yaml"], cwd=tmp_path)
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "", "")
    mixed = run_cli(["validate", "--runbooks-only", "runbooks/settings.yml", "runbooks/ok.yml"], cwd=tmp_path)
    assert mixed.code == 0, mixed.stderr
    assert mixed.stdout == ("runbooks/ok.yml: valid\n"
                            "skipped 1 YAML file that is not a runbook (no steps: and no runbook $schema modeline)\n")
    as_json = run_cli(["validate", "--runbooks-only", "runbooks/settings.yml", "runbooks/typo.yml",
                       "--format", "json"], cwd=tmp_path)
    assert as_json.code == 2  # the modeline makes typo.yml a runbook, so its missing steps: is reported
    report = json.loads(as_json.stdout)
    assert (report["files"], report["skipped"]) == (["runbooks/typo.yml"], ["runbooks/settings.yml"])
    assert run_cli(["validate", "--runbooks-only", "runbooks/absent.yml"], cwd=tmp_path).code == 2  # unreadable
    excluded = run_cli(["validate", "--runbooks-only", "--exclude", "lib/*", "lib/part.yml"], cwd=tmp_path / "runbooks")
    assert (excluded.code, excluded.stdout, excluded.stderr) == (0, "", "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("version: 1\nname: tabs\nsteps:\n  - id: a\n\tprovider: membrane\n",
         "slip.yml:5:1: YAML syntax error: a tab in the indentation: YAML indents with spaces only"),
        ("version: 1\nname: colon\ndescription: Note: this runs twice\nsteps: []\n",
         "slip.yml:3:18: YAML syntax error: mapping values are not allowed here (a ': ' inside an unquoted value "
         "starts a mapping: quote the whole value)"),
    ],
)
def test_yaml_slips_are_explained_by_validate(write, tmp_path: Path, text: str, expected: str) -> None:
    write(text, "slip.yml")
    result = run_cli(["validate", "slip.yml"], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.splitlines() == [expected, "1 error in 1 file"]
    github = run_cli(["validate", "slip.yml", "--format", "github"], cwd=tmp_path)
    line, col, message = expected.split(":", 3)[1:]
    assert github.stdout.startswith(f"::error file=slip.yml,line={line},col={col}::{message.strip()}")


def _properties(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("examples", "default", "const", "enum", "x-runbook"):
                continue  # data, not schema
            if key in ("if", "then", "else"):
                continue  # a condition, or a refinement of a property declared (with its help) beside it
            if key == "properties" and isinstance(value, dict):
                # false: a key that may not be there (one dispatch style excludes the others)
                found += [(f"{where}.{name}", schema) for name, schema in value.items() if schema is not False]
            found += _properties(value, f"{where}.{key}" if key != "properties" else where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _properties(value, f"{where}[{i}]")
    return found


@pytest.mark.parametrize("name", ["runbook.schema.json", "providers/membrane.json", "providers/pipedream.json",
                                  "providers/http.json"])
def test_every_schema_property_has_editor_help(name: str) -> None:
    """yaml-language-server shows a property's title and description and offers its examples."""
    schema = json.loads((ROOT / "schemas" / name).read_text())
    defs = schema["$defs"]
    properties = _properties(schema, "")
    assert len(properties) > (30 if name == "runbook.schema.json" else 3)
    for where, prop in properties:
        if "$ref" in prop and len(prop) == 1:  # a bare reference carries its definition's help
            prop = defs[prop["$ref"].rsplit("/", 1)[-1]]
        missing = [k for k in ("title", "description", "examples") if not prop.get(k)]
        assert not missing, f"{where} has no {', '.join(missing)}"
    for name, definition in defs.items():
        assert definition.get("title") and definition.get("description"), name
