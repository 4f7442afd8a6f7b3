"""The conductor alone: what runs next, with results made up in the test (no I/O at all)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.conductor import Conductor
from engine.model import Status, StepError, StepResult
from engine.validation import load_runbook

RUNBOOK = """
version: 1
name: order
steps:
  - {id: a, provider: membrane, dispatch: {key: a}}
  - {id: b, provider: membrane, dispatch: {key: b}, continue_on_error: true}
  - {id: c, provider: membrane, dispatch: {key: c}}
  - {id: d, provider: membrane, dispatch: {key: d}}
finally:
  - {id: z, provider: membrane, dispatch: {key: z}}
"""


def conductor(tmp_path: Path, previous: dict | None = None) -> Conductor:
    path = tmp_path / "order.yml"
    path.write_text(RUNBOOK)
    runbook, _ = load_runbook(str(path))
    return Conductor(runbook, vars={"x": 1}, run_info={"id": "r1"}, previous=previous)


def drive(c: Conductor, fates: dict[str, tuple[Status, str | None]]) -> list[tuple[str, bool, str | None]]:
    """Run the conductor to the end; each step's fate from ``fates`` (default: succeeded)."""
    seen = []
    while (work := c.next()) is not None:
        seen.append((work.step.id, work.runs, work.context["run"].get("status")))
        status, error = fates.get(work.step.id, (Status.SUCCEEDED, None)) if work.runs else (Status.NOT_RUN, None)
        result = StepResult(work.step, status)
        result.output = {"of": work.step.id}
        result.error = StepError(error, "x") if error else None
        c.record(result)
    return seen


def test_all_succeed_then_finally_sees_succeeded(tmp_path: Path) -> None:
    c = conductor(tmp_path)
    seen = drive(c, {})
    assert seen == [("a", True, None), ("b", True, None), ("c", True, None), ("d", True, None),
                    ("z", True, "succeeded")]
    assert c.outcome() is Status.SUCCEEDED
    assert c.context()["steps"]["d"]["output"] == {"of": "d"}


def test_a_failure_stops_the_main_steps_not_finally(tmp_path: Path) -> None:
    c = conductor(tmp_path)
    seen = drive(c, {"c": (Status.FAILED, "server_error")})
    assert seen == [("a", True, None), ("b", True, None), ("c", True, None), ("d", False, None),
                    ("z", True, "failed")]
    assert c.outcome() is Status.FAILED
    assert "d" not in c.context()["steps"]


def test_continue_on_error_goes_on_but_the_run_fails(tmp_path: Path) -> None:
    c = conductor(tmp_path)
    seen = drive(c, {"b": (Status.FAILED, "client_error")})
    assert [runs for _, runs, _ in seen] == [True] * 5
    assert c.outcome() is Status.FAILED


def test_an_internal_error_stops_even_with_continue_on_error(tmp_path: Path) -> None:
    c = conductor(tmp_path)
    seen = drive(c, {"b": (Status.FAILED, "internal")})
    assert [s for s, runs, _ in seen if not runs] == ["c", "d"]


def test_interrupted_runs_finally_and_ends_interrupted(tmp_path: Path) -> None:
    c = conductor(tmp_path)
    seen = drive(c, {"a": (Status.INTERRUPTED, "interrupted")})
    assert [s for s, runs, _ in seen if runs] == ["a", "z"]
    assert c.outcome() is Status.INTERRUPTED
    assert c.run_info["interrupted"] is True


def test_outputs_that_cannot_be_computed_fail_the_run(tmp_path: Path) -> None:
    c = conductor(tmp_path)
    drive(c, {})
    assert c.outcome("outputs.x: undefined") is Status.FAILED


def test_state_round_trips_through_json_mid_run(tmp_path: Path) -> None:
    first = conductor(tmp_path)
    for _ in range(2):  # a and b
        work = first.next()
        assert work is not None
        first.record(StepResult(work.step, Status.SUCCEEDED))
    state = json.loads(json.dumps(first.to_dict()))
    second = Conductor.from_dict(first.runbook, state)
    assert second.to_dict() == first.to_dict()
    assert drive(second, {"c": (Status.FAILED, "timeout")}) == drive(first, {"c": (Status.FAILED, "timeout")})


def test_resume_offers_recorded_results_but_never_for_finally(tmp_path: Path) -> None:
    previous = {"run": {"id": "old"}, "steps": [
        {"id": i, "status": "succeeded", "request_sha256": "f" * 64} for i in ("a", "z")]}
    c = conductor(tmp_path, previous)
    offered = {}
    while (work := c.next()) is not None:
        offered[work.step.id] = work.previous
        c.record(StepResult(work.step, Status.SUCCEEDED))
    assert offered["a"]["reused_from"] == "old"
    assert offered["b"] is None and offered["z"] is None
