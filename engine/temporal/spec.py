"""What a runbook is to Temporal, as JSON data, without ``temporalio``.

``submit`` builds a workflow's input with :func:`job`: the runbook's text (for the activities,
which load it again where the secrets are), its sha256, the run's variables, and a *skeleton*
of each step: the fields the conductor and the fan-out decide on (id, section, concurrency,
``continue_on_error``…) with none of its templates, plus which earlier steps its templates read
(so an activity's input carries only those outputs) and its activity options. The workflow
rebuilds a template-free :class:`~engine.model.Runbook` from it with :func:`skeleton_runbook`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, cast

from engine.errors import RunbookError
from engine.model import PollPolicy, RetryPolicy, Runbook, Step
from engine.templating import Templates, iter_templates, step_templates

__all__ = ["job", "called_texts", "skeleton_runbook", "step_refs", "stamp", "activity_options", "rate_queue",
           "HEARTBEAT_TIMEOUT", "referenced"]

#: How long a worker may stay silent before Temporal takes it for lost (seconds).
HEARTBEAT_TIMEOUT = 10.0
#: Added to the time a step may take before Temporal's own timeout fires, so that the executor's
#: timeout (a typed error recorded as an attempt) always comes first.
GRACE = 30.0
#: How often Temporal runs one poll of a polling step (an activity) when its worker is lost: a poll
#: re-sends a read, so it is sent again on another worker.
POLL_ACTIVITY_ATTEMPTS = 3


def stamp(moment: datetime) -> str:
    """RFC 3339 with milliseconds in UTC, as :func:`engine.clock.now_rfc3339` writes it."""
    moment = moment.astimezone(timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def step_refs(step: Step, templates: Templates) -> list[str] | None:
    """The earlier steps whose ``steps.<id>`` a step's templates read (None: it reads ``steps``
    as a whole or through a computed key, so it is given every one)."""
    found: dict[str, None] = {}
    for _, source in step_templates(step.fields(), templates, ()):
        analysis = templates.compile(source).analysis
        if analysis.dynamic_steps:
            return None
        found.update(dict.fromkeys(analysis.steps))
    found.pop(step.id, None)  # an assert reads the step itself, which the executor supplies
    return sorted(found)


def _outputs_refs(runbook: Runbook, templates: Templates) -> list[str] | None:
    found: dict[str, None] = {}
    for _, source in iter_templates(runbook.outputs):
        analysis = templates.compile(source).analysis
        if analysis.dynamic_steps:
            return None
        found.update(dict.fromkeys(analysis.steps))
    return sorted(found)


def rate_queue(task_queue: str, runbook: Runbook, provider: str) -> str | None:
    """The task queue of a rate-limited provider instance (None: not rate-limited): named by the
    limit and the instance's configuration, so every run of every runbook that names the same
    service the same way shares it, and the server's per-queue limit holds for the whole fleet."""
    spec = runbook.providers.get(provider)
    if spec is None or spec.rate_limit is None:
        return None
    requests, per = spec.rate_limit
    identity = json.dumps([spec.type, spec.config], sort_keys=True, default=str)
    digest = hashlib.sha256(identity.encode()).hexdigest()[:12]
    return f"{task_queue}/rate/{requests}-per-{per:g}s/{digest}"


def activity_options(step: Step) -> dict[str, Any]:
    """The activity options of a step, in seconds (the workflow makes them timedeltas).

    The executor runs a step's attempts and its retry policy itself (one code path for local and
    Temporal runs, every attempt in the manifest); Temporal bounds the whole of it
    (``start_to_close``: every attempt's ``timeout`` and the waits between them;
    ``schedule_to_close``: ``step_timeout``) and notices a lost worker by its heartbeat. It tries
    a step again on another worker only when ``retry.on`` names ``timeout``: otherwise the step
    was perhaps sent, and is never sent twice unasked.
    """
    policy = step.retry
    start_to_close: float | None = None
    if step.timeout is not None:
        start_to_close = policy.attempts * step.timeout + (policy.attempts - 1) * policy.max_delay + GRACE
    schedule_to_close = step.step_timeout + GRACE if step.step_timeout is not None else None
    if start_to_close is None and schedule_to_close is None:
        start_to_close = 24 * 3600.0  # nothing bounds it: the heartbeat finds a lost worker
    return {
        "start_to_close": start_to_close,
        "schedule_to_close": schedule_to_close,
        "maximum_attempts": policy.attempts if "timeout" in policy.on else 1,
    }


