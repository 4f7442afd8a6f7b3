"""Frozen data built from a validated runbook, and the results of running it.

Records are :class:`~typing.NamedTuple` s (and one class with slots): a runbook of
thousands of steps builds thousands of them, and NamedTuples cost a fraction of
dataclasses to define at import and to create.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from collections.abc import Mapping

    from engine.loader import SourceMap  # for the annotation only: reading a manifest needs no yaml

__all__ = [
    "RetryPolicy",
    "CALL",
    "PollPolicy",
    "ProviderSpec",
    "ENGINE_PROVIDER_KEYS",
    "DISPATCH_STYLES",
    "provider_config",
    "Step",
    "Runbook",
    "Status",
    "EXIT_CODES",
    "Attempt",
    "ErrorType",
    "StepError",
    "StepResult",
    "STEP_ATTRIBUTES",
    "FANOUT_ATTRIBUTES",
    "ITEM_ATTRIBUTES",
    "parse_duration",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a string like ``500ms``, ``30s``, ``2m``, ``1h``."""
    if isinstance(value, (int, float)):
        return float(value)
    unit = "ms" if value.endswith("ms") else value[-1]
    return float(value[: -len(unit)]) * _UNITS[unit]


class RetryPolicy(NamedTuple):
    """When and how often a step is tried again (SPEC §3)."""

    attempts: int = 1
    backoff: str = "exponential"
    initial_delay: float = 1.0
    max_delay: float = 30.0
    max_elapsed: float | None = None
    on: frozenset[str] = frozenset({"connection", "429"})


#: The provider, provider type and dispatch style of a step that calls a runbook.
CALL = "runbook"


class PollPolicy(NamedTuple):
    """``poll:`` (SPEC §12): re-send every ``interval`` (doubling with ``exponential``) while
    ``until`` is false, for at most ``timeout`` seconds."""

    interval: float
    timeout: float
    backoff: str = "fixed"


#: The dispatch styles (SPEC §3): one of them per step, each provider type supporting some.
DISPATCH_STYLES = ("id", "key", "api", "code")

#: The keys of a provider block that are the engine's, not the provider type's: its
#: configuration (what the type's config schema describes) is the rest.
ENGINE_PROVIDER_KEYS = ("type", "rate_limit")


def provider_config(block: Mapping[str, Any]) -> dict[str, Any]:
    """The configuration in a provider block: what its type's config schema checks (in
    ``validate`` and in ``run`` alike) and what the provider is built from."""
    return {k: v for k, v in block.items() if k not in ENGINE_PROVIDER_KEYS}


class ProviderSpec(NamedTuple):
    """A named provider instance: its type and its (templated) configuration."""

    name: str
    type: str
    config: dict[str, Any]
    path: tuple[Any, ...] = ()
    #: ``rate_limit: {requests, per}`` as (requests, seconds); None: no limit
    rate_limit: tuple[int, float] | None = None


class Step(NamedTuple):
    """One validated step, its templated fields still unrendered."""

    id: str
    name: str | None
    provider: str
    provider_type: str
    style: str
    target: Any
    input: Any
    options: dict[str, Any]
    when: str | bool | None
    timeout: float | None
    retry: RetryPolicy
    continue_on_error: bool
    asserts: tuple[str, ...]
    path: tuple[Any, ...]
    is_finally: bool = False
    step_timeout: float | None = None
    #: ``for_each`` (SPEC §9): the template (or literal list or mapping) of the items; None: one call.
    for_each: Any = None
    item_name: str = "item"  # ``as:``
    concurrency: int = 1
    fail_fast: bool = True
    #: ``until`` (an expression over the step's own latest answer) and its ``poll:``; None: no polling
    until: str | bool | None = None
    poll: PollPolicy | None = None
    #: ``runbook:`` (SPEC §12): the called runbook, built; then ``provider``, ``provider_type``
    #: and ``style`` are :data:`CALL`, ``target`` the path as written, ``options`` its ``with:``
    child: Runbook | None = None

    def fields(self) -> dict[str, Any]:
        """The step's templated fields as the runbook writes them (for
        :func:`~engine.templating.step_templates`)."""
        fields: dict[str, Any] = {"dispatch": {self.style: self.target}, "input": self.input, "with": self.options,
                                  "when": self.when, "assert": list(self.asserts), "until": self.until}
        if self.for_each is not None:
            fields["for_each"] = self.for_each
        return fields

    def identity(self) -> dict[str, Any]:
        """The fields that name a step in the manifest, reports and plans."""
        return {
            "id": self.id,
            "name": self.name,
            "section": "finally" if self.is_finally else "steps",
            "provider": self.provider,
            "provider_type": self.provider_type,
            "dispatch": self.style,
        }


class Runbook(NamedTuple):
    """A validated runbook."""

    path: str
    name: str
    description: str | None
    vars: dict[str, Any]
    providers: dict[str, ProviderSpec]
    steps: tuple[Step, ...]
    finally_steps: tuple[Step, ...]
    outputs: dict[str, Any]
    sha256: str
    source: SourceMap
    run_timeout: float | None = None
    #: ``inputs:``: each declared input's schema (``type``, ``default``, ``required``, ...)
    inputs: dict[str, dict[str, Any]] = {}  # noqa: RUF012 - a NamedTuple default, never mutated


