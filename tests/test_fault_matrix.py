"""Each emulator fault against each retry policy: what is retried, and every attempt recorded."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.emulator import Emulator
from tests.conftest import run_cli

FAULTS: dict[str, dict[str, Any]] = {
    "429+retry-after": {"status": 429, "retry_after": 0},
    "500": {"status": 500},
    "502": {"status": 502},
    "503": {"status": 503},
    "slow": {"delay": 1.0},
    "drop": {"drop": True},
    "malformed": {"malformed": True},
}
# (fault, policy) -> the error type of the faulted attempt, and whether the policy retries it
POLICIES = {
    "default": "{attempts: 2, initial_delay: 10ms}",
    "idempotent": "{attempts: 2, initial_delay: 10ms, on: [connection, timeout, 429, 5xx]}",
    "exact-502": "{attempts: 2, initial_delay: 10ms, on: [502]}",
}
ERROR_TYPE = {"429+retry-after": "rate_limited", "500": "server_error", "502": "server_error",
              "503": "server_error", "slow": "timeout", "drop": "connection",
              "malformed": "malformed_response"}
RETRIED = {
    "default": {"429+retry-after", "drop"},
    "idempotent": {"429+retry-after", "500", "502", "503", "slow", "drop"},
    "exact-502": {"502"},
}


@pytest.mark.parametrize("policy", sorted(POLICIES))
def test_fault_matrix(policy: str, write, tmp_path: Path, emulator: Emulator,
                      membrane_env: dict[str, str]) -> None:
    steps = []
    for name, fault in FAULTS.items():
        emulator.add_fault({"action": name}, times=1, **fault)
        steps.append(f"  - {{id: s_{len(steps)}, provider: membrane, dispatch: {{id: {name!r}}}, "
                     f"timeout: 300ms, retry: {POLICIES[policy]}, continue_on_error: true}}")
    path = write("version: 1\nname: matrix\nsteps:\n" + "\n".join(steps) + "\n")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code in (0, 1), result.stderr
    for i, name in enumerate(FAULTS):
        step = result.step(f"s_{i}")
        attempts = step["attempts"]
        assert attempts[0]["error"].startswith(ERROR_TYPE[name]), (name, attempts)
        if name in RETRIED[policy]:
            assert step["status"] == "succeeded", (name, step)
            assert len(attempts) == 2 and attempts[1]["error"] is None
            assert attempts[1]["http_status"] == 200
        else:
            assert step["status"] == "failed", (name, step)
            assert len(attempts) == 1
            assert step["error"]["type"] == ERROR_TYPE[name]
        for number, attempt in enumerate(attempts, 1):
            assert attempt["number"] == number and attempt["duration_ms"] >= 0
            assert attempt["started_at"]
    assert result.code == (0 if len(RETRIED[policy]) == len(FAULTS) else 1)


def test_step_and_run_timeouts_name_their_limit(write, tmp_path: Path, emulator: Emulator,
                                               membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slow"}, delay=0.4, times=100)
    path = write("""
        version: 1
        name: budgets
        run_timeout: 1s
        steps:
          - id: bounded
            provider: membrane
            dispatch: {id: slow}
            timeout: 5s
            step_timeout: 250ms
            retry: {attempts: 5, initial_delay: 10ms, on: [timeout]}
            continue_on_error: true
          - {id: one, provider: membrane, dispatch: {id: slow}}
          - {id: two, provider: membrane, dispatch: {id: slow}}
          - {id: three, provider: membrane, dispatch: {id: slow}}
          - {id: never, provider: membrane, dispatch: {id: fast}}
        finally:
          - {id: cleanup, provider: membrane, dispatch: {id: slow}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    bounded = result.step("bounded")
    assert bounded["error"]["type"] == "timeout"
    assert "step_timeout of 0.25s" in bounded["error"]["message"]
    assert bounded["attempts"][0]["error"] == "timeout: no answer within the step_timeout of 0.25s"
    statuses = {s["id"]: s["status"] for s in result.manifest["steps"]}
    assert statuses["one"] == "succeeded"
    failed = [s for s in result.manifest["steps"] if s["status"] == "failed" and s["id"] != "bounded"]
    assert len(failed) == 1 and "run_timeout of 1s" in failed[0]["error"]["message"]
    assert statuses["never"] == "not_run"
    assert statuses["cleanup"] == "succeeded"  # finally steps run after a run timeout too
