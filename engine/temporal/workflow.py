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
from temporalio.exceptions import ActivityError, ApplicationError, ChildWorkflowError, TimeoutError

with workflow.unsafe.imports_passed_through():
    from engine.conductor import Conductor, FanOut
    from engine.manifest import header, item_record, step_record
    from engine.model import Attempt, ErrorType, Status, Step, StepError, StepResult
    from engine.temporal import (
        CALL_ACTIVITY,
        ITEMS_ACTIVITY,
        OUTPUTS_ACTIVITY,
        PREPARE_ACTIVITY,
        STEP_ACTIVITY,
        WORKFLOW,
    )
    from engine.temporal.packing import TooLarge, packed, unpacked
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
        self._calls: dict[str, dict[str, Any]] = {}  # the called runbooks running, by child workflow id
        self._status = "running"

    @workflow.query(name="status")
    def status(self) -> dict[str, Any]:
        """Step k of N, the step in flight, its items (for a fan-out), the steps per status, and
        the called runbooks running (``calls``: their child workflows, by step and item)."""
        counts: dict[str, int] = {}
        for record in self._records:
            counts[record["status"]] = counts.get(record["status"], 0) + 1
        out: dict[str, Any] = {
            "run_id": (self._manifest or {}).get("run", {}).get("id"),
            "status": self._status, "done": len(self._records), "total": self._total,
            "current": self._current, "steps": counts, "calls": list(self._calls.values()),
        }
        fan = self._fan
        if fan is not None:
            not_done = fan.counts().get("not_run", 0)  # the items in flight, and those not started
            out["items"] = {"total": fan.count, "done": fan.count - not_done, "failed": fan.failed,
                            "in_flight": len(fan.in_flight)}
        return out

    @workflow.query(name="steps")
    def steps(self, since: int = 0) -> Any:
        """The records of the steps finished so far, from the ``since``-th on (:func:`packed`; none
        when they are too large to answer with: the run's result has them)."""
        try:
            return packed(self._records[since:], "the steps")
        except TooLarge:
            return []

    @workflow.query(name="manifest")
    def manifest(self) -> Any:
        """The manifest so far (``run.status: running`` until the end; :func:`packed`)."""
        if self._manifest is None:
            return None
        return packed({**self._manifest, "steps": list(self._records)})

    @workflow.run
    async def run(self, job: dict[str, Any]) -> Any:
        """The run's manifest (:func:`packed`: compressed when large)."""
        try:
            return packed(await self._run(job))
        except TooLarge as exc:  # as it is, no worker could complete the run: it fails, saying why
            raise ApplicationError(str(exc), type="ManifestTooLarge", non_retryable=True) from None

    async def _run(self, job: dict[str, Any]) -> dict[str, Any]:
        info = workflow.info()
        self._job = job
        runbook = skeleton_runbook(job["runbook"])
        self._steps = {s["id"]: s for s in job["runbook"]["steps"] + job["runbook"]["finally"]}
        self._total = len(self._steps)
        begun = workflow.now()
        run_id = f"{begun:%Y%m%dT%H%M%SZ}-{workflow.random().getrandbits(24):06x}"
        started_at = stamp(begun)
        run_info: dict[str, Any] = {"id": run_id, "started_at": started_at, "dry_run": False}
        if job.get("run") is not None:  # a called runbook's: the same run as its caller's
            run_info = dict(job["run"])
            run_id, started_at = run_info["id"], run_info["started_at"]
        self._run_info = dict(run_info)
        manifest = header(run_id, started_at, runbook.path, runbook.name, runbook.sha256,
                          job["vars"], job["git"])
        manifest["run"]["executor"] = {"type": "temporal", "workflow_id": info.workflow_id, "run_id": info.run_id}
        self._manifest = manifest
        deadline = begun + timedelta(seconds=runbook.run_timeout) if runbook.run_timeout is not None else None
        if job.get("deadline_in") is not None:  # a called runbook's: its caller's time, and the call's
            given = begun + timedelta(seconds=job["deadline_in"])
            deadline = given if deadline is None else min(deadline, given)

        if any(s["queue"] for s in self._steps.values()):
            # a worker that loads the runbook polls its rate-limited providers' task queues
            await workflow.execute_activity(PREPARE_ACTIVITY, self._input(None, {}), task_queue=job["task_queue"],
                                            start_to_close_timeout=timedelta(minutes=1))
        conductor = Conductor(runbook, vars=job["vars"], run_info=run_info)
        while (work := conductor.next()) is not None:
            step = work.step
            self._current = step.id
            step_deadline = None if conductor.in_finally else deadline
            data = self._steps[step.id]
            if not work.runs:
                record = step_record(StepResult(step, Status.NOT_RUN))
            elif step.for_each is not None:
                record = await self._fan_out(step, work.context, step_deadline)
            elif "call" in data:
                record = await self._call(step, {"context": self._context(step, work.context)}, step_deadline)
            elif "poll" in data:
                record = await self._poll(step, {"context": self._context(step, work.context)}, step_deadline)
            else:
                record = await self._activity(step, STEP_ACTIVITY, {"context": self._context(step, work.context)},
                                              step_deadline)
            line = data.get("line")
            if line is not None:
                record["line"] = line
            if "call" in data:
                record["called"] = data["call"]["called"]
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
        inp = {"sha256": self._job["runbook"]["sha256"], "path": self._job["runbook"]["path"],
               "task_queue": self._job["task_queue"], "step": step.id if step is not None else None, **fields}
        if self._job.get("sealed"):  # inputs that hold a secret: the activity renders them again
            inp["sealed"] = self._job["sealed"]
        return inp

    async def _activity(self, step: Step, name: str, fields: dict[str, Any],
                        deadline: Any, index: int | None = None) -> dict[str, Any]:
        """Run one step (or item) as an activity; its record, or ``interrupted`` when its worker
        was lost (and, unless ``retry.on`` names ``timeout``, it was not sent again)."""
        record: dict[str, Any] = (await self._execute(step, name, fields, deadline, index))["record"]
        return record

    async def _execute(self, step: Step, name: str, fields: dict[str, Any],
                       deadline: Any, index: int | None = None) -> dict[str, Any]:
        """Run one activity of a step (or item): its answer, or ``{"record": ...}`` of its failure."""
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
            return {"record": self._failed(step, exc, index)}
        out: dict[str, Any] = answer
        return out

    async def _poll(self, step: Step, fields: dict[str, Any], deadline: Any,
                    index: int | None = None) -> dict[str, Any]:
        """A step with ``until`` + ``poll``: one activity per poll (the same request, sent again),
        ``workflow.sleep`` between them, so a poll survives the loss of its worker and a long
        wait holds no worker. Every poll's attempts are the step's, numbered on."""
        policy = self._steps[step.id]["poll"]
        begun, wait = workflow.now(), float(policy["interval"])
        attempts: list[dict[str, Any]] = []
        first: dict[str, Any] | None = None
        while True:
            answer = await self._execute(step, STEP_ACTIVITY, {**fields, "poll": {"polls": len(attempts)}},
                                         deadline, index)
            record: dict[str, Any] = answer["record"]
            first = first or record
            attempts += [{**a, "number": len(attempts) + i + 1} for i, a in enumerate(record.get("attempts") or [])]
            record["attempts"] = attempts
            if not answer.get("polling"):  # until is true, or the step failed otherwise
                break
            if (workflow.now() - begun).total_seconds() + wait > policy["timeout"]:
                message = record["error"]["message"]
                head, _, rest = message.partition(" was still false after ")
                _, _, value = rest.partition("; its last value: ")
                record["error"]["message"] = (f"{head} was still false after {len(attempts)} polls in "
                                              f"{policy['timeout']:g}s (poll timeout); its last value: {value}")
                break
            await workflow.sleep(wait)
            if policy["backoff"] == "exponential":
                wait *= 2
        record["started_at"] = first.get("started_at")
        if record.get("finished_at") is not None:
            record["duration_ms"] = int((workflow.now() - begun).total_seconds() * 1000)
        return record

    async def _call(self, step: Step, fields: dict[str, Any], deadline: Any,
                    index: int | None = None) -> dict[str, Any]:
        """A step (or item) that calls a runbook: its ``with:`` rendered in an activity (where the
        secrets are; what it returns is scrubbed), then a child workflow running the called
        runbook, whose steps are the record's ``children`` and whose outputs its ``output``."""
        call = self._steps[step.id]["call"]
        try:
            answer = await workflow.execute_activity(
                CALL_ACTIVITY, self._input(step, fields), task_queue=self._job["task_queue"],
                start_to_close_timeout=timedelta(minutes=1), heartbeat_timeout=_seconds(self._job["heartbeat_timeout"]),
                retry_policy=RetryPolicy(maximum_attempts=3))  # it renders, and sends nothing
        except ActivityError as exc:
            return self._failed(step, exc, index)
        if "record" in answer:  # skipped by its when, or its with: refused: nothing of it was sent
            record: dict[str, Any] = answer["record"]
            return record
        begun = workflow.now()
        limit = step.step_timeout or step.timeout  # either bounds the whole call
        if limit:
            deadline = begun + timedelta(seconds=limit) if deadline is None else min(deadline, begun + timedelta(
                seconds=limit))
        path = call["runbook"]["path"]
        sealed = None
        if answer["sealed"]:
            sealed = {"names": answer["sealed"], "outer": self._job.get("sealed"),
                      "caller": {"sha256": self._job["runbook"]["sha256"], "path": self._job["runbook"]["path"],
                                 "step": step.id, **fields}}
        child = {
            "runbook": call["runbook"], "text": self._job["files"][path], "files": self._job["files"],
            "vars": {**call["vars"], **answer["inputs"]}, "git": None, "task_queue": self._job["task_queue"],
            "batch": self._job["batch"], "key": self._job["key"], "heartbeat_timeout": self._job["heartbeat_timeout"],
            "run": self._run_info, "sealed": sealed,
            "deadline_in": (deadline - begun).total_seconds() if deadline is not None else None,
        }
        ident = f"{workflow.info().workflow_id}/{step.id}" + (f"/{index}" if index is not None else "")
        # its request, as a local run records it: the inputs given the called runbook (scrubbed)
        result = StepResult(step, Status.RUNNING, started_at=stamp(begun),
                            request={"runbook": path, "with": answer["inputs"]})
        result.index = index
        self._calls[ident] = {"step": step.id, "index": index, "workflow_id": ident}
        try:
            manifest = unpacked(await workflow.execute_child_workflow(WORKFLOW, child, id=ident,
                                                                      task_queue=self._job["task_queue"]))
        except ChildWorkflowError as exc:
            result.status = Status.FAILED
            result.error = StepError(ErrorType.INTERNAL,
                                     f"the called runbook {path} did not finish: {exc.cause or exc}")
            manifest = {"steps": [], "outputs": None, "run": {}}
        else:
            result.status = Status(manifest["run"]["status"])
            result.output = manifest["outputs"]
            error = manifest["run"].get("error")
            if result.status is Status.FAILED:
                kind = ErrorType.INTERNAL if _internal(manifest["steps"]) else ErrorType.ACTION_FAILED
                result.error = StepError(kind, f"the called runbook {path} failed" + (f": {error}" if error else ""),
                                         location=call["location"])
            elif result.status is Status.INTERRUPTED:
                result.error = StepError(ErrorType.INTERRUPTED, f"interrupted in the called runbook {path}")
        finally:
            del self._calls[ident]
        finished = workflow.now()
        result.finished_at = stamp(finished)
        result.duration_ms = int((finished - begun).total_seconds() * 1000)
        record = step_record(result) if index is None else item_record(result)
        record["children"] = manifest["steps"]
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
                data = self._steps[step.id]
                run = self._call if "call" in data else self._poll if "poll" in data else None
                task = asyncio.ensure_future(run(step, fields, deadline, index) if run is not None else
                                             self._activity(step, STEP_ACTIVITY, fields, deadline, index))
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


def _internal(records: list[dict[str, Any]]) -> bool:
    """Whether a called runbook's steps (at any depth) met a bug: the call is then ``internal`` too."""
    for record in records:
        if (record.get("error") or {}).get("type") == ErrorType.INTERNAL.value:
            return True
        if _internal(record.get("children") or []) or _internal(record.get("items") or []):
            return True
    return False


def _seconds(value: float | None) -> timedelta | None:
    return timedelta(seconds=value) if value is not None else None
