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
    assert result.stderr.splitlines()[-1] == "3 errors in 2 files"


def _properties(node: Any, where: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("examples", "default", "const", "enum"):
                continue  # data, not schema
            if key == "properties" and isinstance(value, dict):
                found += [(f"{where}.{name}", schema) for name, schema in value.items()]
            found += _properties(value, f"{where}.{key}" if key != "properties" else where)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _properties(value, f"{where}[{i}]")
    return found


def test_every_schema_property_has_editor_help() -> None:
    """yaml-language-server shows a property's title and description and offers its examples."""
    schema = json.loads((ROOT / "schemas" / "runbook.schema.json").read_text())
    defs = schema["$defs"]
    properties = _properties(schema, "")
    assert len(properties) > 30
    for where, prop in properties:
        if "$ref" in prop and len(prop) == 1:  # a bare reference carries its definition's help
            prop = defs[prop["$ref"].rsplit("/", 1)[-1]]
        missing = [k for k in ("title", "description", "examples") if not prop.get(k)]
        assert not missing, f"{where} has no {', '.join(missing)}"
    for name, definition in defs.items():
        assert definition.get("title") and definition.get("description"), name
