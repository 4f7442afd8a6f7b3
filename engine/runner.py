"""The local run: the conductor's decisions and the executor's steps, in this process.

:class:`Runner` asks the :class:`~engine.conductor.Conductor` what is next, has the
:class:`~engine.executor.Executor` run it, hands each finished
:class:`~engine.model.StepResult` to an :class:`Observer` (console lines, the manifest
journal) and tells the conductor. Steps run one at a time in the calling thread (so
Ctrl-C interrupts the request in flight). The items of a ``for_each`` step run on up to
``concurrency`` worker threads, as its :class:`~engine.conductor.FanOut` says; only the
calling thread talks to the observer and the conductor, so neither needs a lock. Ctrl-C
during a fan-out records the items in flight ``interrupted`` and leaves their threads
(daemons) to end on their own. The runner does no file or terminal I/O itself.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from engine.clock import SYSTEM_CLOCK, Clock
from engine.conductor import Conductor, FanOut, Work
from engine.errors import LocatedErrors
from engine.executor import Executor, item_context
from engine.model import Attempt, ErrorType, Runbook, Status, Step, StepError, StepResult
from engine.preflight import preflight

if TYPE_CHECKING:
    from engine.remote_check import RemoteCheck
from engine.providers.base import Provider
from engine.redaction import Redactor
from engine.templating import Templates

__all__ = ["Observer", "RunOutcome", "Runner"]


class Observer(Protocol):
    """Receives the run's progress (console lines, the manifest journal)."""

    def step_started(self, step: Step, result: StepResult | None = None) -> None:
        """``step`` starts; ``result`` (of a step that is not a fan-out or a call) is filled in
        as it runs: its attempts so far (a poll's progress)."""

    def step_finished(self, result: StepResult) -> None: ...

    def call_started(self, step: Step, child: Runbook) -> None:
        """A step that calls ``child`` starts it: the steps that follow, until this step
        finishes, are the called runbook's."""

    def items_started(self, step: Step, count: int) -> None:
        """A ``for_each`` step is about to start its ``count`` items."""

    def item_finished(self, result: StepResult) -> None:
        """An item of a ``for_each`` step is done (``result.index`` says which)."""


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
        emulator_url: str | None = None,
        remote: RemoteCheck | None = None,
    ) -> None:
        self.runbook = runbook
        self.templates = templates
        self.environ = environ
        self.run_info = run_info
        self.redactor = redactor
        self.emulator_url = emulator_url
        self.remote = remote  # the remote input check of a called runbook's pre-flight, when on
        self.observer = observer
        self.clock = clock or (SYSTEM_CLOCK if sleep is None else _Sleeper(sleep))
        self.conductor = Conductor(runbook, vars=vars, run_info=run_info, previous=previous)
        self.executor = Executor(runbook, templates, environ=environ, providers=providers,
                                 redactor=redactor, targets=targets, clock=self.clock)

    def run(self, deadline: float | None = None) -> RunOutcome:
        """Run ``steps``, then ``finally``, then compute ``outputs``. ``deadline`` (clock
        seconds): when the steps must be done, besides the runbook's ``run_timeout``."""
        conductor, executor = self.conductor, self.executor
        timeout = self.runbook.run_timeout
        if timeout is not None:
            own = self.clock.monotonic() + timeout
            deadline = own if deadline is None else min(deadline, own)
        while (work := conductor.next()) is not None:
            if not work.runs:
                result = StepResult(work.step, Status.NOT_RUN)
            else:
                # finally steps run after a run timeout too, under their own limits
                step_deadline = None if conductor.in_finally else deadline
                if work.step.for_each is not None:
                    self.observer.step_started(work.step)
                    result = self._fan_out(work, step_deadline)
                elif work.step.child is not None:
                    self.observer.step_started(work.step)
                    result = self._call(work, step_deadline)
                else:
                    holder = StepResult(work.step, Status.RUNNING)  # the observer may watch its attempts
                    self.observer.step_started(work.step, holder)
                    result = executor.run_step(work.step, work.context, previous=work.previous,
                                               deadline=step_deadline, result=holder)
            conductor.record(result)
            self.observer.step_finished(result)
        outputs, error = executor.render_outputs(conductor.context(),
                                                 conductor.interrupted or conductor.any_failed)
        return RunOutcome(conductor.outcome(error), outputs, error, executor.internal_error)

    def _call(self, work: Work, deadline: float | None, observer: Observer | None = None) -> StepResult:
        """Run the runbook a step calls, as that step: a nested run (its own conductor, executor
        and providers; the same run, secrets and clock), its steps recorded under the step."""
        step, clock = work.step, self.clock
        child = step.child
        assert child is not None
        inputs = self.executor.call_inputs(step, work.context)
        if isinstance(inputs, StepResult):  # skipped, or its with: refused: nothing of it was sent
            return inputs
        started_at, start = clock.timestamp(), clock.monotonic()
        limit = step.step_timeout or step.timeout  # either bounds the whole call
        if limit:
            deadline = start + limit if deadline is None else min(deadline, start + limit)
        variables = {**child.vars, **inputs}
        # its request: the inputs it gives the called runbook (scrubbed of secrets when recorded)
        result = StepResult(step, Status.RUNNING, started_at=started_at,
                            request={"runbook": child.path, "with": inputs})
        try:
            prepared = preflight(child, self.templates, vars=variables, environ=self.environ,
                                 run_info=self.run_info, emulator_url=self.emulator_url, redactor=self.redactor,
                                 remote=self.remote)
        except LocatedErrors as exc:
            result.status = Status.FAILED
            result.error = StepError(ErrorType.CONFIGURATION, f"the called runbook {child.path} cannot start: "
                                     + "; ".join(str(p) for p in exc.problems),
                                     location=self.executor._where(step.path + ("runbook",)))
            result.finished_at = clock.timestamp()
            return result
        previous = None
        if work.previous is not None:  # --resume: its steps are reused one by one
            previous = {"run": {"id": work.previous.get("reused_from")}, "steps": work.previous.get("children") or []}
        observer = observer or self.observer
        observer.call_started(step, child)
        try:
            runner = Runner(child, self.templates, vars=variables, environ=prepared.environ, run_info=self.run_info,
                            providers=prepared.providers, observer=observer, redactor=prepared.redactor,
                            clock=clock, targets=prepared.targets, previous=previous,
                            emulator_url=self.emulator_url, remote=self.remote)
            outcome = runner.run(deadline)
        finally:
            for provider in prepared.providers.values():
                provider.close()
        if outcome.internal_error is not None and self.executor.internal_error is None:
            self.executor.internal_error = outcome.internal_error
        result.status = outcome.status
        result.output = outcome.outputs
        result.children = True
        if outcome.status is Status.FAILED:
            result.error = StepError(ErrorType.INTERNAL if outcome.internal_error else ErrorType.ACTION_FAILED,
                                     f"the called runbook {child.path} failed"
                                     + (f": {outcome.error}" if outcome.error else ""),
                                     location=self.executor._where(step.path + ("runbook",)))
        elif outcome.status is Status.INTERRUPTED:
            result.error = StepError(ErrorType.INTERRUPTED, f"interrupted in the called runbook {child.path}")
        result.finished_at = clock.timestamp()
        result.duration_ms = int((clock.monotonic() - start) * 1000)
        return result

    def _fan_out(self, work: Work, deadline: float | None) -> StepResult:
        """Run the items of a ``for_each`` step over a bounded set of worker threads."""
        step, executor = work.step, self.executor
        items = executor.items(step, {**work.context})
        if isinstance(items, StepResult):  # for_each did not render to a list: nothing was sent
            return items
        fan = FanOut(step, len(items), work.previous)

        def run_item(index: int, holder: StepResult) -> tuple[StepResult, BaseException | None]:
            if step.child is not None:  # each item calls the runbook: its steps kept with the item
                return self._call_item(step, work.context, items, index, fan.previous(index), deadline)
            return executor.run_item(step, work.context, items, index, previous=fan.previous(index),
                                     deadline=deadline, result=holder)

        return self._run_items(fan, list(range(len(items))), run_item)

    def _call_item(self, step: Step, context: Mapping[str, Any], items: list[Any], index: int,
                   previous: Mapping[str, Any] | None,
                   deadline: float | None) -> tuple[StepResult, BaseException | None]:
        """Item ``index`` of a ``for_each`` step that calls a runbook (in a worker thread: its
        steps' records are kept with the item, not journaled one by one)."""
        from engine.recording import CollectedSteps

        collected = CollectedSteps(self.redactor)
        work = Work(step, True, item_context(step, context, items, index), previous)
        result = self._call(work, deadline, observer=collected)
        result.index = index
        result.children = collected.records
        return result, None

    def _run_items(self, fan: FanOut, indexes: list[int], run_one: _ItemRun) -> StepResult:
        """Run ``fan``'s items (position ``p`` is item ``indexes[p]``) on up to ``concurrency``
        worker threads, as ``fan`` says; each finished one goes to the observer."""
        step, clock = fan.step, self.clock
        started_at, start = clock.timestamp(), clock.monotonic()
        self.observer.items_started(step, fan.count)
        workers = _Workers(min(step.concurrency, fan.count))
        running: dict[int, StepResult] = {}  # position -> what the item has done so far

        def done(position: int, item: StepResult) -> None:
            running.pop(position, None)
            fan.record(position, item.status, item.item_context())
            self.observer.item_finished(item)

        try:
            while not fan.done():
                for position in fan.ready():
                    holder = running[position] = StepResult(step, Status.RUNNING, started_at=clock.timestamp())
                    holder.index = indexes[position]
                    workers.submit(functools.partial(_positioned, run_one, position, indexes[position], holder))
                if fan.in_flight:
                    position, item, bug = workers.next_result()
                    if bug is not None and self.executor.internal_error is None:
                        self.executor.internal_error = bug
                    done(position, item)
        except KeyboardInterrupt:
            for position in fan.interrupt():
                done(position, _interrupted(running[position], clock))
        finally:
            workers.stop()
        for position in fan.never_started():  # after a failure (fail_fast) or Ctrl-C: recorded too
            item = StepResult(step, Status.NOT_RUN)
            item.index = indexes[position]
            self.observer.item_finished(item)
        return fan.result(started_at, clock.timestamp(), int((clock.monotonic() - start) * 1000))

    def replay_step(self, step: Step, request: Any) -> StepResult:
        """Send a recorded request again, as it was; the observer gets the result."""
        result = self.executor.replay_step(step, request)
        self.observer.step_finished(result)
        return result

    def replay_items(self, step: Step, requests: list[tuple[int, Any]]) -> StepResult:
        """Send recorded requests of a ``for_each`` step's items (``(index, request)``) again,
        as they were, ``concurrency`` at a time; the observer gets each item and the step."""

        def replay_item(index: int, holder: StepResult) -> tuple[StepResult, BaseException | None]:
            result = self.executor.replay_step(step, by_index[index])
            result.index = index
            return result, None

        by_index = dict(requests)
        result = self._run_items(FanOut(step, len(requests)), [index for index, _ in requests], replay_item)
        self.observer.step_finished(result)
        return result


