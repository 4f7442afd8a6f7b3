"""Runs the steps of a validated runbook in order: render, dispatch, record.

The runner does no file or terminal I/O: it hands every finished
:class:`~engine.model.StepResult` to an :class:`Observer`, and every exception
of a step (a provider's typed error, a template that does not render, a false
assertion, Ctrl-C) becomes that step's result, never a crash of the run.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, Protocol

from engine.conformance import SchemaChecker
from engine.manifest import now_rfc3339, request_sha256
from engine.model import Attempt, RetryPolicy, Runbook, Status, Step, StepError, StepResult
from engine.providers.base import ActionCall, ActionResult, Provider, ProviderError
from engine.redaction import Redactor
from engine.templating import TemplateError, Templates, contains_template, render_value

__all__ = ["Observer", "RunOutcome", "Runner", "truthy", "retry_delay", "should_retry"]

_FALSE_STRINGS = frozenset({"", "false", "0", "no", "off", "none", "null"})


def truthy(value: Any) -> bool:
    """Truth of a rendered condition; the strings "false", "0", "no", "" are false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def should_retry(error: ProviderError, policy: RetryPolicy) -> bool:
    """Whether ``error`` is one of the conditions listed in ``policy.on``."""
    on = policy.on
    if error.type in ("connection", "timeout"):
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


class _StepFailed(Exception):
    def __init__(self, error: StepError) -> None:
        super().__init__(error.message)
        self.error = error


def _now_ms(start: float) -> int:
    return int((time.monotonic() - start) * 1000)


