"""A killed or interrupted run leaves a valid manifest with every finished step."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.emulator import Emulator
from tests.conftest import check_manifest

SLOW = """
version: 1
name: slow
steps:
{steps}
finally:
  - {{id: cleanup, provider: membrane, dispatch: {{id: cleanup}}}}
"""


def slow_runbook(tmp_path: Path, count: int) -> Path:
    steps = "\n".join(
        f"  - {{id: s{i}, provider: membrane, dispatch: {{id: slow}}, input: {{i: {i}}}}}"
        for i in range(count)
    )
    path = tmp_path / "slow.yml"
    path.write_text(SLOW.format(steps=steps))
    return path


def start(path: Path, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.Popen, Path]:
    manifest = tmp_path / "m.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(path), "--manifest", str(manifest)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True,
    )
    return proc, manifest


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def recorded(manifest: Path) -> list[dict]:
    try:
        return json.loads(manifest.read_text())["steps"]
    except (OSError, ValueError):
        return []


@pytest.mark.parametrize("kill_after_steps", [0, 1, 3])
def test_kill_9_leaves_a_valid_manifest(tmp_path: Path, emulator: Emulator,
                                        membrane_env: dict[str, str],
                                        kill_after_steps: int) -> None:
    emulator.add_fault({"action": "slow"}, delay=0.15, times=1000)
    proc, manifest = start(slow_runbook(tmp_path, 8), tmp_path, membrane_env)
    try:
        wait_for(manifest.exists)
        wait_for(lambda: len(recorded(manifest)) >= kill_after_steps)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        proc.kill()
    data = check_manifest(json.loads(manifest.read_text()))
    assert data["run"]["status"] == "running"
    steps = data["steps"]
    assert len(steps) >= kill_after_steps
    assert [s["id"] for s in steps] == [f"s{i}" for i in range(len(steps))]
    assert all(s["status"] == "succeeded" for s in steps)
    # every step the emulator answered before the kill, but the last in flight, is recorded
    answered = [r for r in emulator.requests if r["path"] == "/act"]
    assert len(steps) >= len(answered) - 1


def test_kill_9_at_many_moments(tmp_path: Path, emulator: Emulator,
                                membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slow"}, delay=0.01, times=100000)
    path = slow_runbook(tmp_path, 40)
    for delay in (0.0, 0.05, 0.1, 0.2, 0.3, 0.45):
        proc, manifest = start(path, tmp_path, membrane_env)
        try:
            wait_for(manifest.exists)
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            proc.kill()
        check_manifest(json.loads(manifest.read_text()))
        manifest.unlink()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_records_the_step_runs_finally_and_exits_130(
        tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str], sig: int) -> None:
    emulator.add_fault({"action": "slow"}, delay=1.5, times=1)
    proc, manifest = start(slow_runbook(tmp_path, 3), tmp_path, membrane_env)
    try:
        wait_for(lambda: any(r["path"] == "/act" for r in emulator.requests))
        time.sleep(0.1)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    data = check_manifest(json.loads(manifest.read_text()))
    assert data["run"]["status"] == "interrupted"
    assert [(s["id"], s["status"]) for s in data["steps"]] == [
        ("s0", "interrupted"), ("s1", "not_run"), ("s2", "not_run"), ("cleanup", "succeeded")]
    # the request was sent: its attempt is recorded, with no answer
    (attempt,) = data["steps"][0]["attempts"]
    assert attempt["number"] == 1 and attempt["http_status"] is None
    assert attempt["error"].startswith("interrupted")
    assert "Traceback" not in err
