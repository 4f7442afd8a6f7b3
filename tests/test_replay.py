"""runbook replay: recorded requests sent again, as they were."""

from __future__ import annotations

import json
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import act_bodies, run_cli

TWO = """
version: 1
name: two
steps:
  - {id: a, provider: membrane, dispatch: {id: one}, with: {connection_key: k}, input: {n: 1}}
  - {id: b, provider: membrane, dispatch: {key: two}, input: {prev: "{{ steps.a.output.id }}"}}
"""


def test_replay_resends_every_recorded_request(write, tmp_path: Path, emulator: Emulator,
                                               membrane_env: dict[str, str]) -> None:
    path = write(TWO)
    first = run_cli(["run", str(path), "--manifest", str(tmp_path / "first.json")],
                    cwd=tmp_path, env=membrane_env)
    assert first.code == 0
    sent = act_bodies(emulator)
    emulator.clear_requests()
    again = run_cli(["replay", str(tmp_path / "first.json")], cwd=tmp_path, env=membrane_env)
    assert again.code == 0, again.stderr
    assert act_bodies(emulator) == sent
    manifest = again.manifest
    first_id = json.loads((tmp_path / "first.json").read_text())["run"]["id"]
    assert manifest["run"]["replay_of"] == first_id
    assert [s["request"] for s in manifest["steps"]] == sent


def test_replay_one_step_and_from_a_run_log(write, tmp_path: Path, emulator: Emulator,
                                            membrane_env: dict[str, str]) -> None:
    path = write(TWO)
    first = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    (tmp_path / "first.json").write_text(first.manifest_path.read_text())
    run_id_a = first.step("a")["run_id"]
    request_a = first.step("a")["request"]
    emulator.clear_requests()
    only_b = run_cli(["replay", str(tmp_path / "first.json"), "--step", "b"],
                     cwd=tmp_path, env=membrane_env)
    assert only_b.code == 0
    assert [b.get("key") for b in act_bodies(emulator)] == ["two"]
    emulator.clear_requests()
    from_log = run_cli(["replay", str(tmp_path / "first.json"), "--step", "b",
                        "--from-run-log", run_id_a], cwd=tmp_path, env=membrane_env)
    assert from_log.code == 0, from_log.stderr
    assert act_bodies(emulator) == [request_a]  # run log a's action, as it ran


def test_replay_refuses_redacted_requests_and_unknown_steps(write, tmp_path: Path,
                                                           emulator: Emulator,
                                                           membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: secret
        steps:
          - {id: a, provider: membrane, dispatch: {id: x}, input: {k: "{{ secrets.API_KEY }}"}}
    """)
    env = dict(membrane_env, API_KEY="k-123456")
    assert run_cli(["run", str(path), "--manifest", str(tmp_path / "m.json")], cwd=tmp_path,
                   env=env).code == 0
    emulator.clear_requests()
    refused = run_cli(["replay", str(tmp_path / "m.json")], cwd=tmp_path, env=env)
    assert refused.code == 2 and "redacted secrets" in refused.stderr
    unknown = run_cli(["replay", str(tmp_path / "m.json"), "--step", "zz"], cwd=tmp_path, env=env)
    assert unknown.code == 2 and "records no step 'zz'" in unknown.stderr
    assert emulator.requests == []
