"""The activities of the runbook workflow: one step, one ``for_each`` item, the items, the outputs.

Each runs inside a worker, whose environment holds the secrets. It loads the runbook from the
text the workflow was started with (read from the workflow's history once per worker and
runbook, then cached by sha256), prepares its providers with the pre-flight of a local run
(cached per runbook and provider configuration, so connections and tokens are reused), and runs
the :class:`~engine.executor.Executor` in a thread while it heartbeats. It returns the step's
manifest record scrubbed by the redactor that knows every secret it rendered: nothing it hands
to Temporal (its result, its heartbeats, its failures) holds a secret.

An activity's second attempt means the first one's worker was lost (a step's failure is a
result, never an exception): it runs only for a step whose ``retry.on`` names ``timeout``, and
its attempts continue the lost one's, as the last heartbeat recorded them.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from temporalio import activity
from temporalio.client import Client
from temporalio.exceptions import ApplicationError

# httpx now, not on the first send: a rate limit spaces the first attempts, which the import
# would otherwise bunch together (as engine.session does before step 1)
import engine.providers._http  # noqa: F401
from engine.errors import LocatedErrors
from engine.executor import Executor, item_context
from engine.manifest import item_record, scrubbed_line, step_record
from engine.model import Attempt, ErrorType, PollPolicy, Runbook, Status, Step, StepError, StepResult
from engine.preflight import Prepared, preflight
from engine.rate_limit import Gate
from engine.redaction import Redactor
from engine.templating import Templates, iter_templates
from engine.temporal import CALL_ACTIVITY, ITEMS_ACTIVITY, OUTPUTS_ACTIVITY, PREPARE_ACTIVITY, STEP_ACTIVITY
from engine.temporal.spec import rate_queue

__all__ = ["Activities"]

T = TypeVar("T")

#: The share of a provider's ``rate_limit`` that its task queue's server-side limit is set to: the
#: server's token bucket holds a second's worth, so in any second it may dispatch twice its rate
#: (the bucket and its refill); under half the limit keeps every second under it, whatever the
#: number of workers, with room for the jitter between dispatch and arrival (45%: at half, one
#: second of a loaded test machine saw 51 arrivals for a limit of 50; see the README).
RATE_SHARE = 0.45
#: The share of it that one worker's own gate admits.
GATE_SHARE = 0.96

_LOST = "the worker was lost; the action may have run"
#: How often an activity looks whether its step has news for the heartbeat (an attempt going out):
#: an answer that comes sooner needs none, and its step costs the server no heartbeat to write.
SENDING_NEWS_AFTER = 0.25


class _Items(list[Any]):
    """The one item an activity runs, seen as item ``index`` of ``count`` (no list of all of them)."""

    def __init__(self, count: int, index: int, item: Any) -> None:
        super().__init__()
        self._count, self._index, self._item = count, index, item

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: Any) -> Any:
        if index != self._index:
            raise IndexError(index)
        return self._item


class _Beat:
    """What the activity last said it is doing, scrubbed, and whether the heartbeat has sent it."""

    def __init__(self) -> None:
        self.redactor = Redactor()  # the run's, once its providers are prepared
        self.details: dict[str, Any] = {}
        self.news = False  # details not sent yet

    def sending(self, holder: StepResult) -> None:
        """An attempt is about to be sent: say its request and the attempts so far."""
        from engine.clock import now_rfc3339

        self.details = self.redactor.scrub({
            "started_at": holder.started_at, "request": holder.request, "request_sha256": holder.request_sha256,
            "attempts": [a._asdict() for a in holder.attempts], "sending_at": now_rfc3339(),
        })
        self.news = True

    def take(self) -> dict[str, Any]:
        """The details to heartbeat (news no more)."""
        self.news = False
        return self.details


class _BeatingGate(Gate):
    """A provider instance's gate that heartbeats before each attempt goes (its request rendered)."""

    def __init__(self, inner: Gate, beat: _Beat, holder: StepResult) -> None:
        super().__init__(clock=inner.clock)
        self.inner, self.beat, self.holder = inner, beat, holder

    def acquire(self) -> float:
        waited = self.inner.acquire()
        self.beat.sending(self.holder)
        return waited

    def pause(self, seconds: float) -> None:
        self.inner.pause(seconds)


