"""Runs one step: render its templates, send it under its timeouts and retry policy, check its
asserts, and turn every exception into its :class:`~engine.model.StepResult`.

The executor is the part of a run that does I/O (through the providers) and reads the
clock (through an injected :class:`~engine.clock.Clock`); what runs next is the
conductor's business (:mod:`engine.conductor`). ``run``, ``replay`` and ``--resume`` all
send through :meth:`Executor.run_step` / :meth:`Executor.replay_step`, so a step's
error handling is written once. A step never crashes the run: a provider's typed error,
a template that does not render, a false assertion and Ctrl-C each become the step's
result; any other exception is a bug, recorded as an ``internal`` error and kept in
:attr:`Executor.internal_error` so the run stops and exits 3.
"""

from __future__ import annotations

import random
from collections import ChainMap
from collections.abc import Callable, Mapping
from typing import Any

from engine.clock import SYSTEM_CLOCK, Clock
from engine.manifest import request_sha256
from engine.model import Attempt, ErrorType, RetryPolicy, Runbook, Status, Step, StepError, StepResult
from engine.providers.base import ActionCall, ActionResult, Provider, ProviderError
from engine.rate_limit import Gate
from engine.redaction import Redactor
from engine.templating import TemplateError, Templates, contains_template, render_value, truthy

__all__ = ["Executor", "item_context", "retry_delay", "should_retry"]


def should_retry(error: ProviderError, policy: RetryPolicy) -> bool:
    """Whether ``error`` is one of the conditions listed in ``policy.on``."""
    on = policy.on
    if error.type in (ErrorType.CONNECTION, ErrorType.TIMEOUT):
        return error.type in on
    status = error.http_status
    if status is None:
        return False
    if str(status) in on:
        return True
    return (f"{status // 100}xx" in on) and status >= 400


