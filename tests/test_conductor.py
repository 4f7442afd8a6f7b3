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


FAN = """
version: 1
name: fan
steps:
  - id: f
    provider: membrane
    for_each: [1, 2, 3, 4, 5, 6]
    concurrency: 2
    fail_fast: {fail_fast}
    dispatch: {{key: k}}
"""


def fan_step(tmp_path: Path, fail_fast: bool = True):
    path = tmp_path / "fan.yml"
    path.write_text(FAN.format(fail_fast=str(fail_fast).lower()))
    runbook, _ = load_runbook(str(path))
    return runbook.steps[0]


def item(status: Status, output: object = None, error: str | None = None) -> dict:
    return {"status": status.value, "output": output, "exports": {}, "run_id": None,
            "error": {"type": error, "message": "no"} if error else None}


def test_a_fan_out_keeps_at_most_concurrency_items_in_flight(tmp_path: Path) -> None:
    from engine.conductor import FanOut

    fan = FanOut(fan_step(tmp_path), 6)
    assert fan.ready() == [0, 1] and fan.ready() == []
    fan.record(1, Status.SUCCEEDED, item(Status.SUCCEEDED, "b"))
    assert fan.ready() == [2]
    for i in (0, 2):
        fan.record(i, Status.SUCCEEDED, item(Status.SUCCEEDED, i))
    assert fan.ready() == [3, 4]
    for i in (3, 4):
        fan.record(i, Status.SKIPPED if i == 3 else Status.SUCCEEDED, item(Status.SKIPPED if i == 3 else
                                                                           Status.SUCCEEDED, i))
    assert fan.ready() == [5] and not fan.done()
    fan.record(5, Status.SUCCEEDED, item(Status.SUCCEEDED, 5))
    assert fan.done() and fan.status() is Status.SUCCEEDED
    result = fan.result("t0", "t1", 7)
    assert result.output == [0, "b", 2, None, 4, 5]  # a skipped item's output is null
    assert [c["status"] for c in result.items] == ["succeeded"] * 3 + ["skipped"] + ["succeeded"] * 2
    assert result.error is None


def test_fail_fast_stops_starting_items_and_the_rest_are_never_started(tmp_path: Path) -> None:
    from engine.conductor import FanOut

    fan = FanOut(fan_step(tmp_path), 6)
    fan.ready()
    fan.record(1, Status.FAILED, item(Status.FAILED, error="server_error"))
    assert fan.ready() == [] and not fan.done()  # item 0 is still in flight
    fan.record(0, Status.SUCCEEDED, item(Status.SUCCEEDED, 0))
    assert fan.done() and list(fan.never_started()) == [2, 3, 4, 5]
    result = fan.result(None, None, 0)
    assert result.status is Status.FAILED and result.error.type == "server_error"
    assert result.error.message == "1 of 6 items failed; item 1: no"
    assert [c["status"] for c in result.items] == ["succeeded", "failed"] + ["not_run"] * 4


def test_without_fail_fast_every_item_starts_and_state_round_trips(tmp_path: Path) -> None:
    from engine.conductor import FanOut

    step = fan_step(tmp_path, fail_fast=False)
    fan = FanOut(step, 6, previous={"items": [{"index": 4, "status": "succeeded", "request_sha256": "a" * 64,
                                               "output": 4}]})
    fan.ready()
    fan.record(0, Status.FAILED, item(Status.FAILED, error="timeout"))
    fan = FanOut.from_dict(step, json.loads(json.dumps(fan.to_dict())))
    assert fan.previous(4) is not None and fan.previous(3) is None
    started = []
    while not fan.done():
        for i in fan.ready():
            started.append(i)
        for i in sorted(fan.in_flight):
            fan.record(i, Status.SUCCEEDED, item(Status.SUCCEEDED, i))
    assert started == [2, 3, 4, 5] and fan.status() is Status.FAILED


def test_an_interrupted_fan_out_names_the_items_in_flight(tmp_path: Path) -> None:
    from engine.conductor import FanOut

    fan = FanOut(fan_step(tmp_path), 6)
    fan.ready()
    assert fan.interrupt() == [0, 1]
    for i in (0, 1):
        fan.record(i, Status.INTERRUPTED, item(Status.INTERRUPTED))
    assert fan.done() and fan.status() is Status.INTERRUPTED and list(fan.never_started()) == [2, 3, 4, 5]