class _Prepared:
    """A runbook's providers, ready, and one gate per provider instance (shared by its activities)."""

    def __init__(self, prepared: Prepared, runbook: Runbook) -> None:
        self.prepared = prepared
        # a little under the limit in this worker: the first request waits for its connection, and
        # the second, close behind it, would put one more than the limit in the first second
        self.gates = {name: Gate(spec.rate_limit[0], spec.rate_limit[1] / GATE_SHARE) if spec.rate_limit else Gate()
                      for name, spec in runbook.providers.items()}


class Activities:
    """The activities, bound to the worker's client (to read a runbook's text from history)."""

    def __init__(self, client: Client, threads: int = 100, *, environ: Mapping[str, str] | None = None,
                 on_rate_queue: Callable[[str, float], None] | None = None) -> None:
        self.client = client
        self.pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="runbook-activity")
        self.environ = environ if environ is not None else os.environ
        self._runbooks: OrderedDict[str, tuple[Runbook, Templates]] = OrderedDict()
        self._prepared: OrderedDict[tuple[str, str], _Prepared] = OrderedDict()
        self._lock = threading.Lock()
        self.on_rate_queue = on_rate_queue

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            for entry in self._prepared.values():
                for provider in entry.prepared.providers.values():
                    provider.close()
            self._prepared.clear()

    @property
    def all(self) -> list[Callable[..., Any]]:
        return [self.step, self.items, self.outputs, self.prepare, self.call]

    # -- the activities -------------------------------------------------------------------------

    @activity.defn(name=STEP_ACTIVITY)
    async def step(self, inp: dict[str, Any]) -> dict[str, Any]:
        """One step, or one item of a ``for_each`` step (``index`` set): its scrubbed record."""
        runbook, templates = await self._runbook(inp)
        step = _find(runbook, inp["step"])
        callers = await self._callers(inp)
        info = activity.info()
        previous = info.heartbeat_details[0] if info.heartbeat_details else {}
        if info.attempt > 1 and "timeout" not in step.retry.on and inp.get("poll") is None:
            # never sent twice unasked: the lost attempt may have sent it (a poll is a read: sent again)
            return {"record": _record(_lost_result(step, previous, inp.get("index")), Redactor())}
        return await self._threaded(lambda beat: self._run_step(runbook, templates, step, inp, previous,
                                                                info.attempt, beat, callers))

    @activity.defn(name=CALL_ACTIVITY)
    async def call(self, inp: dict[str, Any]) -> dict[str, Any]:
        """The inputs of a step (or item) that calls a runbook: its ``with:`` rendered and checked,
        scrubbed, with the names of those that held a secret (``sealed``: the called runbook's
        activities render them again, from this step's definition and context, where they run);
        or the step's record when it does not run (skipped, or an input refused)."""
        runbook, templates = await self._runbook(inp)
        step = _find(runbook, inp["step"])
        callers = await self._callers(inp)

        def run(beat: _Beat) -> dict[str, Any]:
            context, entry = self._ready(inp, runbook, templates, callers)
            if isinstance(entry, StepResult):
                failed = _as_step(entry, step)
                failed.index = inp.get("index")
                return {"record": _record(failed, Redactor())}
            redactor = entry.prepared.redactor
            executor = self._executor(runbook, templates, entry, None, None)
            if inp.get("index") is not None:
                context = item_context(step, context, _items_of(executor, step, context, inp), inp["index"])
            inputs = executor.call_inputs(step, context)
            if isinstance(inputs, StepResult):
                inputs.index = inp.get("index")
                return {"record": _record(inputs, redactor)}
            scrubbed = redactor.scrub(inputs)
            return {"inputs": scrubbed, "sealed": sorted(name for name in inputs if scrubbed[name] != inputs[name])}

        return await self._threaded(run)

    @activity.defn(name=PREPARE_ACTIVITY)
    async def prepare(self, inp: dict[str, Any]) -> None:
        """Load the runbook, so that this worker polls its rate-limited providers' task queues."""
        await self._runbook(inp)

    @activity.defn(name=ITEMS_ACTIVITY)
    async def items(self, inp: dict[str, Any]) -> dict[str, Any]:
        """The items of a ``for_each`` step: ``{count, items}`` (``items`` null when they hold a
        secret: each item's activity renders them again), or the step's failed record."""
        runbook, templates = await self._runbook(inp)
        step = _find(runbook, inp["step"])
        callers = await self._callers(inp)

        def run(beat: _Beat) -> dict[str, Any]:
            context, entry = self._ready(inp, runbook, templates, callers)
            if isinstance(entry, StepResult):
                return _record(_as_step(entry, step), Redactor(), items=True)
            redactor = entry.prepared.redactor
            executor = self._executor(runbook, templates, entry, None, None)
            items = executor.items(step, context)
            if isinstance(items, StepResult):
                return _record(items, redactor, items=True)
            scrubbed = redactor.scrub(items)
            return {"count": len(items), "items": items if scrubbed == items else None}

        return {"record": await self._threaded(run)}

    @activity.defn(name=OUTPUTS_ACTIVITY)
    async def outputs(self, inp: dict[str, Any]) -> dict[str, Any]:
        """The runbook's outputs, rendered and scrubbed, and the error when they cannot be."""
        runbook, templates = await self._runbook(inp)
        callers = await self._callers(inp)

        def run(beat: _Beat) -> dict[str, Any]:
            context, entry = self._ready(inp, runbook, templates, callers)
            if isinstance(entry, StepResult):
                return {"outputs": {}, "error": entry.error.message if entry.error else None}
            redactor = entry.prepared.redactor
            executor = self._executor(runbook, templates, entry, None, None)
            outputs, error = executor.render_outputs(context, inp["run_failed"])
            return {"outputs": redactor.scrub(outputs), "error": redactor.text(error) if error else None}

        return await self._threaded(run)

    # -- parts ----------------------------------------------------------------------------------

    def _run_step(self, runbook: Runbook, templates: Templates, step: Step, inp: dict[str, Any],
                  previous: Mapping[str, Any], attempt: int, beat: _Beat,
                  callers: Mapping[str, tuple[Runbook, Templates]]) -> dict[str, Any]:
        """One step or item, or one poll of a polling step (``inp["poll"]``): its scrubbed
        record, and for a poll whether ``until`` was still false (``polling``)."""
        index = inp.get("index")
        context, entry = self._ready(inp, runbook, templates, callers)
        if isinstance(entry, StepResult):
            failed = _as_step(entry, step)
            failed.index = index
            return {"record": _record(failed, Redactor())}
        redactor = beat.redactor = entry.prepared.redactor
        holder = StepResult(step, Status.RUNNING)
        earlier: list[Attempt] = []
        run_step = step
        if inp.get("poll") is not None and step.poll is not None:
            # one poll: the executor sends once (under the retry policy) and, while until is false,
            # fails at once with its poll timeout, which the workflow tells from other failures
            run_step = step._replace(poll=PollPolicy(max(step.poll.interval, 1.0), 0.0, step.poll.backoff))
        if attempt > 1:  # the step's retry.on names timeout: its attempts go on from the lost one's
            earlier = _lost_attempts(previous, "timeout")
            run_step = step._replace(retry=step.retry._replace(attempts=max(1, step.retry.attempts - len(earlier))))
        executor = self._executor(runbook, templates, entry, beat, holder)
        deadline = executor.clock.monotonic() + inp["deadline_in"] if inp.get("deadline_in") is not None else None
        if index is None:
            executor.run_step(run_step, context, deadline=deadline, result=holder)  # the heartbeat reads holder
            bug = executor.internal_error
        else:
            holder, bug = executor.run_item(run_step, context, _items_of(executor, step, context, inp), index,
                                            deadline=deadline, result=holder)
        holder.step = step
        if earlier:
            holder.attempts = earlier + [a._replace(number=len(earlier) + i + 1)
                                         for i, a in enumerate(holder.attempts)]
        if bug is not None:
            activity.logger.error("runbook step %s: internal error: %s", step.id, redactor.text(repr(bug)))
        polling = (inp.get("poll") is not None and holder.status is Status.FAILED and holder.error is not None
                   and holder.error.type is ErrorType.TIMEOUT and holder.error.location == _until_at(runbook, step))
        return {"record": _record(holder, redactor), "polling": polling}

    async def _callers(self, inp: Mapping[str, Any]) -> dict[str, tuple[Runbook, Templates]]:
        """The runbooks that called this one with inputs that hold a secret (their ``with:`` is
        rendered again here), by sha256: loaded from the texts in this workflow's input."""
        found: dict[str, tuple[Runbook, Templates]] = {}
        sealed = inp.get("sealed")
        while sealed:
            caller = sealed["caller"]
            found[caller["sha256"]] = await self._runbook({**caller, "task_queue": inp["task_queue"]})
            sealed = sealed.get("outer")
        return found

    def _ready(self, inp: Mapping[str, Any], runbook: Runbook, templates: Templates,
               callers: Mapping[str, tuple[Runbook, Templates]]) -> tuple[dict[str, Any], _Prepared | StepResult]:
        """What every activity starts with: its context (sealed inputs unsealed) and its runbook's
        providers, whose redactor has learnt the unsealed values; or the result of a run that
        cannot start (its pre-flight refused)."""
        context, learned = self._unsealed(inp, inp["context"], callers)
        entry = self._prepare(runbook, templates, context)
        if not isinstance(entry, StepResult):
            _teach(entry.prepared.redactor, learned)
        return context, entry

    def _unsealed(self, inp: Mapping[str, Any], context: Mapping[str, Any],
                  callers: Mapping[str, tuple[Runbook, Templates]]) -> tuple[dict[str, Any], list[Any]]:
        """``context`` with the real values of the inputs that hold a secret (history has them
        scrubbed), and the values to teach the redactor."""
        learned: list[Any] = []
        if not inp.get("sealed"):
            return dict(context), learned
        variables = self._sealed_vars(inp["sealed"], context["vars"], callers, learned)
        return {**context, "vars": variables}, learned

    def _sealed_vars(self, sealed: Mapping[str, Any] | None, variables: Mapping[str, Any],
                     callers: Mapping[str, tuple[Runbook, Templates]], learned: list[Any]) -> dict[str, Any]:
        if not sealed:
            return dict(variables)
        caller = sealed["caller"]
        runbook, templates = callers[caller["sha256"]]
        step = _find(runbook, caller["step"])
        context = dict(caller["context"])
        context["vars"] = self._sealed_vars(sealed.get("outer"), context["vars"], callers, learned)
        redactor = _Learning(learned)
        executor = Executor(runbook, templates, environ=self.environ, providers={}, redactor=redactor)
        if caller.get("index") is not None:
            context = item_context(step, context, _items_of(executor, step, context, caller), caller["index"])
        inputs = executor.call_inputs(step, context)
        if isinstance(inputs, StepResult):
            raise ApplicationError(f"the inputs of step {step.id!r} of {runbook.path} do not render again on this "
                                   "worker", non_retryable=True)
        real = {name: inputs[name] for name in sealed["names"] if name in inputs}
        learned += list(real.values())
        return {**variables, **real}

    def _executor(self, runbook: Runbook, templates: Templates, entry: _Prepared, beat: _Beat | None,
                  holder: StepResult | None) -> Executor:
        gates: dict[str, Gate] = dict(entry.gates)
        if beat is not None and holder is not None:
            gates = {name: _BeatingGate(gate, beat, holder) for name, gate in gates.items()}
        prepared = entry.prepared
        return Executor(runbook, templates, environ=prepared.environ, providers=prepared.providers,
                        redactor=prepared.redactor, targets=prepared.targets, gates=gates)

    async def _threaded(self, work: Callable[[_Beat], T]) -> T:
        """Run ``work`` on the activity threads while heartbeating what it says it is doing: an
        attempt going out, at most :data:`SENDING_NEWS_AFTER` seconds after it went (not if its
        answer came first), and at least every third of the heartbeat timeout."""
        loop = asyncio.get_running_loop()
        beat = _Beat()
        future: asyncio.Future[T] = loop.run_in_executor(self.pool, contextvars.copy_context().run, work, beat)
        timeout = activity.info().heartbeat_timeout
        if not timeout:
            return await future
        interval = timeout.total_seconds() / 3
        last = loop.time()
        while not (await asyncio.wait([future], timeout=min(SENDING_NEWS_AFTER, interval)))[0]:
            if beat.news or loop.time() - last >= interval:  # (Temporal sends them at most so often)
                activity.heartbeat(beat.take())
                last = loop.time()
        return future.result()

    async def _runbook(self, inp: Mapping[str, Any]) -> tuple[Runbook, Templates]:
        """The runbook of ``inp["sha256"]``: cached, else loaded from the text in the workflow's input."""
        sha = inp["sha256"]
        with self._lock:
            cached = self._runbooks.get(sha)
            if cached is not None:
                self._runbooks.move_to_end(sha)
                return cached
        text, files = await self._text(sha, inp["path"])
        loaded = _load(text, inp["path"], sha, files)
        if self.on_rate_queue is not None:
            runbook = loaded[0]
            for name, spec in runbook.providers.items():
                queue = rate_queue(inp["task_queue"], runbook, name)
                if queue is not None and spec.rate_limit is not None:
                    self.on_rate_queue(queue, RATE_SHARE * spec.rate_limit[0] / spec.rate_limit[1])
        with self._lock:
            self._runbooks[sha] = loaded
            while len(self._runbooks) > 32:
                self._runbooks.popitem(last=False)
        return loaded

    async def _text(self, sha: str, path: str) -> tuple[str, dict[str, str]]:
        """The text of the runbook at ``path`` and every text of its chain of calls, from the
        workflow's input."""
        info = activity.info()
        if info.workflow_id is None:
            raise ApplicationError("a runbook activity runs in a runbook workflow", non_retryable=True)
        handle = self.client.get_workflow_handle(info.workflow_id, run_id=info.workflow_run_id)
        async for event in handle.fetch_history_events(page_size=1):
            attributes = event.workflow_execution_started_event_attributes
            (job,) = await self.client.data_converter.decode(attributes.input.payloads)
            if not isinstance(job, dict) or not isinstance(job.get("text"), str):
                break
            files: dict[str, str] = dict(job.get("files") or {})
            text = files.get(path)
            if text is None:
                if path != job.get("runbook", {}).get("path"):
                    break
                text = str(job["text"])
            return text, files
        raise ApplicationError(f"runbook {sha[:12]}: its text is not in the workflow's input", non_retryable=True)

    def _prepare(self, runbook: Runbook, templates: Templates, context: Mapping[str, Any]) -> _Prepared | StepResult:
        """The providers of a run, from a cache keyed by what their configurations render from."""
        names: set[str] = set()
        for spec in runbook.providers.values():
            for _, source in iter_templates(spec.config):
                names |= templates.compile(source).analysis.names
        key = (runbook.sha256, json.dumps([context["vars"] if "vars" in names else None,
                                           context["run"] if "run" in names else None],
                                          sort_keys=True, default=str))
        with self._lock:
            entry = self._prepared.get(key)
            if entry is not None:
                self._prepared.move_to_end(key)
                return entry
            try:
                prepared = preflight(runbook, templates, vars=context["vars"], environ=self.environ,
                                     run_info=context["run"])
            except LocatedErrors as exc:
                failed = StepResult(runbook.steps[0], Status.FAILED)
                failed.error = StepError(ErrorType.CONFIGURATION, "this worker cannot run the runbook: "
                                         + "; ".join(str(p) for p in exc.problems))
                return failed
            entry = self._prepared[key] = _Prepared(prepared, runbook)
            while len(self._prepared) > 64:
                _, old = self._prepared.popitem(last=False)
                for provider in old.prepared.providers.values():
                    provider.close()
            return entry


