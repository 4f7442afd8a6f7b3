"""The runbook workflow: the conductor's decisions, each step and ``for_each`` item an activity.

Deterministic, as Temporal's workflow sandbox requires: it reads time only through
``workflow.now()``, randomness through ``workflow.random()``, and does no I/O; the engine modules
it uses (the conductor, the fan-out, the manifest's record shapes) are pure and passed through
the sandbox. It never sees a secret: its input holds the runbook's text (templates, not values)
and the variables; each activity returns its step's manifest record already scrubbed where the
secrets were rendered, and the templates' context of later steps is made from those records.

Temporal's history is the journal: a finished step's activity result is in it, so after a worker
is lost another worker replays the workflow and goes on from the step in flight, which is
re-sent only when its ``retry.on`` names ``timeout`` (else it fails ``interrupted``: "the worker
was lost; the action may have run").
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from engine.conductor import Conductor, FanOut
    from engine.manifest import header, item_record, step_record
    from engine.model import Attempt, ErrorType, Status, Step, StepError, StepResult
    from engine.temporal import ITEMS_ACTIVITY, OUTPUTS_ACTIVITY, PREPARE_ACTIVITY, STEP_ACTIVITY, WORKFLOW
    from engine.temporal.spec import referenced, skeleton_runbook, stamp

__all__ = ["RunbookWorkflow", "LOST"]

#: The error of a step whose worker was lost while it was in flight.
LOST = "the worker was lost; the action may have run"

_CONTEXT_KEYS = ("status", "output", "exports", "logs", "run_id", "error", "duration_ms")
_ITEM_KEYS = ("status", "output", "exports", "run_id", "error")


def context_of(record: dict[str, Any]) -> dict[str, Any]:
    """``steps.<id>`` of a step, made from its manifest record (as StepResult.context makes it)."""
    ctx = {key: record.get(key) for key in _CONTEXT_KEYS}
    ctx.update(record.get("extra") or {})
    if "items" in record:
        ctx["items"] = [{key: item.get(key) for key in _ITEM_KEYS} for item in record["items"]]
    return ctx


def _heartbeat_details(exc: BaseException) -> dict[str, Any]:
    """What the lost activity last said it was doing (its request, its attempts), if anything."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TimeoutError) and cause.last_heartbeat_details:
            detail = cause.last_heartbeat_details[0]
            return detail if isinstance(detail, dict) else {}
        cause = cause.__cause__
    return {}


def _lost(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, TimeoutError):
            return True
        cause = cause.__cause__
    return False


