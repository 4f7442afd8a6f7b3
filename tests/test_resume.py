"""--resume: succeeded steps with the same request are reused, the rest are sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine import emulator as emulator_module
from engine.emulator import Emulator
from tests.conftest import act_bodies, base_env, run_cli

FIVE = """
version: 1
name: five
vars: {who: jane}
steps:
  - {id: s1, provider: membrane, dispatch: {id: one}, input: {who: "{{ vars.who }}"}}
  - {id: s2, provider: membrane, dispatch: {id: two}, input: {prev: "{{ steps.s1.output.id }}"}}
  - {id: s3, provider: membrane, dispatch: {id: three}, input: {prev: "{{ steps.s2.output.id }}"}}
  - {id: s4, provider: membrane, dispatch: {id: four}, input: {prev: "{{ steps.s3.output.id }}"}}
  - {id: s5, provider: membrane, dispatch: {id: five}}
"""


def test_failed_at_step_3_then_resumed_sends_only_steps_3_to_5(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = write(FIVE)
    emulator.add_fault({"action": "three"}, status=503, times=1)
    first = run_cli(["run", str(path), "--manifest", str(tmp_path / "first.json")],
                    cwd=tmp_path, env=membrane_env)
    assert first.code == 1
    first_manifest = json.loads((tmp_path / "first.json").read_text())
    assert [s["status"] for s in first_manifest["steps"]] == [
        "succeeded", "succeeded", "failed", "not_run", "not_run"]
    emulator.clear_requests()

    second = run_cli(["run", str(path), "--resume", str(tmp_path / "first.json")],
                     cwd=tmp_path, env=membrane_env)
    assert second.code == 0, second.stdout + second.stderr
    assert [b["id"] for b in act_bodies(emulator)] == ["three", "four", "five"]
    manifest = second.manifest
    assert manifest["run"]["resumed_from"] == first_manifest["run"]["id"]
    steps = {s["id"]: s for s in manifest["steps"]}
    assert steps["s1"]["reused_from"] == first_manifest["run"]["id"]
    assert steps["s2"]["output"] == first_manifest["steps"][1]["output"]
    assert steps["s2"]["attempts"] == []
    assert "reused_from" not in steps["s3"]
    # step 3's input was built from step 2's recorded output
    assert act_bodies(emulator)[0]["input"] == {"prev": steps["s2"]["output"]["id"]}
    assert "reused from" in second.stdout


def test_a_changed_request_is_sent_again(write, tmp_path: Path, emulator: Emulator,
                                         membrane_env: dict[str, str]) -> None:
    path = write(FIVE)
    first = run_cli(["run", str(path), "--manifest", str(tmp_path / "first.json")],
                    cwd=tmp_path, env=membrane_env)
    assert first.code == 0
    emulator.clear_requests()
    second = run_cli(["run", str(path), "--resume", str(tmp_path / "first.json"),
                      "--var", "who=joe"], cwd=tmp_path, env=membrane_env)
    assert second.code == 0
    # s1's input changed, so its output id changes, and so every later request does; s5 is reused
    assert [b["id"] for b in act_bodies(emulator)] == ["one", "two", "three", "four"]
    assert second.step("s5")["reused_from"]


def test_resume_refuses_foreign_or_broken_manifests(write, tmp_path: Path, emulator: Emulator,
                                                    membrane_env: dict[str, str]) -> None:
    path = write(FIVE)
    other = write("version: 1\nname: other\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n",
                  "other.yml")
    assert run_cli(["run", str(other), "--manifest", str(tmp_path / "other.json")],
                   cwd=tmp_path, env=membrane_env).code == 0
    emulator.clear_requests()
    foreign = run_cli(["run", str(path), "--resume", str(tmp_path / "other.json")],
                      cwd=tmp_path, env=membrane_env)
    assert foreign.code == 2
    assert "records runbook 'other'" in foreign.stderr
    truncated = tmp_path / "truncated.json"
    truncated.write_text((tmp_path / "other.json").read_text()[:200])
    broken = run_cli(["run", str(path), "--resume", str(truncated)], cwd=tmp_path, env=membrane_env)
    assert broken.code == 2 and "not a JSON manifest (truncated?)" in broken.stderr
    future = tmp_path / "future.json"
    data = json.loads((tmp_path / "other.json").read_text())
    future.write_text(json.dumps(dict(data, manifest_version=2)))
    newer = run_cli(["run", str(path), "--resume", str(future)], cwd=tmp_path, env=membrane_env)
    assert newer.code == 2 and "manifest version 2" in newer.stderr
    missing = run_cli(["run", str(path), "--resume", "nope.json"], cwd=tmp_path, env=membrane_env)
    assert missing.code == 2 and "cannot read the manifest" in missing.stderr
    assert emulator.requests == []


def _odd(manifest: dict[str, Any], case: str) -> Any:
    """A copy of ``manifest`` broken one way."""
    odd = json.loads(json.dumps(manifest))
    if case == "top-level list":
        return [odd]
    if case == "engine is a string":
        odd["engine"] = "x"
    elif case == "engine is null":
        odd["engine"] = None
    elif case == "run is null":
        odd["run"] = None
    elif case == "a step is null":
        odd["steps"][0] = None
    elif case == "attempts is text":
        odd["steps"][1]["attempts"] = "x"
    elif case == "runbook path is a number":
        odd["runbook"]["path"] = 3
    elif case == "version is text":
        odd["manifest_version"] = "1"
    return odd


ODD = {
    "top-level list": "not a runbook manifest: it holds a list, not a JSON object",
    "engine is a string": "not a runbook manifest: engine: 'x' is not of type 'object'",
    "engine is null": "not a runbook manifest: engine: None is not of type 'object'",
    "run is null": "not a valid manifest: run: None is not of type 'object'",
    "a step is null": "not a valid manifest: steps/0: None is not of type 'object'",
    "attempts is text": "not a valid manifest: steps/1/attempts: 'x' is not of type 'array'",
    "runbook path is a number": "not a valid manifest: runbook/path: 3 is not of type 'string'",
    "version is text": "manifest version '1'; this runbook reads version 1",
}


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """FIVE, run once on the emulator: the runbook and its manifest."""
    folder = tmp_path_factory.mktemp("recorded")
    path = folder / "five.yml"
    path.write_text(FIVE.lstrip("\n"))
    with emulator_module.start() as emu:
        first = run_cli(["run", str(path), "--manifest", str(folder / "first.json")], cwd=folder,
                        env=base_env(MEMBRANE_BASE_URL=emu.url, MEMBRANE_TOKEN="test-token"))
    assert first.code == 0, first.stderr
    return path, json.loads((folder / "first.json").read_text())


@pytest.mark.parametrize("case", list(ODD))
def test_resume_and_replay_refuse_a_manifest_of_any_shape_naming_the_field(
        case: str, recorded: tuple[Path, dict[str, Any]], tmp_path: Path, emulator: Emulator,
        membrane_env: dict[str, str]) -> None:
    path, manifest = recorded
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(_odd(manifest, case)))
    for args in (["run", str(path), "--resume", str(odd)], ["replay", str(odd)]):
        result = run_cli(args, cwd=tmp_path, env=membrane_env)
        assert result.code == 2, result.stderr
        assert result.stderr == f"{odd}: {ODD[case]}\n"
    assert emulator.requests == []


def test_numbers_json_cannot_carry_refuse_a_manifest(recorded: tuple[Path, dict[str, Any]], tmp_path: Path,
                                                     emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path, manifest = recorded
    odd = tmp_path / "odd.json"
    odd.write_text(json.dumps(dict(manifest, vars={"n": float("nan")})))  # Python's json writes NaN
    result = run_cli(["replay", str(odd)], cwd=tmp_path, env=membrane_env)
    assert (result.code, result.stderr) == (2, f"{odd}: not a JSON manifest: NaN is not a JSON number\n")
    odd.write_text("[" * 100_000 + "]" * 100_000)
    result = run_cli(["run", str(path), "--resume", str(odd)], cwd=tmp_path, env=membrane_env)
    assert (result.code, result.stderr) == (2, f"{odd}: not a runbook manifest: its JSON is nested too deeply\n")
    assert emulator.requests == []