def _find(runbook: Runbook, step_id: str) -> Step:
    for step in runbook.steps + runbook.finally_steps:
        if step.id == step_id:
            return step
    raise ApplicationError(f"runbook {runbook.name!r} has no step {step_id!r}", non_retryable=True)


def _load(text: str, path: str, sha: str, files: Mapping[str, str] | None = None) -> tuple[Runbook, Templates]:
    """Load and check a runbook from its text (``submit`` checked it; this checks it was not changed).

    A runbook that calls others is checked and built with them, which reads them as files: the
    texts of its chain of calls (``files``, by path as ``submit`` saw them) are written to a
    private folder, laid out as they were, loaded from there and the paths set back."""
    if not any(other != path for other in files or {}):
        return _load_here(text, path, sha)
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="runbook-calls-")
    try:
        assert files is not None
        up = max((_ups(p) for p in files), default=0)
        base = os.path.join(root, *(["_"] * up))

        def place(name: str) -> str:
            return os.path.join(root, name.lstrip("/")) if os.path.isabs(name) else os.path.join(base, name)

        for name, body in {**files, path: text}.items():
            target = place(name)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "w", encoding="utf-8") as fh:
                fh.write(body)
        runbook, templates = _load_here(text, place(path), sha)
        return _repathed(runbook, path), templates
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _ups(path: str) -> int:
    """How many leading ``..`` a relative path has."""
    parts = os.path.normpath(path).split(os.sep)
    count = 0
    while count < len(parts) and parts[count] == "..":
        count += 1
    return count


