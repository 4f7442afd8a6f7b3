"""What runs next: the run's decisions, without any I/O.

The conductor knows the order of a runbook's steps and the rules between them: a failed
step (unless ``continue_on_error``, and always for an internal error) or an interrupted
one stops the main steps, whose rest are ``not_run``; ``finally`` steps always run, with
``run.status`` set to what the main steps came to; the run's status at the end. It is
told each result and says what is next, with the template context that step renders
against (``vars``, the earlier steps, ``run``; never secrets, which the executor adds
where the step runs). It renders nothing, sends nothing, reads no clock.

Its whole state round-trips through :meth:`Conductor.to_dict` / :meth:`Conductor.from_dict`
as JSON data, so a journal or a Temporal workflow can hold it; the executor
(:mod:`engine.executor`) is the other half, run locally by :mod:`engine.runner`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from engine.model import ErrorType, Runbook, Status, Step, StepError, StepResult

__all__ = ["Conductor", "FanOut", "Work"]


class Work(NamedTuple):
    """The next step: whether it runs (else it is recorded ``not_run``), the context its
    templates render against, and the result a previous run recorded for it (``--resume``)."""

    step: Step
    runs: bool
    context: dict[str, Any]
    previous: Mapping[str, Any] | None


class Conductor:
    """Sequences one run of a runbook (see the module docstring)."""

    def __init__(self, runbook: Runbook, *, vars: Mapping[str, Any], run_info: Mapping[str, Any],
                 previous: Mapping[str, Any] | None = None) -> None:
        self.runbook = runbook
        self.vars = dict(vars)
        self.run_info: dict[str, Any] = dict(run_info)
        #: ``steps.<id>`` of every step that ran (or was skipped, or failed), in order.
        self.steps: dict[str, Any] = {}
        self.position = 0  # index into steps + finally_steps of the next step
        self.stopped = False  # a main step failed or was interrupted: the rest are not run
        self.interrupted = False
        self.any_failed = False
        self._reusable: dict[str, Mapping[str, Any]] = {
            record["id"]: record
            for record in (previous or {}).get("steps", [])
            if (record.get("status") == "succeeded" and record.get("request_sha256"))
            or record.get("items")  # a fan-out: its items are reused one by one (see FanOut)
            or record.get("children")  # a call: its steps are reused one by one
        }
        self._reused_run = (previous or {}).get("run", {}).get("id")

    @property
    def _order(self) -> tuple[Step, ...]:
        return self.runbook.steps + self.runbook.finally_steps

    def context(self) -> dict[str, Any]:
        """What every template of the run can read so far (secrets and env are the executor's)."""
        return {"vars": self.vars, "steps": self.steps, "run": self.run_info}

    def next(self) -> Work | None:
        """The next step to run or record, or None when every step is done."""
        order = self._order
        if self.position >= len(order):
            return None
        step = order[self.position]
        if step.is_finally and "status" not in self.run_info:
            # finally steps see what the main steps came to
            self.run_info["status"] = "failed" if (self.any_failed or self.interrupted) else "succeeded"
            self.run_info["interrupted"] = self.interrupted
        runs = step.is_finally or not self.stopped
        previous = None
        if runs and not step.is_finally:  # a notification or a clean-up is never "reused"
            previous = self._reusable.get(step.id)
            if previous is not None and self._reused_run and not previous.get("reused_from"):
                previous = {**previous, "reused_from": self._reused_run}
        return Work(step, runs, self.context(), previous)

    def record(self, result: StepResult) -> None:
        """Take the result of the step :meth:`next` gave."""
        step = self._order[self.position]
        if result.step.id != step.id:
            raise ValueError(f"expected the result of step {step.id!r}, got {result.step.id!r}")
        self.position += 1
        self.record_context(step, result.status, result.context(), result.error.type if result.error else None)

    def record_context(self, step: Step, status: Status, context: dict[str, Any] | None,
                       error_type: str | None) -> None:
        """Take a step's outcome as data (``status``, its ``steps.<id>`` context, the error type)."""
        if status is not Status.NOT_RUN and context is not None:
            self.steps[step.id] = context
        if status is Status.FAILED:
            self.any_failed = True
            if not step.is_finally and (not step.continue_on_error or error_type == ErrorType.INTERNAL):
                self.stopped = True
        elif status is Status.INTERRUPTED:
            self.interrupted = True
            self.stopped = True

    @property
    def in_finally(self) -> bool:
        """Whether the main steps are done (what is next, if anything, is a finally step)."""
        return self.position >= len(self.runbook.steps)

    def outcome(self, outputs_error: str | None = None) -> Status:
        """The run's status once every step is done (``outputs_error``: the outputs could not
        be computed in a run whose steps all succeeded)."""
        if self.interrupted:
            return Status.INTERRUPTED
        if self.any_failed or outputs_error:
            return Status.FAILED
        return Status.SUCCEEDED

    # -- state ------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The conductor's state as JSON data (the runbook itself is not part of it)."""
        return {
            "vars": self.vars,
            "run": self.run_info,
            "steps": self.steps,
            "position": self.position,
            "stopped": self.stopped,
            "interrupted": self.interrupted,
            "any_failed": self.any_failed,
            "reusable": self._reusable,
            "reused_run": self._reused_run,
        }

    @classmethod
    def from_dict(cls, runbook: Runbook, state: Mapping[str, Any]) -> Conductor:
        """A conductor that goes on from ``state`` (from :meth:`to_dict`) for ``runbook``."""
        conductor = cls(runbook, vars=state["vars"], run_info=state["run"])
        conductor.steps = dict(state["steps"])
        conductor.position = int(state["position"])
        conductor.stopped = bool(state["stopped"])
        conductor.interrupted = bool(state["interrupted"])
        conductor.any_failed = bool(state["any_failed"])
        conductor._reusable = dict(state["reusable"])
        conductor._reused_run = state["reused_run"]
        return conductor


class FanOut:
    """The items of one ``for_each`` step (SPEC §9): which start next, and what the step comes to.

    Like the conductor it does no I/O: the caller starts the items :meth:`ready` names (at
    most ``concurrency`` in flight), reports each one finished (:meth:`record`) and asks again
    until :meth:`done`. After a failed item a ``fail_fast`` step starts no more; the items never
    started are ``not_run``. :meth:`interrupt` ends it (Ctrl-C): the items in flight are recorded
    interrupted by the caller, the rest ``not_run``. Only each item's context is kept (its record
    went to the journal), so a fan-out of many items keeps little per item.
    """

    def __init__(self, step: Step, count: int, previous: Mapping[str, Any] | None = None) -> None:
        self.step = step
        self.count = count
        self.contexts: list[dict[str, Any] | None] = [None] * count
        self.statuses: list[Status] = [Status.NOT_RUN] * count
        self.in_flight: set[int] = set()
        self.next_index = 0
        self.failed = 0
        self.first_failure: tuple[int, dict[str, Any]] | None = None
        self.stopping = False
        self.interrupted = False
        self._previous: dict[int, Mapping[str, Any]] = {}
        reused_run = (previous or {}).get("reused_from")  # the run whose records these are
        for record in (previous or {}).get("items") or []:
            index = record.get("index")
            if isinstance(index, int) and 0 <= index < count and (
                    (record.get("status") == "succeeded" and record.get("request_sha256"))
                    or record.get("children")):  # an item that called a runbook: its steps reused
                self._previous[index] = {**record, "reused_from": record.get("reused_from") or reused_run}

    def ready(self) -> list[int]:
        """The items to start now (and counts them in flight)."""
        started: list[int] = []
        while (not self.stopping and self.next_index < self.count
               and len(self.in_flight) < self.step.concurrency):
            started.append(self.next_index)
            self.in_flight.add(self.next_index)
            self.next_index += 1
        return started

    def previous(self, index: int) -> Mapping[str, Any] | None:
        """What a resumed run recorded for item ``index``, when it succeeded (``--resume``)."""
        return self._previous.get(index)

    def record(self, index: int, status: Status, context: dict[str, Any]) -> None:
        """Take item ``index``'s outcome: its status and ``steps.<id>.items[index]``."""
        if index not in self.in_flight:
            raise ValueError(f"item {index} of step {self.step.id!r} is not in flight")
        self.in_flight.discard(index)
        self.statuses[index] = status
        self.contexts[index] = context
        if status is Status.FAILED:
            self.failed += 1
            if self.first_failure is None or index < self.first_failure[0]:
                self.first_failure = (index, context)
            if self.step.fail_fast:
                self.stopping = True
        elif status is Status.INTERRUPTED:
            self.interrupted = self.stopping = True

    def interrupt(self) -> list[int]:
        """Start nothing more; return the items in flight (the caller records them interrupted)."""
        self.stopping = self.interrupted = True
        return sorted(self.in_flight)

    def never_started(self) -> range:
        """The items that were not started (once :meth:`done`: none, or those after a stop)."""
        return range(self.next_index, self.count)

    def done(self) -> bool:
        """Whether every item is finished or will never start."""
        return not self.in_flight and (self.stopping or self.next_index >= self.count)

    def status(self) -> Status:
        """The step's status: interrupted, failed when an item failed, else succeeded."""
        if self.interrupted:
            return Status.INTERRUPTED
        return Status.FAILED if self.failed else Status.SUCCEEDED

    def item_contexts(self) -> list[dict[str, Any]]:
        """``steps.<id>.items``: every item's context, ``not_run`` for those never started."""
        return [c if c is not None else {"status": Status.NOT_RUN.value, "output": None, "exports": {},
                                         "run_id": None, "error": None}
                for c in self.contexts]

    def counts(self) -> dict[str, int]:
        """How many items came to each status (for progress lines and the step's error)."""
        out: dict[str, int] = {}
        for status in self.statuses:
            out[status.value] = out.get(status.value, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        """The fan-out's state as JSON data (its step is the runbook's)."""
        return {
            "step": self.step.id,
            "count": self.count,
            "contexts": self.contexts,
            "statuses": [s.value for s in self.statuses],
            "in_flight": sorted(self.in_flight),
            "next_index": self.next_index,
            "failed": self.failed,
            "first_failure": list(self.first_failure) if self.first_failure else None,
            "stopping": self.stopping,
            "interrupted": self.interrupted,
            "previous": {str(k): v for k, v in self._previous.items()},
        }

    @classmethod
    def from_dict(cls, step: Step, state: Mapping[str, Any]) -> FanOut:
        """A fan-out that goes on from ``state`` (from :meth:`to_dict`) for ``step``."""
        if state["step"] != step.id:
            raise ValueError(f"the state is of step {state['step']!r}, not {step.id!r}")
        fan = cls(step, int(state["count"]))
        fan.contexts = list(state["contexts"])
        fan.statuses = [Status(s) for s in state["statuses"]]
        fan.in_flight = set(state["in_flight"])
        fan.next_index = int(state["next_index"])
        fan.failed = int(state["failed"])
        fan.first_failure = tuple(state["first_failure"]) if state["first_failure"] else None
        fan.stopping = bool(state["stopping"])
        fan.interrupted = bool(state["interrupted"])
        fan._previous = {int(k): v for k, v in state["previous"].items()}
        return fan

    def result(self, started_at: str | None, finished_at: str | None, duration_ms: int) -> StepResult:
        """The step's result: ``output`` is the items' outputs in item order (null for an item
        that did not succeed), ``items`` their contexts, ``error`` says how many failed and why
        the first did."""
        result = StepResult(self.step, self.status(), started_at=started_at)
        result.finished_at, result.duration_ms = finished_at, duration_ms
        result.items = self.item_contexts()
        result.output = [c["output"] if c["status"] == Status.SUCCEEDED.value else None for c in result.items]
        if self.first_failure is not None:
            index, context = self.first_failure
            error = context["error"] or {}
            result.error = StepError(
                type=ErrorType(error.get("type") or ErrorType.INTERNAL),
                message=f"{self.failed} of {self.count} items failed; item {index}: {error.get('message')}",
                http_status=error.get("http_status"),
                attribution=error.get("attribution"),
                location=error.get("location"),
            )
        elif self.interrupted:
            result.error = StepError(ErrorType.INTERRUPTED, "interrupted while items were in flight")
        return result
