"""The executor alone: one step against an in-process scripted provider and a clock that only
moves when told, so retries, waits and time budgets are checked without waiting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.executor import Executor
from engine.manifest import request_sha256
from engine.model import Status
from engine.templating import Templates
from engine.validation import load_runbook
from tests.fakes import FakeClock, ScriptedProvider


def setup(tmp_path: Path, steps: str, script: dict[str, list[dict[str, Any]]]):
    path = tmp_path / "rb.yml"
    path.write_text(f"version: 1\nname: unit\nsteps:\n{steps}")
    runbook, templates = load_runbook(str(path), Templates())
    clock = FakeClock()
    provider = ScriptedProvider(script, clock)
    executor = Executor(runbook, templates, environ={}, providers={"membrane": provider}, clock=clock,
                        rng=lambda: 1.0)
    return runbook, executor, provider, clock


def context(steps: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"vars": {}, "steps": steps or {}, "run": {"id": "r"}}


def test_retries_429_with_retry_after_then_succeeds(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, """\
  - id: a
    provider: membrane
    dispatch: {key: flaky}
    retry: {attempts: 3, backoff: fixed, initial_delay: 1s}
""", {"flaky": [{"error": {"type": "rate_limited", "status": 429, "retry_after": 2}},
                {"error": {"type": "rate_limited", "status": 429}},
                {"output": {"ok": True}}]})
    result = executor.run_step(runbook.steps[0], context())
    assert result.status is Status.SUCCEEDED and result.output == {"ok": True}
    assert [a.http_status for a in result.attempts] == [429, 429, 200]
    assert clock.slept == [2.0, 1.0]


def test_a_timeout_is_not_retried_unless_asked(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, """\
  - {id: a, provider: membrane, dispatch: {key: slow}, retry: {attempts: 5}}
""", {"slow": [{"error": {"type": "timeout"}}]})
    result = executor.run_step(runbook.steps[0], context())
    assert result.status is Status.FAILED and result.error.type == "timeout"
    assert len(provider.calls) == 1 and clock.slept == []


def test_step_timeout_bounds_the_attempts_and_their_waits(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, """\
  - id: a
    provider: membrane
    dispatch: {key: slow}
    step_timeout: 5s
    retry: {attempts: 10, backoff: fixed, initial_delay: 1s, on: [timeout]}
""", {"slow": [{"takes": 2, "error": {"type": "timeout"}}]})
    result = executor.run_step(runbook.steps[0], context())
    assert result.status is Status.FAILED
    assert result.error.message == "the step_timeout of 5s ran out"
    assert len(result.attempts) == 2  # 2 s + 1 s wait + 2 s + 1 s wait: no time left for a third


def test_template_and_assertion_errors_are_located(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, """\
  - {id: a, provider: membrane, dispatch: {key: k}}
  - {id: b, provider: membrane, dispatch: {key: k}, input: {x: "{{ steps.a.output.nope }}"}}
  - id: c
    provider: membrane
    dispatch: {key: k}
    assert: ["steps.c.output.ok"]
""", {"k": [{"output": {"ok": False}}]})
    first = executor.run_step(runbook.steps[1], context({"a": {"output": {}}}))
    assert first.error.type == "template" and first.error.location == f"{runbook.path}:5:64"
    assert provider.calls == []
    second = executor.run_step(runbook.steps[2], context())
    assert second.error.type == "assertion" and second.error.location == f"{runbook.path}:9:14"


def test_a_recorded_result_with_the_same_request_is_reused(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, """\
  - {id: a, provider: membrane, dispatch: {key: k}, input: {n: 1}}
""", {})
    sha = request_sha256({"key": "k", "input": {"n": 1}})
    previous = {"request_sha256": sha, "output": {"kept": 1}, "run_id": "run_1", "exports": {}, "logs": [],
                "reused_from": "old"}
    result = executor.run_step(runbook.steps[0], context(), previous=previous)
    assert result.status is Status.SUCCEEDED and result.output == {"kept": 1} and result.reused_from == "old"
    assert provider.calls == []
    changed = executor.run_step(runbook.steps[0], context(), previous={**previous, "request_sha256": "0" * 64})
    assert changed.reused_from is None and len(provider.calls) == 1


def test_interrupt_records_the_attempt_and_a_bug_is_internal(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, """\
  - {id: a, provider: membrane, dispatch: {key: stop}}
  - {id: b, provider: membrane, dispatch: {key: bug}}
""", {"stop": [{"raise": "KeyboardInterrupt"}], "bug": [{"raise": "bug"}]})
    interrupted = executor.run_step(runbook.steps[0], context())
    assert interrupted.status is Status.INTERRUPTED
    assert interrupted.attempts[0].error.startswith("interrupted")
    buggy = executor.run_step(runbook.steps[1], context())
    assert buggy.status is Status.FAILED and buggy.error.type == "internal"
    assert isinstance(executor.internal_error, ValueError)


def test_asserts_see_the_step_without_copying_the_others(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, """\
  - {id: a, provider: membrane, dispatch: {key: first}}
  - id: b
    provider: membrane
    dispatch: {key: k}
    assert: ["steps.b.output.n == steps.a.output.n + 1"]
""", {"k": [{"output": {"n": 2}}]})
    earlier = {"a": {"status": "succeeded", "output": {"n": 1}}}
    result = executor.run_step(runbook.steps[1], context(earlier))
    assert result.status is Status.SUCCEEDED, result.error
    assert set(earlier) == {"a"}  # the executor changed nothing of the conductor's


POLL = """\
  - id: export
    provider: membrane
    dispatch: {key: export-status}
    until: "{{ steps.export.output.status == 'done' }}"
    poll: {interval: 5s, timeout: 1m%s}
    retry: {attempts: 2, backoff: fixed, initial_delay: 1s, "on": ["5xx"]}
"""


def test_a_poll_resends_until_the_answer_says_so_each_poll_an_attempt(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, POLL % "", {"export-status": [
        {"output": {"status": "running"}},
        {"error": {"type": "server_error", "status": 503}},  # an error while polling: retry says
        {"output": {"status": "running"}},
        {"output": {"status": "done", "url": "https://x/e.csv"}},
    ]})
    result = executor.run_step(runbook.steps[0], context())
    assert result.status is Status.SUCCEEDED, result.error
    assert result.output == {"status": "done", "url": "https://x/e.csv"}
    assert [(a.number, a.http_status) for a in result.attempts] == [(1, 200), (2, 503), (3, 200), (4, 200)]
    assert clock.slept == [5.0, 1.0, 5.0]  # poll, retry after the 503, poll
    assert len(provider.calls) == 4 and len({str(c) for c in provider.calls}) == 1  # the same request


def test_a_poll_that_never_sees_until_true_fails_with_a_timeout_and_the_last_value(tmp_path: Path) -> None:
    runbook, executor, provider, clock = setup(tmp_path, POLL % ", backoff: exponential",
                                               {"export-status": [{"output": {"status": "running"}}]})
    result = executor.run_step(runbook.steps[0], context())
    assert result.status is Status.FAILED and result.error.type == "timeout"
    assert clock.slept == [5.0, 10.0, 20.0]  # exponential: the next wait (40 s) would pass the minute
    assert result.error.message == ("until {{ steps.export.output.status == 'done' }} was still false after 4 "
                                    "polls in 60s (poll timeout); its last value: false")
    assert result.error.location == f"{tmp_path / 'rb.yml'}:7:12"