def _repathed(runbook: Runbook, path: str) -> Runbook:
    """``runbook`` (and the runbooks it calls) with the paths ``submit`` saw."""
    from engine.validation.calls import called_path

    def step(s: Step) -> Step:
        if s.child is None:
            return s
        return s._replace(child=_repathed(s.child, called_path(path, s.target)))

    return runbook._replace(path=path, steps=tuple(step(s) for s in runbook.steps),
                            finally_steps=tuple(step(s) for s in runbook.finally_steps))


def _load_here(text: str, path: str, sha: str) -> tuple[Runbook, Templates]:
    from engine.loader import load_text
    from engine.validation import check
    from engine.validation.build import built

    templates = Templates()
    try:
        doc = load_text(text, path)
        errors = [p for p in check(doc, templates, lint=False) if p.severity == "error"]
    except LocatedErrors as exc:
        errors = list(exc.problems)
    if errors:
        raise ApplicationError("; ".join(str(p) for p in errors), non_retryable=True)
    runbook = built(doc, path)
    if runbook.sha256 != sha:
        raise ApplicationError(f"runbook {path}: sha256 {runbook.sha256[:12]}, expected {sha[:12]}",
                               non_retryable=True)
    return runbook, templates


class _Learning(Redactor):
    """A redactor that keeps what it learns (to teach it to another)."""

    def __init__(self, learned: list[Any]) -> None:
        super().__init__()
        self.learned = learned

    def add(self, value: Any) -> None:
        self.learned.append(value)
        super().add(value)


