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


class Redactor:
    """Known secret values, scrubbed from everything recorded or printed.

    This is the second line of defence: values rendered from templates that
    touch ``secrets`` are already replaced by taint tracking. This catches a
    secret a provider echoes back, or a token the engine minted.
    """

    #: Shorter values are not searched for in text (too many false hits in ids and
    #: words); values rendered from them are still redacted by taint.
    MIN_LENGTH = 8

    def __init__(self) -> None:
        self._values: set[str] = set()
        self._pattern: Any = None

    def add(self, value: Any) -> None:
        """Learn a secret value (strings inside a list or mapping too)."""
        if isinstance(value, dict):
            for v in value.values():
                self.add(v)
            return
        if isinstance(value, list):
            for v in value:
                self.add(v)
            return
        if not isinstance(value, str) or len(value) < self.MIN_LENGTH or value in self._values:
            return
        import base64
        import json

        raw = value.encode("utf-8")
        forms = {value, json.dumps(value, ensure_ascii=False)[1:-1],
                 base64.b64encode(raw).decode("ascii").rstrip("="),
                 base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")}
        self._values |= forms
        self._pattern = None

    def __bool__(self) -> bool:
        return bool(self._values)

    def _regex(self) -> Any:
        if self._pattern is None:
            import re

            # longest first, so a secret containing another is replaced whole
            alternatives = sorted(self._values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, alternatives)))
        return self._pattern

    def found_in(self, text: str) -> bool:
        """Whether any known secret (or its JSON or base64 form) occurs in ``text``."""
        # One substring search per form: 3-8x faster than the alternation regex, even for 100 forms.
        return any(value in text for value in self._values)

    def text(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        if not self.found_in(text):
            return text
        return self._regex().sub("***", text)

    def scrub(self, value: Any) -> Any:
        """A copy of ``value`` with every known secret replaced by ``***``."""
        if not self._values:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.text(str(k)): self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value


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
