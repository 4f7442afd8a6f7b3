"""What every provider type implements, and the typed errors it raises.

A provider instance is built once per run from its rendered configuration
(raising :class:`ProviderError` of type ``configuration`` when credentials or
settings are missing: that is part of the pre-flight check, before anything is
sent), then asked to ``send`` one :class:`ActionCall` per attempt.

:class:`Provider` is the whole interface the engine calls, optional capabilities
included: each has a default here that says "cannot" (``replays`` is False,
``emulated_config`` and ``request_builder`` return None, ``target`` is empty,
``verify_credentials`` proves nothing). Built-in types subclass it; a plugin class
need not (the registry gives it these defaults when it loads it).

A built-in type builds each HTTP request as a :class:`Request` (plain data) with a
pure ``build_request(call)``; ``send`` sends that, adding the credentials, and
``runbook plan`` shows it, built by ``request_builder`` from the configuration alone.

Error types (``ProviderError.type``): :class:`~engine.model.ErrorType`, the one list
(``configuration``, ``authentication``, ``client_error``, ``rate_limited``, ``server_error``,
``timeout``, ``connection``, ``malformed_response``, ``action_failed``; the engine itself adds
``assertion``, ``template``, ``interrupted``, ``internal``, and ``plugin`` for whatever else a
plugin's method raises).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol

from engine.model import ErrorType
from engine.redaction import Redactor  # re-exported: plugins take it from here

__all__ = ["ErrorType", "ActionCall", "ActionResult", "ProviderError", "Provider", "Request", "RequestBuilder",
           "Redactor", "ERROR_TYPES", "HIDDEN"]

#: Every error type's name (:class:`~engine.model.ErrorType`); what a plugin may raise.
ERROR_TYPES = tuple(t.value for t in ErrorType)


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
        self.type = ErrorType(type)  # an unknown type is a bug of the provider's: ValueError
        self.message = message
        self.http_status = http_status
        self.run_id = run_id
        self.attribution = attribution
        self.provider_error = provider_error
        self.retry_after = retry_after
        self.logs = logs or []
        self.extra = extra or {}


#: How a credential's value is shown (``Request.shown_headers``).
HIDDEN = "***"


@dataclass(frozen=True)
class Request:
    """One HTTP request as a provider type builds it: plain data, made without I/O.

    ``url`` is absolute, query included; httpx percent-encodes what a URL cannot carry as
    it is. The body is ``json`` (a JSON value; None: no body) or ``content`` (text sent as
    it is, UTF-8). ``auth`` names the headers that carry a credential: their values are
    never in a Request (``send`` adds them, after a token exchange if need be), so a
    Request can be shown (``runbook plan``) or compared in a test as it is. httpx adds the
    transport's own headers (Host, Content-Length, User-Agent, Accept, Accept-Encoding,
    Connection, and the Content-Type of a ``json`` body).
    """

    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    json: Any = None
    content: str | None = None
    auth: tuple[str, ...] = ()

    def shown_headers(self) -> dict[str, str]:
        """The headers as sent, each credential (first) as ``***``."""
        return {**dict.fromkeys(self.auth, HIDDEN), **{k: v for k, v in self.headers.items() if k not in self.auth}}


class RequestBuilder(Protocol):
    """A provider type's request rules for one configuration, without its credentials.

    Pure: no I/O, no token exchange, no secret read. ``send`` sends what it builds;
    ``runbook plan`` shows it.
    """

    def target(self) -> str:
        """Where requests go (base URL, project, environment): part of request_sha256."""
        ...

    def request_body(self, call: ActionCall) -> Any:
        """The request as recorded in the manifest (JSON-compatible)."""
        ...

    def build_request(self, call: ActionCall) -> Request | None:
        """The HTTP request ``send`` makes for ``call`` (raises ProviderError ``configuration``
        for a call the type cannot send); None: a plugin's, which does not say how it sends."""
        ...


class Provider(Protocol):
    """One configured provider instance for the length of a run.

    Required: ``__init__``, ``request_body``, ``send``, ``close``. Everything else has a
    default here, so the engine asks instead of probing.
    """

    type_name: ClassVar[str] = ""
    # What validation reads (for built-in types, from schemas/providers/<type>.json instead).
    styles: ClassVar[tuple[str, ...]] = ("api",)
    #: The keys naming where an ``api`` request goes.
    api_targets: ClassVar[tuple[str, ...]] = ("path", "url")
    config_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    options_schema: ClassVar[dict[str, Any]] = {"type": "object"}
    #: Said with "does not support dispatch style ..." errors.
    style_hint: ClassVar[str | None] = None
    #: Per dispatch style: ``{"allowed": [...], "required": [...]}`` option names (``with:``).
    style_options: ClassVar[dict[str, dict[str, list[str]]]] = {}
    #: Options a step may leave to the provider block's config key of the same name.
    options_from_config: ClassVar[tuple[str, ...]] = ()
    #: Keys its ``ActionResult.extra`` adds to ``steps.<id>`` (validation refuses any other).
    step_extras: ClassVar[tuple[str, ...]] = ()
    #: Capability: ``replay`` sends a request recorded in a manifest.
    replays: ClassVar[bool] = False
    #: Capability: ``run_log_action`` reads the request of a past run from the service.
    run_logs: ClassVar[bool] = False

    def __init__(
        self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str], redactor: Redactor
    ) -> None: ...

    def request_body(self, call: ActionCall) -> Any:
        """The request as it will be sent (JSON-compatible), for the manifest and its hash."""
        ...

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        """Send one attempt; return the result or raise :class:`ProviderError`."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...

    # -- optional capabilities, with the defaults of a type that has none -------------------

    @staticmethod
    def emulated_config(config: Mapping[str, Any], url: str) -> dict[str, Any] | None:
        """The configuration ``--emulate`` uses (the emulator at ``url``, dummy credentials);
        None: the type has no emulator and keeps its configuration."""
        return None

    @classmethod
    def request_builder(
        cls, name: str, config: Mapping[str, Any], *, env: Mapping[str, str]
    ) -> RequestBuilder | None:
        """The type's request rules for a rendered ``config``, built without credentials (for
        ``runbook plan``); None: the type cannot show its requests before it is built."""
        return None

    def target(self) -> str:
        """Where requests go (base URL, project, environment); part of each step's
        request_sha256, so a resume against another target sends again."""
        return ""

    def verify_credentials(self, timeout: float | None) -> None:
        """Prove the credentials without side effects (raising ProviderError); pre-flight
        calls it before the first step. The default has nothing to prove."""
        return None

    def replay(self, style: str, request: Any, timeout: float | None) -> ActionResult:
        """Send ``request`` as a manifest recorded it (when ``replays``)."""
        raise ProviderError("configuration", f"provider type {self.type_name!r} cannot replay requests")

    def run_log_action(self, run_id: str, timeout: float | None) -> dict[str, Any]:
        """The request a past run sent, from the service's run log (when ``run_logs``)."""
        raise ProviderError("configuration", f"provider type {self.type_name!r} keeps no run logs")