def _teach(redactor: Redactor, values: list[Any]) -> None:
    for value in values:
        redactor.add(value)


def _items_of(executor: Executor, step: Step, context: Mapping[str, Any], inp: Mapping[str, Any]) -> list[Any]:
    """The items of a ``for_each`` step as one item's activity sees them: the one it was given, or
    (when the items hold a secret, so history holds none) the items rendered again."""
    index = inp["index"]
    if inp.get("rerender"):
        items = executor.items(step, context)
        item = items[index] if isinstance(items, list) and index < len(items) else None
    else:
        item = inp["item"]
    return _Items(inp["count"], index, item)


def _until_at(runbook: Runbook, step: Step) -> str:
    """Where a step's ``until`` is, as the executor locates its poll timeout."""
    line, col, note = runbook.source.locate(step.path + ("until",))
    return f"{runbook.path}:{line}:{col}{note}"


def _as_step(result: StepResult, step: Step) -> StepResult:
    """``result`` (of the run, e.g. its pre-flight) as the result of ``step``."""
    result.step = step
    return result


def _lost_result(step: Step, previous: Mapping[str, Any], index: int | None) -> StepResult:
    """A step that a lost worker was sending: ``interrupted``, not sent again."""
    from engine.clock import now_rfc3339

    now = now_rfc3339()
    result = StepResult(step, Status.INTERRUPTED, started_at=previous.get("started_at") or now,
                        request=previous.get("request"))
    result.index = index
    result.request_sha256 = previous.get("request_sha256")
    result.attempts = _lost_attempts(previous, "interrupted")
    result.error = StepError(ErrorType.INTERRUPTED, _LOST)
    result.finished_at = now
    return result


def _lost_attempts(previous: Mapping[str, Any], became: str) -> list[Attempt]:
    """The attempts a lost worker's last heartbeat recorded, then the one it was making (``became``
    ``timeout`` or ``interrupted``), started when it said it was sending it (or now, if it said nothing)."""
    from engine.clock import now_rfc3339

    attempts = [Attempt(**a) for a in previous.get("attempts") or []]
    started = previous.get("sending_at") or previous.get("started_at") or now_rfc3339()
    return [*attempts, Attempt(len(attempts) + 1, started, 0, None, f"{became}: {_LOST}")]


def _record(result: StepResult, redactor: Redactor, *, items: bool = False) -> dict[str, Any]:
    """The manifest record of a step or item, scrubbed (``items``: of a fan-out that sent none)."""
    record = item_record(result) if result.index is not None else step_record(result)
    if items:
        record["items"] = []
    scrubbed, _ = scrubbed_line(record, redactor)
    return scrubbed
