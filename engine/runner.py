"""The local run: the conductor's decisions and the executor's steps, in this process.

:class:`Runner` asks the :class:`~engine.conductor.Conductor` what is next, has the
:class:`~engine.executor.Executor` run it, hands each finished
:class:`~engine.model.StepResult` to an :class:`Observer` (console lines, the manifest
journal) and tells the conductor. Steps run one at a time in the calling thread (so
Ctrl-C interrupts the request in flight); it does no file or terminal I/O itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from engine.clock import SYSTEM_CLOCK, Clock
from engine.conductor import Conductor
from engine.executor import Executor
from engine.model import Runbook, Status, Step, StepResult
from engine.providers.base import Provider
from engine.redaction import Redactor
from engine.templating import Templates

__all__ = ["Observer", "RunOutcome", "Runner"]


class Observer(Protocol):
    """Receives the run's progress (console lines, the manifest journal)."""

    def step_started(self, step: Step) -> None: ...

    def step_finished(self, result: StepResult) -> None: ...


class RunOutcome(NamedTuple):
    """The whole run: its status and the runbook outputs (each step's result went to the
    observer as it finished; the runner keeps none, so a long run's memory stays flat)."""

    status: Status
    outputs: dict[str, Any]
    error: str | None
    internal_error: BaseException | None


class _Sleeper(Clock):
    """The system clock with another ``sleep`` (tests pass a recorder)."""

    def __init__(self, sleep: Callable[[float], None]) -> None:
        self._sleep = sleep

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)


class Runner:
    """Runs one runbook once, locally."""

    def __init__(
        self,
        runbook: Runbook,
        templates: Templates,
        *,
        vars: Mapping[str, Any],
        environ: Mapping[str, str],
        run_info: dict[str, Any],
        providers: Mapping[str, Provider],
        observer: Observer,
        redactor: Redactor | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Clock | None = None,
        targets: Mapping[str, str] | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        self.runbook = runbook
        self.observer = observer
        self.clock = clock or (SYSTEM_CLOCK if sleep is None else _Sleeper(sleep))
        self.conductor = Conductor(runbook, vars=vars, run_info=run_info, previous=previous)
        self.executor = Executor(runbook, templates, environ=environ, providers=providers,
                                 redactor=redactor, targets=targets, clock=self.clock)

    def run(self) -> RunOutcome:
        """Run ``steps``, then ``finally``, then compute ``outputs``."""
        conductor, executor = self.conductor, self.executor
        timeout = self.runbook.run_timeout
        deadline = self.clock.monotonic() + timeout if timeout is not None else None
        while (work := conductor.next()) is not None:
            if not work.runs:
                result = StepResult(work.step, Status.NOT_RUN)
            else:
                self.observer.step_started(work.step)
                # finally steps run after a run timeout too, under their own limits
                result = executor.run_step(work.step, work.context, previous=work.previous,
                                           deadline=None if conductor.in_finally else deadline)
            conductor.record(result)
            self.observer.step_finished(result)
        outputs, error = executor.render_outputs(conductor.context(),
                                                 conductor.interrupted or conductor.any_failed)
        return RunOutcome(conductor.outcome(error), outputs, error, executor.internal_error)

    def replay_step(self, step: Step, request: Any) -> StepResult:
        """Send a recorded request again, as it was; the observer gets the result."""
        result = self.executor.replay_step(step, request)
        self.observer.step_finished(result)
        return result