@workflow.defn(name=WORKFLOW)
class RunbookWorkflow:
    """One run of one runbook (its input: :func:`engine.temporal.spec.job`)."""

    def __init__(self) -> None:
        self._manifest: dict[str, Any] | None = None
        self._records: list[dict[str, Any]] = []
        self._total = 0
        self._current: str | None = None
        self._fan: FanOut | None = None
        self._status = "running"

    @workflow.query(name="status")
    def status(self) -> dict[str, Any]:
        """Step k of N, the step in flight, its items (for a fan-out), the steps per status."""
        counts: dict[str, int] = {}
        for record in self._records:
            counts[record["status"]] = counts.get(record["status"], 0) + 1
        out: dict[str, Any] = {
            "run_id": (self._manifest or {}).get("run", {}).get("id"),
            "status": self._status, "done": len(self._records), "total": self._total,
            "current": self._current, "steps": counts,
        }
        fan = self._fan
        if fan is not None:
            items = fan.counts()
            out["items"] = {"total": fan.count, "done": fan.count - items.get("not_run", 0) - len(fan.in_flight),
                            "failed": fan.failed, "in_flight": len(fan.in_flight)}
        return out

    @workflow.query(name="manifest")
    def manifest(self) -> dict[str, Any] | None:
        """The manifest so far (``run.status: running`` until the end)."""
        if self._manifest is None:
            return None
        return {**self._manifest, "steps": list(self._records)}

    @workflow.run
    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        info = workflow.info()
        self._job = job
        runbook = skeleton_runbook(job["runbook"])
        self._steps = {s["id"]: s for s in job["runbook"]["steps"] + job["runbook"]["finally"]}
        self._total = len(self._steps)
        begun = workflow.now()
        run_id = f"{begun:%Y%m%dT%H%M%SZ}-{workflow.random().getrandbits(24):06x}"
        started_at = stamp(begun)
        run_info: dict[str, Any] = {"id": run_id, "started_at": started_at, "dry_run": False}
        manifest = header(run_id, started_at, runbook.path, runbook.name, runbook.sha256,
                          job["vars"], job["git"])
        manifest["run"]["executor"] = {"type": "temporal", "workflow_id": info.workflow_id, "run_id": info.run_id}
        self._manifest = manifest
        deadline = begun + timedelta(seconds=runbook.run_timeout) if runbook.run_timeout is not None else None

        if any(s["queue"] for s in self._steps.values()):
            # a worker that loads the runbook polls its rate-limited providers' task queues
            await workflow.execute_activity(PREPARE_ACTIVITY, self._input(None, {}), task_queue=job["task_queue"],
                                            start_to_close_timeout=timedelta(minutes=1))
        conductor = Conductor(runbook, vars=job["vars"], run_info=run_info)
        while (work := conductor.next()) is not None:
            step = work.step
            self._current = step.id
            step_deadline = None if conductor.in_finally else deadline
            if not work.runs:
                record = step_record(StepResult(step, Status.NOT_RUN))
            elif step.for_each is not None:
                record = await self._fan_out(step, work.context, step_deadline)
            else:
                record = await self._activity(step, STEP_ACTIVITY, {"context": self._context(step, work.context)},
                                              step_deadline)
            line = self._steps[step.id].get("line")
            if line is not None:
                record["line"] = line
            status = Status(record["status"])
            error = record.get("error") or {}
            conductor.position += 1
            conductor.record_context(step, status, context_of(record), error.get("type"))
            self._records.append(record)
        self._current = None

        outputs: dict[str, Any] = {}
        error_text: str | None = None
        if job["runbook"]["outputs"]:
            context = conductor.context()
            context = {**context, "steps": referenced(context["steps"], job["runbook"]["outputs_refs"])}
            answer = await workflow.execute_activity(
                OUTPUTS_ACTIVITY, self._input(None, {"context": context,
                                                     "run_failed": conductor.interrupted or conductor.any_failed}),
                task_queue=job["task_queue"], start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RetryPolicy(maximum_attempts=3))
            outputs, error_text = answer["outputs"], answer["error"]
        outcome = conductor.outcome(error_text)
        self._status = outcome.value
        finished = workflow.now()
        manifest["run"].update(status=outcome.value, finished_at=stamp(finished),
                               duration_ms=int((finished - begun).total_seconds() * 1000))
        if error_text:
            manifest["run"]["error"] = error_text
        manifest["outputs"] = outputs
        manifest["steps"] = self._records
        workflow.upsert_memo({"status": outcome.value})
        return manifest

    # -- parts --------------------------------------------------------------------------------

    def _context(self, step: Step, context: dict[str, Any]) -> dict[str, Any]:
        """The step's template context, cut to the earlier steps its templates read."""
        return {**context, "steps": referenced(context["steps"], self._steps[step.id]["refs"])}

    def _input(self, step: Step | None, fields: dict[str, Any]) -> dict[str, Any]:
        return {"sha256": self._job["runbook"]["sha256"], "path": self._job["runbook"]["path"],
                "task_queue": self._job["task_queue"], "step": step.id if step is not None else None, **fields}

    async def _activity(self, step: Step, name: str, fields: dict[str, Any],
                        deadline: Any, index: int | None = None) -> dict[str, Any]:
        """Run one step (or item) as an activity; its record, or ``interrupted`` when its worker
        was lost (and, unless ``retry.on`` names ``timeout``, it was not sent again)."""
        data = self._steps[step.id]
        options = data["options"]
        left = (deadline - workflow.now()).total_seconds() if deadline is not None else None
        inp = self._input(step, {**fields, "deadline_in": left})
        heartbeat = self._job["heartbeat_timeout"]
        try:
            answer = await workflow.execute_activity(
                name, inp, task_queue=(data["queue"] if name == STEP_ACTIVITY else None) or self._job["task_queue"],
                start_to_close_timeout=_seconds(options["start_to_close"]),
                schedule_to_close_timeout=_seconds(options["schedule_to_close"]),
                heartbeat_timeout=_seconds(heartbeat),
                retry_policy=RetryPolicy(maximum_attempts=options["maximum_attempts"],
                                         initial_interval=timedelta(milliseconds=100), backoff_coefficient=1.0),
            )
        except ActivityError as exc:
            return self._failed(step, exc, index)
        record: dict[str, Any] = answer["record"]
        return record

    def _failed(self, step: Step, exc: ActivityError, index: int | None) -> dict[str, Any]:
        """The record of a step whose activity gave no result."""
        details = _heartbeat_details(exc)
        now = stamp(workflow.now())
        if _lost(exc):
            result = StepResult(step, Status.INTERRUPTED, started_at=details.get("started_at") or now,
                                request=details.get("request"))
            result.request_sha256 = details.get("request_sha256")
            result.attempts = [Attempt(**a) for a in details.get("attempts") or []]
            result.attempts.append(Attempt(len(result.attempts) + 1, details.get("sending_at") or now, 0, None,
                                           f"interrupted: {LOST}"))
            result.error = StepError(ErrorType.INTERRUPTED, LOST)
        else:
            cause = exc.cause
            message = cause.message if isinstance(cause, ApplicationError) else str(cause or exc)
            result = StepResult(step, Status.FAILED, started_at=now)
            result.error = StepError(ErrorType.INTERNAL, message)
        result.finished_at = now
        if index is None:
            return step_record(result)
        result.index = index
        return item_record(result)

    async def _fan_out(self, step: Step, context: dict[str, Any], deadline: Any) -> dict[str, Any]:
        """The items of a ``for_each`` step, ``concurrency`` activities at a time, as its FanOut says."""
        context = self._context(step, context)
        answer = await self._activity(step, ITEMS_ACTIVITY, {"context": context}, deadline)
        if "count" not in answer:  # for_each did not render to a list, or its worker was lost
            answer.setdefault("items", [])
            return answer
        count, items = answer["count"], answer["items"]
        fan = FanOut(step, count)
        self._fan = fan
        started, begun = stamp(workflow.now()), workflow.now()
        records: list[dict[str, Any]] = []
        pending: dict[asyncio.Task[dict[str, Any]], int] = {}
        while not fan.done():
            for index in fan.ready():
                fields = {"context": context, "index": index, "count": count,
                          "item": items[index] if items is not None else None, "rerender": items is None}
                task = asyncio.ensure_future(self._activity(step, STEP_ACTIVITY, fields, deadline, index))
                pending[task] = index
            if pending:
                done, _ = await workflow.wait(list(pending), return_when=asyncio.FIRST_COMPLETED)
                for task in sorted(done, key=lambda t: pending[t]):
                    index = pending.pop(task)
                    record = task.result()
                    records.append(record)
                    error = record.get("error")
                    fan.record(index, Status(record["status"]), {key: record.get(key) for key in _ITEM_KEYS}
                               | {"error": error})
        for index in fan.never_started():
            result = StepResult(step, Status.NOT_RUN)
            result.index = index
            records.append(item_record(result))
        self._fan = None
        finished = workflow.now()
        record = step_record(fan.result(started, stamp(finished), int((finished - begun).total_seconds() * 1000)))
        record["items"] = sorted(records, key=lambda item: item["index"])
        return record


def _seconds(value: float | None) -> timedelta | None:
    return timedelta(seconds=value) if value is not None else None
