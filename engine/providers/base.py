"""What every provider type implements, and the typed errors it raises.

A provider instance is built once per run from its rendered configuration
(raising :class:`ProviderError` of type ``configuration`` when credentials or
settings are missing: that is part of the pre-flight check, before anything is
sent), then asked to ``send`` one :class:`ActionCall` per attempt.

Error types (``ProviderError.type``)::

    configuration       the provider block or environment is incomplete
    authentication      401/403, or a token exchange that failed
    client_error        another 4xx: the request was wrong
    rate_limited        429 (carries retry_after when the server said)
    server_error        5xx
    timeout             no answer within the step's timeout
    connection          could not connect, or the connection dropped
    malformed_response  an answer that is not what the provider's contract says
    action_failed       the provider answered 2xx but reports the action failed
    assertion           a step's assert was false (raised by the runner)
    template            a template did not render (raised by the runner)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, NamedTuple, Protocol

from engine.redaction import Redactor  # re-exported: plugins take it from here

__all__ = ["ActionCall", "ActionResult", "ProviderError", "Provider", "Redactor", "ERROR_TYPES"]

ERROR_TYPES = (
    "configuration",
    "authentication",
    "client_error",
    "rate_limited",
    "server_error",
    "timeout",
    "connection",
    "malformed_response",
    "action_failed",
    "assertion",
    "template",
    "interrupted",
)


class ActionCall(NamedTuple):
    """A rendered step, as handed to a provider."""

    style: str
    target: Any
    input: Any
    options: Mapping[str, Any]


class ActionResult:
    """A provider's answer to a successful call."""

    __slots__ = ("output", "run_id", "exports", "logs", "http_status", "extra")

    def __init__(self, output: Any, run_id: str | None = None, exports: dict[str, Any] | None = None,
                 logs: list[Any] | None = None, http_status: int | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        self.output = output
        self.run_id = run_id
        self.exports = {} if exports is None else exports
        self.logs = [] if logs is None else logs
        self.http_status = http_status
        self.extra = {} if extra is None else extra

    def __repr__(self) -> str:
        return f"ActionResult(output={self.output!r}, run_id={self.run_id!r}, http_status={self.http_status!r})"


class ProviderError(Exception):
    """A typed failure of one attempt (see the module docstring for the types)."""

    def __init__(
        self,
        type: str,
        message: str,
        *,
        http_status: int | None = None,
        run_id: str | None = None,
        attribution: str | None = None,
        provider_error: dict[str, Any] | None = None,
        retry_after: float | None = None,
        logs: list[Any] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.type = type
        self.message = message
        self.http_status = http_status
        self.run_id = run_id
        self.attribution = attribution
        self.provider_error = provider_error
        self.retry_after = retry_after
        self.logs = logs or []
        self.extra = extra or {}


class Provider(Protocol):
    """One configured provider instance for the length of a run."""

    type_name: ClassVar[str]
    styles: ClassVar[tuple[str, ...]]

    def __init__(
        self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str], redactor: Redactor
    ) -> None: ...

    def request_body(self, call: ActionCall) -> Any:
        """The request as it will be sent (JSON-compatible), for the manifest and its hash."""

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        """Send one attempt; return the result or raise :class:`ProviderError`."""

    def close(self) -> None:
        """Release connections."""

    # Optional: ``target() -> str`` names where requests go (base URL, project,
    # environment); it is part of each step's request_sha256. ``replay(style,
    # request, timeout)`` sends a request as recorded in a manifest.
    # ``verify_credentials(timeout)`` proves the credentials without side effects
    # (raising ProviderError); pre-flight calls it before the first step.