def _step_data(step: Step, templates: Templates, runbook: Runbook, task_queue: str) -> dict[str, Any]:
    policy = step.retry
    data: dict[str, Any] = {
        "id": step.id, "name": step.name, "provider": step.provider, "provider_type": step.provider_type,
        "style": step.style, "timeout": step.timeout, "step_timeout": step.step_timeout,
        "retry": {**policy._asdict(), "on": sorted(policy.on)},
        "continue_on_error": step.continue_on_error, "is_finally": step.is_finally,
        "for_each": step.for_each is not None, "item_name": step.item_name,
        "concurrency": step.concurrency, "fail_fast": step.fail_fast,
        "refs": step_refs(step, templates),
        "options": activity_options(step),
        "queue": rate_queue(task_queue, runbook, step.provider),
        "line": _line(runbook, step),
    }
    if step.poll is not None:  # the workflow polls: one activity per poll, sleeping between them
        data["poll"] = step.poll._asdict()
        data["options"]["maximum_attempts"] = max(data["options"]["maximum_attempts"], POLL_ACTIVITY_ATTEMPTS)
    if step.child is not None:  # a call: a child workflow runs the called runbook's skeleton
        line, col, note = runbook.source.locate(step.path + ("runbook",))
        data["call"] = {"runbook": _skeleton(step.child, templates, task_queue),
                        "vars": dict(step.child.vars),
                        "called": {"path": step.child.path, "name": step.child.name, "sha256": step.child.sha256},
                        "location": f"{runbook.path}:{line}:{col}{note}"}
    return data


def _line(runbook: Runbook, step: Step) -> int | None:
    """The step's line in the runbook, which its record carries (as the local recording's does)."""
    position = runbook.source.recorded(step.path) if runbook.source is not None else None
    return position[0] if position is not None else None


def _step(data: Mapping[str, Any]) -> Step:
    retry = dict(data["retry"])
    retry["on"] = frozenset(retry["on"])
    return Step(
        id=data["id"], name=data["name"], provider=data["provider"], provider_type=data["provider_type"],
        style=data["style"], target=None, input=None, options={}, when=None, timeout=data["timeout"],
        retry=RetryPolicy(**retry), continue_on_error=data["continue_on_error"], asserts=(), path=(),
        is_finally=data["is_finally"], step_timeout=data["step_timeout"],
        for_each=True if data["for_each"] else None, item_name=data["item_name"],
        concurrency=data["concurrency"], fail_fast=data["fail_fast"],
        until=True if data.get("poll") else None,
        poll=PollPolicy(**data["poll"]) if data.get("poll") else None,
    )


def skeleton_runbook(data: Mapping[str, Any]) -> Runbook:
    """The template-free runbook of a job's ``runbook`` skeleton: what the conductor needs."""
    return Runbook(
        path=data["path"], name=data["name"], description=None, vars={}, providers={},
        steps=tuple(_step(s) for s in data["steps"]), finally_steps=tuple(_step(s) for s in data["finally"]),
        outputs={}, sha256=data["sha256"], source=cast(Any, None), run_timeout=data["run_timeout"],
    )


def _skeleton(runbook: Runbook, templates: Templates, task_queue: str) -> dict[str, Any]:
    return {
        "path": runbook.path, "name": runbook.name, "sha256": runbook.sha256,
        "run_timeout": runbook.run_timeout,
        "steps": [_step_data(s, templates, runbook, task_queue) for s in runbook.steps],
        "finally": [_step_data(s, templates, runbook, task_queue) for s in runbook.finally_steps],
        "outputs": bool(runbook.outputs), "outputs_refs": _outputs_refs(runbook, templates),
    }


def called_texts(runbook: Runbook) -> dict[str, str]:
    """The text of every runbook ``runbook`` calls (recursively), by path: what a worker loads
    them from (it may not have the files). Read again here, and refused if changed since checked."""
    found: dict[str, str] = {}
    pending = [s.child for s in runbook.steps + runbook.finally_steps if s.child is not None]
    while pending:
        child = pending.pop()
        if child.path in found:
            continue
        try:
            with open(child.path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise RunbookError(f"the called runbook {child.path}: cannot read it: {exc.strerror or exc}") from None
        if hashlib.sha256(text.encode("utf-8")).hexdigest() != child.sha256:
            raise RunbookError(f"the called runbook {child.path} changed while it was checked: submit again")
        found[child.path] = text
        pending += [s.child for s in child.steps + child.finally_steps if s.child is not None]
    return found


def job(runbook: Runbook, templates: Templates, text: str, *, vars: Mapping[str, Any], task_queue: str,
        git: Mapping[str, Any] | None, batch: str, key: str, heartbeat_timeout: float = HEARTBEAT_TIMEOUT,
        ) -> dict[str, Any]:
    """The input of one run's workflow (JSON data; no secret: templates are not rendered here).

    ``files`` holds the text of every runbook of the chain of calls, this one's too, by path
    (empty when it calls none):
    each called runbook's child workflow gets them all (its activities load the runbook it runs
    and, to render again an input that holds a secret, the caller's)."""
    files = called_texts(runbook)
    if files:  # (a runbook that calls none has only its text)
        files[runbook.path] = text
    return {
        "runbook": _skeleton(runbook, templates, task_queue),
        "text": text,
        "files": files,
        "vars": dict(vars),
        "git": dict(git) if git is not None else None,
        "task_queue": task_queue,
        "batch": batch,
        "key": key,
        "heartbeat_timeout": heartbeat_timeout,
    }


def referenced(steps: Mapping[str, Any], refs: Iterable[str] | None) -> dict[str, Any]:
    """``steps`` cut to the ids in ``refs`` (all of them when ``refs`` is None)."""
    if refs is None:
        return dict(steps)
    return {name: steps[name] for name in refs if name in steps}