def retry_delay(policy: RetryPolicy, attempt: int, retry_after: float | None,
                rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after failed ``attempt`` (1-based).

    Exponential backoff uses full jitter: a uniform draw below
    ``initial_delay * 2**(attempt-1)``, capped by ``max_delay``. A server's
    ``Retry-After`` wins over the computed delay, still capped by ``max_delay``.
    """
    if policy.backoff == "fixed":
        delay = min(policy.initial_delay, policy.max_delay)
    else:
        delay = rng() * min(policy.max_delay, policy.initial_delay * 2 ** (attempt - 1))
    if retry_after is not None:
        delay = max(delay, min(retry_after, policy.max_delay))
    return delay


def item_context(step: Step, context: Mapping[str, Any], items: list[Any], index: int) -> dict[str, Any]:
    """The context of item ``index`` of a ``for_each`` step: ``context`` with the item (as
    ``item`` or the ``as:`` name) and ``loop``, as in a Jinja for-loop."""
    count = len(items)
    loop = {"index": index + 1, "index0": index, "length": count, "first": index == 0, "last": index == count - 1}
    return {**context, step.item_name: items[index], "loop": loop}


def _shown(value: Any, limit: int = 200) -> str:
    """A value in a message: JSON, cut short."""
    import json

    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "…"


def _kind(value: Any) -> str:
    """What a JSON value is, in words: ``a string``, ``a number``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return "a string" if isinstance(value, str) else f"a {type(value).__name__}"


class _StepFailed(Exception):
    def __init__(self, error: StepError) -> None:
        super().__init__(error.message)
        self.error = error


class Executor:
    """Runs steps of one runbook with its providers (see the module docstring)."""

    def __init__(
        self,
        runbook: Runbook,
        templates: Templates,
        *,
        environ: Mapping[str, str],
        providers: Mapping[str, Provider],
        redactor: Redactor | None = None,
        targets: Mapping[str, str] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        rng: Callable[[], float] = random.random,
        gates: Mapping[str, Gate] | None = None,
    ) -> None:
        self.runbook = runbook
        self.templates = templates
        self.environ = environ
        self.providers = providers
        self.redactor = redactor or Redactor()
        self.targets = targets or {}
        self.clock = clock
        self.rng = rng
        #: one per provider instance: its rate limit and 429 pauses, shared by every step and item
        self.gates: dict[str, Gate] = dict(gates) if gates is not None else {
            name: Gate(*spec.rate_limit, clock=clock) if spec.rate_limit else Gate(clock=clock)
            for name, spec in runbook.providers.items()
        }
        self.internal_error: BaseException | None = None

    # -- one step -----------------------------------------------------------------------------

    def run_step(self, step: Step, context: Mapping[str, Any], *, previous: Mapping[str, Any] | None = None,
                 deadline: float | None = None, result: StepResult | None = None) -> StepResult:
        """Run ``step`` against ``context`` (``vars``, ``steps``, ``run``: the conductor's).

        ``previous`` is the record a resumed run kept for it: reused when the rendered request
        has the same ``request_sha256``. ``deadline`` (clock seconds) is the run's. ``result``
        is filled in as the step runs (a Temporal activity's heartbeat reports its request).
        """
        result = result if result is not None else StepResult(step, Status.RUNNING)
        bug = self._run(step, context, previous, deadline, result)
        if bug is not None:
            self.internal_error = bug
        return result

    def items(self, step: Step, context: Mapping[str, Any]) -> list[Any] | StepResult:
        """The items of a ``for_each`` step (a mapping gives ``{key, value}`` items), or the
        step's failed result when ``for_each`` does not render to a list: before any item is sent."""
        result = StepResult(step, Status.RUNNING, started_at=self.clock.timestamp())
        ctx = {**context, "secrets": self.environ, "env": self.environ}
        try:
            value, _ = self._render(step, ctx, step.for_each, ("for_each",))
            if isinstance(value, dict):
                return [{"key": k, "value": v} for k, v in value.items()]
            if not isinstance(value, list):
                raise _StepFailed(StepError(ErrorType.TEMPLATE, f"for_each renders to {_kind(value)}, not a list "
                                                        "(or a mapping)",
                                            location=self._where(step.path + ("for_each",))))
            return value
        except _StepFailed as exc:
            result.status, result.error = Status.FAILED, exc.error
        result.finished_at = result.started_at
        result.items = []
        return result

    def call_inputs(self, step: Step, context: Mapping[str, Any]) -> dict[str, Any] | StepResult:
        """The inputs of a step that calls a runbook (its ``with:`` rendered and checked against
        the called runbook's ``inputs:``), or its result when it does not run: skipped by its
        ``when``, or failed (a template, an input refused) before anything of it is sent."""
        assert step.child is not None
        result = StepResult(step, Status.RUNNING, started_at=self.clock.timestamp())
        ctx = {**context, "secrets": self.environ, "env": self.environ}
        try:
            if step.when is not None and not truthy(self._condition(step, ctx, step.when, ("when",))):
                result.status = Status.SKIPPED
            else:
                given, _ = self._render(step, ctx, step.options, ("with",))
                from engine.validation.calls import with_messages

                problems = with_messages(step.child.inputs, given, ("with",))
                if problems:
                    where, message = problems[0]
                    raise _StepFailed(StepError(ErrorType.CONFIGURATION, "; ".join(m for _, m in problems),
                                                location=self._where(step.path + where)))
                return dict(given)
        except _StepFailed as exc:
            result.status, result.error = Status.FAILED, exc.error
        result.finished_at = self.clock.timestamp()
        return result

    def run_item(self, step: Step, context: Mapping[str, Any], items: list[Any], index: int, *,
                 previous: Mapping[str, Any] | None = None, deadline: float | None = None,
                 result: StepResult | None = None) -> tuple[StepResult, BaseException | None]:
        """Run item ``index`` of a ``for_each`` step: the step with ``item`` (or its ``as:`` name)
        and ``loop`` in its context. Returns the item's result and the bug it met, if any, for
        the caller to keep (items run in worker threads; :attr:`internal_error` is the caller's).
        ``result`` is filled in as the item runs (so an interrupted caller can see its attempts)."""
        ctx = item_context(step, context, items, index)
        result = result if result is not None else StepResult(step, Status.RUNNING)
        result.index = index
        return result, self._run(step, ctx, previous, deadline, result)

    def _run(self, step: Step, context: Mapping[str, Any], previous: Mapping[str, Any] | None,
             deadline: float | None, result: StepResult) -> BaseException | None:
        """Run one step or item into ``result``; return the bug it met (an internal error), if any."""
        clock = self.clock
        result.started_at = clock.timestamp()
        start = clock.monotonic()
        ctx = {**context, "secrets": self.environ, "env": self.environ}
        bug: BaseException | None = None
        try:
            if step.when is not None and not truthy(self._condition(step, ctx, step.when, ("when",))):
                result.status = Status.SKIPPED
            else:
                self._dispatch(step, ctx, result, previous, deadline)
                self._check_asserts(step, ctx, result)
                result.status = Status.SUCCEEDED
        except _StepFailed as exc:
            result.status = Status.FAILED
            result.error = exc.error
        except KeyboardInterrupt:
            result.status = Status.INTERRUPTED
            result.error = StepError(ErrorType.INTERRUPTED, "interrupted while the step was in flight")
        except Exception as exc:  # a bug of runbook's (a plugin's are ProviderErrors): record it, stop, exit 3
            bug = exc
            result.status = Status.FAILED
            result.error = StepError(ErrorType.INTERNAL, f"{type(exc).__name__}: {exc}")
        result.finished_at = clock.timestamp()
        result.duration_ms = int((clock.monotonic() - start) * 1000)
        return bug

    def replay_step(self, step: Step, request: Any) -> StepResult:
        """Send a recorded request again, as it was, under the step's timeout and retries."""
        clock = self.clock
        result = StepResult(step, Status.RUNNING, started_at=clock.timestamp(), request=request)
        start = clock.monotonic()
        provider = self.providers[step.provider]
        result.request_sha256 = request_sha256(request, self.targets.get(step.provider, ""))
        try:
            if not provider.replays:
                raise _StepFailed(StepError(
                    ErrorType.CONFIGURATION, f"provider type {step.provider_type!r} cannot replay requests"))
            answer = self._attempts(step, lambda timeout: provider.replay(step.style, request, timeout),
                                    result, None)
            result.output, result.run_id = answer.output, answer.run_id
            result.exports, result.logs, result.extra = answer.exports, answer.logs, answer.extra
            result.status = Status.SUCCEEDED
        except _StepFailed as exc:
            result.status, result.error = Status.FAILED, exc.error
        except KeyboardInterrupt:
            result.status = Status.INTERRUPTED
            result.error = StepError(ErrorType.INTERRUPTED, "interrupted while the step was in flight")
        result.finished_at = clock.timestamp()
        result.duration_ms = int((clock.monotonic() - start) * 1000)
        return result

    def render_outputs(self, context: Mapping[str, Any], run_failed: bool) -> tuple[dict[str, Any], str | None]:
        """Each runbook output rendered on its own (redacted); one that cannot be is null.

        A run whose steps all succeeded but whose outputs cannot be computed fails; in a
        run that already failed, an output naming a step that did not run is simply null.
        """
        ctx = {**context, "secrets": self.environ, "env": self.environ}
        outputs: dict[str, Any] = {}
        errors: list[str] = []
        for key, value in self.runbook.outputs.items():
            try:
                _, outputs[key] = render_value(value, self.templates, ctx, ("outputs", key), self.redactor.add)
            except TemplateError as exc:
                outputs[key] = None
                errors.append(f"{self._where(exc.path)}: {exc}")
        return outputs, ("; ".join(errors) if errors and not run_failed else None)

    # -- parts ----------------------------------------------------------------------------------

    def _where(self, path: tuple[Any, ...]) -> str:
        """``FILE:LINE:COL`` of a runbook field (a path from the top of the document). A run's
        runbook keeps only some positions (:class:`~engine.loader.SparseSourceMap`): the others
        are read from the file again, and when it has changed since, a note says the position is
        that of an enclosing field."""
        line, col, note = self.runbook.source.locate(path)
        return f"{self.runbook.path}:{line}:{col}{note}"

    def _render(self, step: Step, ctx: Mapping[str, Any], value: Any, field: tuple[Any, ...]) -> tuple[Any, Any]:
        try:
            return render_value(value, self.templates, ctx, field, self.redactor.add)
        except TemplateError as exc:
            raise _StepFailed(StepError(ErrorType.TEMPLATE, str(exc),
                                        location=self._where(step.path + exc.path))) from None

    def _condition(self, step: Step, ctx: Mapping[str, Any], source: str | bool, field: tuple[Any, ...]) -> Any:
        if isinstance(source, bool):
            return source
        return self._render(step, ctx, self.templates.condition(source), field)[0]

    def _step_error(self, step: Step, exc: ProviderError, suffix: str = "") -> StepError:
        """A provider's typed error, located at the step's dispatch."""
        return StepError(
            type=exc.type,
            message=exc.message + suffix,
            http_status=exc.http_status,
            attribution=exc.attribution,
            provider_error=exc.provider_error,
            location=self._where(step.path + ("dispatch", step.style)),
        )

    def _check_asserts(self, step: Step, ctx: dict[str, Any], result: StepResult) -> None:
        if not step.asserts:
            return
        result.status = Status.SUCCEEDED
        own = self._own(step, ctx, result)
        for i, expr in enumerate(step.asserts):
            if not truthy(self._condition(step, own, expr, ("assert", i))):
                raise _StepFailed(StepError(ErrorType.ASSERTION, f"assertion failed: {expr}",
                                            location=self._where(step.path + ("assert", i))))

    def _dispatch(self, step: Step, ctx: Mapping[str, Any], result: StepResult,
                  previous: Mapping[str, Any] | None, deadline: float | None) -> None:
        target, target_red = self._render(step, ctx, step.target, ("dispatch", step.style))
        inp, inp_red = self._render(step, ctx, step.input, ("input",))
        options, options_red = self._render(step, ctx, step.options, ("with",))
        if contains_template(step.options):
            self._check_options(step, options)
        provider = self.providers[step.provider]
        call = ActionCall(step.style, target, inp, options)
        try:
            result.request = provider.request_body(ActionCall(step.style, target_red, inp_red, options_red))
        except ProviderError as exc:
            raise _StepFailed(self._step_error(step, exc)) from None
        result.request_sha256 = request_sha256(result.request, self.targets.get(step.provider, ""))
        if previous is not None and previous.get("request_sha256") == result.request_sha256:
            answer = ActionResult(previous["output"], previous["run_id"], previous["exports"],
                                  previous["logs"], None, previous.get("extra") or {})
            result.reused_from = previous.get("reused_from")
        elif step.until is None:
            answer = self._attempts(step, lambda timeout: provider.send(call, timeout), result, deadline)
        else:
            self._poll(step, ctx, result, lambda timeout: provider.send(call, timeout), deadline)
            return
        self._take(result, answer)

    @staticmethod
    def _take(result: StepResult, answer: ActionResult) -> None:
        result.output = answer.output
        result.run_id = answer.run_id
        result.exports = answer.exports
        result.logs = answer.logs
        result.extra = answer.extra

    def _own(self, step: Step, ctx: Mapping[str, Any], result: StepResult) -> dict[str, Any]:
        """``ctx`` in which the step sees itself as ``steps.<id>`` (its asserts and until), over
        the earlier steps (which are not copied)."""
        return {**ctx, "steps": ChainMap({step.id: result.context()}, ctx["steps"])}

    def _poll(self, step: Step, ctx: Mapping[str, Any], result: StepResult,
              send: Callable[[float | None], ActionResult], deadline: float | None) -> None:
        """Send, and send again every ``poll.interval`` while ``until`` is false, for at most
        ``poll.timeout``: every poll is an attempt; errors follow the retry policy."""
        assert step.poll is not None and step.until is not None
        clock, poll = self.clock, step.poll
        start = clock.monotonic()
        wait = poll.interval
        while True:
            self._take(result, self._attempts(step, send, result, deadline, first=start))
            result.status = Status.SUCCEEDED  # as until sees itself
            value = self._condition(step, self._own(step, ctx, result), step.until, ("until",))
            if truthy(value):
                return
            if clock.monotonic() - start + wait > poll.timeout:
                expression = step.until if isinstance(step.until, str) else str(step.until).lower()
                raise _StepFailed(StepError(
                    ErrorType.TIMEOUT,
                    f"until {expression.strip()} was still false after {len(result.attempts)} polls in "
                    f"{poll.timeout:g}s (poll timeout); its last value: {_shown(value)}",
                    location=self._where(step.path + ("until",))))
            clock.sleep(wait)
            if poll.backoff == "exponential":
                wait *= 2

    def _budget(self, step: Step, first: float, deadline: float | None) -> tuple[float | None, str]:
        """This attempt's timeout: the step's, or less when the step or run time is running out."""
        timeout, why = step.timeout, f"the per-attempt timeout of {step.timeout:g}s" if step.timeout else ""
        now = self.clock.monotonic()
        for limit_at, name, limit in (
            (first + step.step_timeout if step.step_timeout else None, "step_timeout", step.step_timeout),
            (deadline, "run_timeout", self.runbook.run_timeout),
        ):
            if limit_at is None or limit is None:
                continue
            left = limit_at - now
            if left <= 0:
                raise _StepFailed(StepError(ErrorType.TIMEOUT, f"the {name} of {limit:g}s ran out",
                                            location=self._where(step.path + ("dispatch", step.style))))
            if timeout is None or left < timeout:
                timeout, why = left, f"the {name} of {limit:g}s"
        return timeout, why

    def _attempts(self, step: Step, send: Callable[[float | None], ActionResult], result: StepResult,
                  deadline: float | None, first: float | None = None) -> ActionResult:
        """Call ``send`` under the step's timeouts and retry policy, recording each attempt
        (numbered on from the step's earlier ones: a poll's). ``first``: when the step's first
        attempt began (``step_timeout`` counts from it)."""
        clock = self.clock
        policy = step.retry
        first = clock.monotonic() if first is None else first
        tries = 0  # of this send, for the retry policy
        gate = self.gates.get(step.provider)
        while True:
            tries += 1
            number = len(result.attempts) + 1
            if gate is not None:
                gate.acquire()
            timeout, limit = self._budget(step, first, deadline)
            started_at = clock.timestamp()
            t0 = clock.monotonic()
            try:
                answer = send(timeout)
            except KeyboardInterrupt:
                # The request went out and its answer was abandoned: the action may have run.
                result.attempts.append(Attempt(number, started_at, int((clock.monotonic() - t0) * 1000), None,
                                               "interrupted: sent, no answer awaited"))
                raise
            except ProviderError as exc:
                if exc.type is ErrorType.TIMEOUT and limit:
                    exc.message = f"no answer within {limit}"
                result.attempts.append(Attempt(number, started_at, int((clock.monotonic() - t0) * 1000),
                                               exc.http_status, f"{exc.type}: {exc.message}"))
                if exc.retry_after is not None and exc.type is ErrorType.RATE_LIMITED and gate is not None:
                    gate.pause(exc.retry_after)  # every item of this provider instance waits
                if exc.run_id:
                    result.run_id = exc.run_id
                result.logs = exc.logs
                result.extra = exc.extra
                if tries >= policy.attempts or not should_retry(exc, policy):
                    raise _StepFailed(self._step_error(step, exc)) from None
                delay = retry_delay(policy, tries, exc.retry_after, self.rng)
                elapsed = clock.monotonic() - first
                if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
                    raise _StepFailed(self._step_error(
                        step, exc, f" (gave up: max_elapsed {policy.max_elapsed:g}s)")) from None
                clock.sleep(delay)
                continue
            result.attempts.append(Attempt(number, started_at, int((clock.monotonic() - t0) * 1000),
                                           answer.http_status))
            return answer

    def _check_options(self, step: Step, options: Any) -> None:
        """Check ``with``, rendered, against the provider type's options schema."""
        from engine.providers.registry import type_info
        from engine.schemas import checker, schema_messages
        from engine.templating import field_name

        info = type_info(step.provider_type)
        if info is None:
            return
        messages = schema_messages(checker(info.options_schema), options, ("with",))
        if messages:
            raise _StepFailed(StepError(ErrorType.CONFIGURATION, "; ".join(f"{field_name(m.field)}: {m.text}"
                                                                  for m in messages),
                                        location=self._where(step.path + ("with",))))
