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

from engine.model import Runbook, Status, Step, StepResult

__all__ = ["Conductor", "Work"]


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
            if record.get("status") == "succeeded" and record.get("request_sha256")
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
            if not step.is_finally and (not step.continue_on_error or error_type == "internal"):
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