class Runner:
    """Runs one runbook once."""

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
        sleep: Callable[[float], None] = time.sleep,
        targets: Mapping[str, str] | None = None,
        previous: Mapping[str, Any] | None = None,
    ) -> None:
        self.runbook = runbook
        self.templates = templates
        self.providers = providers
        self.observer = observer
        self.redactor = redactor or Redactor()
        self.sleep = sleep
        self.targets = targets or {}
        self.previous = previous
        self._reusable: dict[str, dict[str, Any]] = {
            record["id"]: record
            for record in (previous or {}).get("steps", [])
            if record["status"] == "succeeded" and record.get("request_sha256")
        }
        self.steps_ctx: dict[str, Any] = {}
        self.run_info = run_info
        self.context: dict[str, Any] = {
            "vars": vars,
            "steps": self.steps_ctx,
            "secrets": environ,
            "env": environ,
            "run": run_info,
        }
        self._options_validators: dict[str, Any] = {}
        self.internal_error: BaseException | None = None
        self._run_deadline: float | None = None

    def run(self) -> RunOutcome:
        """Run ``steps``, then ``finally``, then compute ``outputs``."""
        failed = interrupted = any_failed = False
        if self.runbook.run_timeout is not None:
            self._run_deadline = time.monotonic() + self.runbook.run_timeout
        for step in self.runbook.steps:
            if failed or interrupted:
                result = StepResult(step, Status.NOT_RUN)
            else:
                result = self._run_step(step)
                if result.status is Status.FAILED and (
                    not step.continue_on_error or self.internal_error is not None
                ):
                    failed = True
                elif result.status is Status.INTERRUPTED:
                    interrupted = True
            any_failed = any_failed or result.status is Status.FAILED
            self._finish(result)
        self.run_info["status"] = "failed" if (any_failed or interrupted) else "succeeded"
        self.run_info["interrupted"] = interrupted
        self._run_deadline = None  # finally steps run after a run timeout too, under their own limits
        for step in self.runbook.finally_steps:
            result = self._run_step(step)
            if result.status is Status.INTERRUPTED:
                interrupted = True
            any_failed = any_failed or result.status is Status.FAILED
            self._finish(result)
        outputs, error = self._outputs(interrupted or any_failed)
        if interrupted:
            status = Status.INTERRUPTED
        elif error or any_failed:
            status = Status.FAILED
        else:
            status = Status.SUCCEEDED
        return RunOutcome(status, outputs, error, self.internal_error)

    def _finish(self, result: StepResult) -> None:
        if result.status is not Status.NOT_RUN:
            self.steps_ctx[result.step.id] = result.context()
        self.observer.step_finished(result)

    def _outputs(self, run_failed: bool) -> tuple[dict[str, Any], str | None]:
        """Each runbook output rendered on its own; one that cannot be is null.

        A run whose steps all succeeded but whose outputs cannot be computed
        fails; in a run that already failed, an output naming a step that did
        not run is simply null.
        """
        outputs: dict[str, Any] = {}
        errors: list[str] = []
        for key, value in self.runbook.outputs.items():
            try:
                _, outputs[key] = render_value(
                    value, self.templates, self.context, ("outputs", key), self.redactor.add
                )
            except TemplateError as exc:
                outputs[key] = None
                errors.append(f"{self._where(exc.path)}: {exc}")
        return outputs, ("; ".join(errors) if errors and not run_failed else None)

    def _where(self, path: tuple) -> str:
        """``FILE:LINE:COL`` of a runbook field (a path from the top of the document)."""
        line, col = self.runbook.source.position(path)
        return f"{self.runbook.path}:{line}:{col}"

    def _render(self, step: Step, value: Any, field: tuple) -> tuple[Any, Any]:
        try:
            return render_value(value, self.templates, self.context, field, self.redactor.add)
        except TemplateError as exc:
            raise _StepFailed(StepError("template", str(exc), location=self._where(step.path + exc.path))) from None

    def _condition(self, step: Step, source: str | bool, field: tuple) -> Any:
        if isinstance(source, bool):
            return source
        return self._render(step, self.templates.condition(source), field)[0]

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

    def _run_step(self, step: Step) -> StepResult:
        result = StepResult(step, Status.RUNNING, started_at=now_rfc3339())
        start = time.monotonic()
        self.observer.step_started(step)
        try:
            if step.when is not None and not truthy(self._condition(step, step.when, ("when",))):
                result.status = Status.SKIPPED
            else:
                self._dispatch(step, result)
                self._check_asserts(step, result)
                result.status = Status.SUCCEEDED
        except _StepFailed as exc:
            result.status = Status.FAILED
            result.error = exc.error
        except KeyboardInterrupt:
            result.status = Status.INTERRUPTED
            result.error = StepError("interrupted", "interrupted while the step was in flight")
        except Exception as exc:  # a bug (ours or a plugin's): record it, stop, exit 3
            self.internal_error = exc
            result.status = Status.FAILED
            result.error = StepError("internal", f"{type(exc).__name__}: {exc}")
        result.finished_at = now_rfc3339()
        result.duration_ms = _now_ms(start)
        return result

    def replay_step(self, step: Step, request: Any) -> StepResult:
        """Send a recorded request again, as it was, under the step's timeout and retries."""
        result = StepResult(step, Status.RUNNING, started_at=now_rfc3339(), request=request)
        start = time.monotonic()
        provider = self.providers[step.provider]
        result.request_sha256 = request_sha256(request, self.targets.get(step.provider, ""))
        try:
            replay = getattr(provider, "replay", None)
            if replay is None:
                raise _StepFailed(StepError(
                    "configuration", f"provider type {step.provider_type!r} cannot replay requests"))
            answer = self._attempts(step, lambda timeout: replay(step.style, request, timeout), result)
            result.output, result.run_id = answer.output, answer.run_id
            result.exports, result.logs, result.extra = answer.exports, answer.logs, answer.extra
            result.status = Status.SUCCEEDED
        except _StepFailed as exc:
            result.status, result.error = Status.FAILED, exc.error
        except KeyboardInterrupt:
            result.status = Status.INTERRUPTED
            result.error = StepError("interrupted", "interrupted while the step was in flight")
        result.finished_at = now_rfc3339()
        result.duration_ms = _now_ms(start)
        self.observer.step_finished(result)
        return result

    def _check_asserts(self, step: Step, result: StepResult) -> None:
        if not step.asserts:
            return
        result.status = Status.SUCCEEDED
        self.steps_ctx[step.id] = result.context()
        try:
            for i, expr in enumerate(step.asserts):
                if not truthy(self._condition(step, expr, ("assert", i))):
                    raise _StepFailed(StepError("assertion", f"assertion failed: {expr}",
                                                location=self._where(step.path + ("assert", i))))
        finally:
            del self.steps_ctx[step.id]

    def _dispatch(self, step: Step, result: StepResult) -> None:
        target, target_red = self._render(step, step.target, ("dispatch", step.style))
        inp, inp_red = self._render(step, step.input, ("input",))
        options, options_red = self._render(step, step.options, ("with",))
        if contains_template(step.options):
            self._check_options(step, options)
        provider = self.providers[step.provider]
        call = ActionCall(step.style, target, inp, options)
        try:
            result.request = provider.request_body(
                ActionCall(step.style, target_red, inp_red, options_red)
            )
        except ProviderError as exc:
            raise _StepFailed(self._step_error(step, exc)) from None
        result.request_sha256 = request_sha256(result.request, self.targets.get(step.provider, ""))
        # A finally step (a notification, a clean-up) always runs: it is never reused.
        recorded = None if step.is_finally else self._reusable.get(step.id)
        if recorded is not None and recorded["request_sha256"] == result.request_sha256:
            answer = ActionResult(recorded["output"], recorded["run_id"], recorded["exports"],
                                  recorded["logs"], None, recorded.get("extra") or {})
            result.reused_from = recorded.get("reused_from") or self.previous["run"]["id"]
        else:
            answer = self._attempts(step, lambda timeout: provider.send(call, timeout), result)
        result.output = answer.output
        result.run_id = answer.run_id
        result.exports = answer.exports
        result.logs = answer.logs
        result.extra = answer.extra

    def _budget(self, step: Step, first: float) -> tuple[float | None, str]:
        """This attempt's timeout: the step's, or less when the step or run time is running out."""
        timeout, why = step.timeout, f"the per-attempt timeout of {step.timeout:g}s" if step.timeout else ""
        now = time.monotonic()
        for deadline, name, limit in (
            (first + step.step_timeout if step.step_timeout else None, "step_timeout",
             step.step_timeout),
            (self._run_deadline, "run_timeout", self.runbook.run_timeout),
        ):
            if deadline is None:
                continue
            left = deadline - now
            if left <= 0:
                raise _StepFailed(StepError("timeout", f"the {name} of {limit:g}s ran out",
                                            location=self._where(step.path + ("dispatch", step.style))))
            if timeout is None or left < timeout:
                timeout, why = left, f"the {name} of {limit:g}s"
        return timeout, why

    def _attempts(self, step: Step, send: Callable[[float | None], ActionResult],
                  result: StepResult) -> ActionResult:
        """Call ``send`` under the step's timeouts and retry policy, recording each attempt."""
        policy = step.retry
        first = time.monotonic()
        number = 0
        while True:
            number += 1
            timeout, limit = self._budget(step, first)
            started_at = now_rfc3339()
            t0 = time.monotonic()
            try:
                answer = send(timeout)
            except KeyboardInterrupt:
                # The request went out and its answer was abandoned: the action may have run.
                result.attempts.append(Attempt(number, started_at, _now_ms(t0), None,
                                               "interrupted: sent, no answer awaited"))
                raise
            except ProviderError as exc:
                if exc.type == "timeout" and limit:
                    exc.message = f"no answer within {limit}"
                result.attempts.append(
                    Attempt(number, started_at, _now_ms(t0), exc.http_status, f"{exc.type}: {exc.message}")
                )
                if exc.run_id:
                    result.run_id = exc.run_id
                result.logs = exc.logs
                result.extra = exc.extra
                if number >= policy.attempts or not should_retry(exc, policy):
                    raise _StepFailed(self._step_error(step, exc)) from None
                delay = retry_delay(policy, number, exc.retry_after)
                elapsed = time.monotonic() - first
                if policy.max_elapsed is not None and elapsed + delay > policy.max_elapsed:
                    raise _StepFailed(self._step_error(
                        step, exc, f" (gave up: max_elapsed {policy.max_elapsed:g}s)")) from None
                self.sleep(delay)
                continue
            result.attempts.append(Attempt(number, started_at, _now_ms(t0), answer.http_status))
            return answer

    def _check_options(self, step: Step, options: Any) -> None:
        from engine.providers.registry import type_info

        info = type_info(step.provider_type)
        if info is None:
            return
        if step.provider_type not in self._options_validators:
            self._options_validators[step.provider_type] = SchemaChecker(info.options_schema)
        errors = [
            f"with{''.join(f'.{p}' for p in e.absolute_path)}: {e.message}"
            for e in self._options_validators[step.provider_type].iter_errors(options)
        ]
        if errors:
            raise _StepFailed(StepError("configuration", "; ".join(errors),
                                        location=self._where(step.path + ("with",))))