class Status(str, enum.Enum):
    """The fate of a step (and, for SUCCEEDED/FAILED/INTERRUPTED/RUNNING, of a run)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    NOT_RUN = "not_run"
    RUNNING = "running"


#: The exit code of a run (or a replay) that got as far as its steps (SPEC §5).
EXIT_CODES = {Status.SUCCEEDED: 0, Status.FAILED: 1, Status.INTERRUPTED: 130}


class ErrorType(str, enum.Enum):
    """The type of a step's failure: the one list (the manifest schema's enum is checked
    against it). Members compare equal to their strings and print as them."""

    CONFIGURATION = "configuration"  # the provider block, the environment or an option is wrong
    AUTHENTICATION = "authentication"  # 401/403, or a token exchange that failed
    CLIENT_ERROR = "client_error"  # another 4xx: the request was wrong
    RATE_LIMITED = "rate_limited"  # 429 (with retry_after when the server said)
    SERVER_ERROR = "server_error"  # 5xx
    TIMEOUT = "timeout"  # no answer in time, or the step's or run's time ran out
    CONNECTION = "connection"  # could not connect, or the connection dropped
    MALFORMED_RESPONSE = "malformed_response"  # an answer that is not what the contract says
    ACTION_FAILED = "action_failed"  # the provider answered 2xx but says the action failed
    ASSERTION = "assertion"  # a step's assert was false
    TEMPLATE = "template"  # a template did not render
    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM while the step was in flight
    PLUGIN = "plugin"  # a plugin provider raised something other than ProviderError: its bug
    INTERNAL = "internal"  # a bug in runbook: the run stops, exit 3

    __str__ = str.__str__
    __format__ = str.__format__  # type: ignore[assignment]  # f"{ErrorType.TIMEOUT}" is "timeout"


class Attempt(NamedTuple):
    """One try of a step."""

    number: int
    started_at: str
    duration_ms: int
    http_status: int | None = None
    error: str | None = None


class StepError(NamedTuple):
    """A step's typed failure (its ``type``: an :class:`ErrorType`).

    ``location`` is ``FILE:LINE:COL`` of the runbook field that failed.
    """

    type: ErrorType
    message: str
    http_status: int | None = None
    attribution: str | None = None
    provider_error: dict[str, Any] | None = None
    location: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "message": self.message,
            "http_status": self.http_status,
            "attribution": self.attribution,
        }
        if self.location:
            out["location"] = self.location
        if self.provider_error:
            out["provider_error"] = self.provider_error
        return out


#: What ``steps.<id>`` holds for every step (a provider type may declare more: SPEC §4).
STEP_ATTRIBUTES = ("status", "output", "exports", "logs", "run_id", "error", "duration_ms")

#: What ``steps.<id>`` of a ``for_each`` step holds besides: each item's ``ITEM_ATTRIBUTES``.
FANOUT_ATTRIBUTES = ("items",)
ITEM_ATTRIBUTES = ("status", "output", "exports", "run_id", "error")


class StepResult:
    """What happened to one step; the runner's only output per step (filled in as it runs)."""

    __slots__ = ("step", "status", "started_at", "finished_at", "duration_ms", "attempts", "request",
                 "request_sha256", "output", "exports", "logs", "run_id", "extra", "error", "reused_from",
                 "index", "items", "children")

    def __init__(self, step: Step, status: Status, started_at: str | None = None, request: Any = None) -> None:
        self.step = step
        self.status = status
        self.started_at = started_at
        self.finished_at: str | None = None
        self.duration_ms = 0
        self.attempts: list[Attempt] = []
        self.request = request
        self.request_sha256: str | None = None
        self.output: Any = None
        self.exports: dict[str, Any] = {}
        self.logs: list[Any] = []
        self.run_id: str | None = None
        self.extra: dict[str, Any] = {}
        self.error: StepError | None = None
        self.reused_from: str | None = None
        #: of one item of a ``for_each`` step: its index (0-based); else None
        self.index: int | None = None
        #: of a ``for_each`` step: each item's :meth:`item_context`, in item order; else None
        self.items: list[dict[str, Any]] | None = None
        #: of a step that called a runbook: True (its steps' records are the journal's), or for
        #: an item of a for_each step, the records of the called runbook's steps
        self.children: bool | list[dict[str, Any]] = False

    def context(self) -> dict[str, Any]:
        """The step as later templates see it: ``steps.<id>``."""
        ctx = {
            "status": self.status.value,
            "output": self.output,
            "exports": self.exports,
            "logs": self.logs,
            "run_id": self.run_id,
            "error": self.error.to_json() if self.error else None,
            "duration_ms": self.duration_ms,
        }
        ctx.update(self.extra)
        if self.items is not None:
            ctx["items"] = self.items
        return ctx

    def item_context(self) -> dict[str, Any]:
        """One item as later templates see it: ``steps.<id>.items[i]``."""
        return {
            "status": self.status.value,
            "output": self.output,
            "exports": self.exports,
            "run_id": self.run_id,
            "error": self.error.to_json() if self.error else None,
        }
