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
