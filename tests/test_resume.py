"""--resume: succeeded steps with the same request are reused, the rest are sent."""

from __future__ import annotations

import json
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import act_bodies, run_cli

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
