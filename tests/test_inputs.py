"""Declared inputs (SPEC §12): declarations checked, values checked before anything is sent,
defaults applied, `runbook schema inputs`, and plan's list."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.emulator import Emulator
from tests.conftest import act_bodies, base_env, run_cli

RUNBOOK = """\
version: 1
name: onboard-one
inputs:
  email: {type: string, required: true, pattern: "^[^@]+@[^@]+$", description: The customer's email}
  tier: {type: string, enum: [standard, vip], default: standard}
  seats: {type: integer, minimum: 1, maximum: 500, default: 1}
  ratio: {type: number, default: 0.5}
  trial: {type: boolean, default: false}
  tags: {type: array, default: []}
  extra: {type: object, default: {}}
vars:
  channel: C01
steps:
  - id: invite
    provider: membrane
    dispatch: {key: invite}
    input:
      email: "{{ vars.email }}"
      tier: "{{ vars.tier }}"
      seats: "{{ vars.seats }}"
      ratio: "{{ vars.ratio }}"
      trial: "{{ vars.trial }}"
      tags: "{{ vars.tags }}"
      extra: "{{ vars.extra }}"
"""


def test_values_and_defaults_reach_the_steps(write, tmp_path: Path, emulator: Emulator,
                                             membrane_env: dict[str, str]) -> None:
    path = write(RUNBOOK)
    result = run_cli(["run", str(path), "--var", "email=ann@example.com", "--var", "seats=3", "--var",
                      "tags=[a, b]"], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stdout + result.stderr
    (body,) = act_bodies(emulator)
    assert body["input"] == {"email": "ann@example.com", "tier": "standard", "seats": 3, "ratio": 0.5,
                             "trial": False, "tags": ["a", "b"], "extra": {}}
    assert result.manifest["vars"]["seats"] == 3 and result.manifest["vars"]["channel"] == "C01"


@pytest.mark.parametrize(("args", "line"), [
    ([], "4:3: inputs.email: input 'email' is required: give the run --var email=VALUE (or --vars-file)"),
    (["--var", "email=nobody"], "4:10: inputs.email: the value given: 'nobody' does not match the pattern "
                                "^[^@]+@[^@]+$"),
    (["--var", "tier=gold"], "5:9: inputs.tier: the value given: 'gold' is not one of standard, vip"),
    (["--var", "seats=0"], "6:10: inputs.seats: the value given: 0 is less than the minimum of 1"),
    (["--var", "seats=501"], "6:10: inputs.seats: the value given: 501 is greater than the maximum of 500"),
    (["--var", "seats=two"], "6:10: inputs.seats: the value given: expected an integer, got a string"),
    (["--var", "ratio=half"], "7:10: inputs.ratio: the value given: expected a number, got a string"),
    (["--var", "trial=yes"], "8:10: inputs.trial: the value given: expected true or false, got a string"),
    (["--var", "tags=a"], "9:9: inputs.tags: the value given: expected a list, got a string"),
    (["--var", "extra=[1]"], "10:10: inputs.extra: the value given: expected a mapping, got a list"),
])
def test_a_bad_value_is_refused_before_anything_is_sent(write, tmp_path: Path, emulator: Emulator,
                                                        membrane_env: dict[str, str], args: list[str],
                                                        line: str) -> None:
    path = write(RUNBOOK)
    given = args if any(a.startswith("email=") for a in args) else ["--var", "email=a@b.c", *args]
    if not args:
        given = []
    result = run_cli(["run", str(path), *given], cwd=tmp_path, env=membrane_env)
    assert result.code == 2
    assert any(err.startswith(f"{path}:{line}") for err in result.stderr.splitlines()), result.stderr
    assert act_bodies(emulator) == []
    assert not result.manifest_path.exists()


def test_a_vars_file_is_checked_too_and_a_misspelt_input_gets_did_you_mean(write, tmp_path: Path) -> None:
    path = write(RUNBOOK)
    values = write("email: a@b.c\nseats: -2\n", name="values.yml")
    result = run_cli(["plan", str(path), "--vars-file", str(values)], cwd=tmp_path)
    assert result.code == 2 and "inputs.seats: the value given: -2 is less than the minimum of 1" in result.stderr
    result = run_cli(["plan", str(path), "--var", "email=a@b.c", "--var", "seets=3"], cwd=tmp_path)
    assert result.code == 2
    assert ("--var seets: this runbook neither declares vars.seets under vars: or inputs: nor uses it "
            "(did you mean 'seats'?)") in result.stderr


def test_declarations_are_checked(write, tmp_path: Path) -> None:
    path = write("""\
        version: 1
        name: slips
        inputs:
          channel: {type: string}
          n: {type: integer, minimum: 1, default: 0}
          who: {type: string, required: true, default: ann}
          size: {type: integr}
        vars:
          channel: C01
        steps:
          - {id: a, provider: membrane, dispatch: {key: k}}
        """)
    result = run_cli(["validate", str(path)], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.splitlines()[:-1] == [
        f"{path}:7:16: inputs.size.type: 'integr' is not one of string, integer, number, boolean, array, object "
        "(did you mean 'integer'?)",
    ]
    fixed = path.read_text().replace("integr}", "integer}")
    path.write_text(fixed)
    result = run_cli(["validate", str(path)], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.splitlines()[:-1] == [
        f"{path}:4:3: inputs.channel: 'channel' is also under vars: a name is an input or an untyped variable, "
        "not both",
        f"{path}:5:43: inputs.n: its default: 0 is less than the minimum of 1",
        f"{path}:6:39: inputs.who: a required input has no default (drop one of the two)",
    ]


def test_validate_does_not_ask_for_a_required_input_but_run_and_plan_do(write, tmp_path: Path) -> None:
    path = write(RUNBOOK)
    assert run_cli(["validate", str(path)], cwd=tmp_path).code == 0
    assert run_cli(["plan", str(path)], cwd=tmp_path).code == 2


def test_schema_inputs_prints_the_inputs_as_a_json_schema(write, tmp_path: Path) -> None:
    path = write(RUNBOOK)
    result = run_cli(["schema", "inputs", str(path)], cwd=tmp_path)
    assert result.code == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["required"] == ["email"]
    assert schema["properties"]["tier"] == {"type": "string", "enum": ["standard", "vip"], "default": "standard"}
    assert schema["properties"]["email"]["description"] == "The customer's email"
    from jsonschema import Draft202012Validator

    Draft202012Validator.check_schema(schema)
    assert not list(Draft202012Validator(schema).iter_errors({"email": "a@b.c", "seats": 2}))
    assert list(Draft202012Validator(schema).iter_errors({"seats": 0}))


def test_plan_lists_the_inputs_and_their_values(write, tmp_path: Path) -> None:
    path = write(RUNBOOK)
    result = run_cli(["plan", str(path), "--var", "email=a@b.c"], cwd=tmp_path, env=base_env())
    assert result.code == 0, result.stderr
    assert ('inputs:   email (string, required)="a@b.c", tier (string)="standard", seats (integer)=1, '
            'ratio (number)=0.5, trial (boolean)=false, tags (array)=[], extra (object)={}') in result.stdout
    assert 'vars:     channel="C01"' in result.stdout
    data = json.loads(run_cli(["plan", str(path), "--var", "email=a@b.c", "--json"], cwd=tmp_path).stdout)
    assert data["inputs"][0] == {"name": "email", "type": "string", "required": True,
                                 "description": "The customer's email", "value": "a@b.c"}