#: Runs item ``index`` into the result given: its result and the bug it met, if any.
_ItemRun = Callable[[int, StepResult], "tuple[StepResult, BaseException | None]"]


def _positioned(run_one: _ItemRun, position: int, index: int,
                holder: StepResult) -> tuple[int, StepResult, BaseException | None]:
    item, bug = run_one(index, holder)
    return position, item, bug


def _interrupted(holder: StepResult, clock: Clock) -> StepResult:
    """The record of an item that was in flight when the run was interrupted: what it had done,
    and the attempt it was making (its request may have gone out; no answer was awaited)."""
    result = StepResult(holder.step, Status.INTERRUPTED, started_at=holder.started_at, request=holder.request)
    result.index = holder.index
    result.request_sha256 = holder.request_sha256
    result.attempts = list(holder.attempts)
    result.attempts.append(Attempt(len(result.attempts) + 1, clock.timestamp(), 0, None,
                                   "interrupted: in flight, no answer awaited"))
    result.error = StepError(ErrorType.INTERRUPTED, "interrupted while the item was in flight")
    result.finished_at = clock.timestamp()
    return result


class _Workers:
    """``size`` daemon threads running submitted calls; results come back in finishing order.

    Daemons, not a ``concurrent.futures`` pool: after Ctrl-C the run records the items in flight
    and goes on to its ``finally`` steps and exit without waiting for their answers.
    """

    def __init__(self, size: int) -> None:
        self._tasks: queue.SimpleQueue[Callable[[], Any] | None] = queue.SimpleQueue()
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [threading.Thread(target=self._work, name=f"runbook-item-{i}", daemon=True)
                         for i in range(max(1, size))]
        for thread in self._threads:
            thread.start()

    def _work(self) -> None:
        while (task := self._tasks.get()) is not None:
            try:
                self._results.put((True, task()))
            except BaseException as exc:  # the caller re-raises it: a thread must not die silently
                self._results.put((False, exc))

    def submit(self, task: Callable[[], Any]) -> None:
        self._tasks.put(task)

    def next_result(self) -> Any:
        """The next finished call's return value (waits; Ctrl-C interrupts the wait)."""
        ok, value = self._results.get()
        if not ok:
            raise value
        return value

    def stop(self) -> None:
        """Let the threads end once their current call returns (nothing waits for them)."""
        for _ in self._threads:
            self._tasks.put(None)
