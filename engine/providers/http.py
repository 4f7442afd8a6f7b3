"""Plain HTTP: the ``api`` style against ``base_url`` or an absolute ``url``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from engine.providers import _common
from engine.providers.base import ActionCall, ActionResult, Provider, ProviderError, Redactor, Request

if TYPE_CHECKING:
    pass

__all__ = ["HttpProvider", "HttpRequests"]


class HttpRequests:
    """The http type's request rules for one configuration: the step's request, to the URL it
    names (or, under ``--emulate``, that URL's place on the emulator), with the provider
    block's headers under the step's own."""

    def __init__(self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str]) -> None:
        self.name = name
        self.base_url = str(config.get("base_url") or "").rstrip("/")
        self.headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        self._emulator_url: str | None = config.get("_emulator_url")

    def target(self) -> str:
        """Where requests go (part of request_sha256, so a resume elsewhere sends again)."""
        return self.base_url

    def _url(self, target: Mapping[str, Any]) -> str:
        """The URL the runbook names: ``url``, or ``base_url`` joined with ``path``."""
        if "url" in target:
            return str(target["url"])
        if not self.base_url and self._emulator_url is None:
            raise ProviderError(
                "configuration",
                f"http provider {self.name!r} has no base_url, so the step needs a full url",
            )
        path = str(target.get("path", ""))
        return self.base_url + (path if path.startswith("/") else "/" + path)

    def request_body(self, call: ActionCall) -> dict[str, Any]:
        """Method, URL, query, the step's own headers and body (provider headers are not recorded)."""
        target = call.target
        request: dict[str, Any] = {"method": target.get("method", "GET"), "url": self._url(target)}
        for key in ("query", "headers", "body"):
            if key in target:
                request[key] = target[key]
        return request

    def build_request(self, call: ActionCall) -> Request:
        return self.wire_request(self.request_body(call))

    def wire_request(self, spec: Mapping[str, Any]) -> Request:
        """The request of a recorded ``spec``: the query appended to the URL (a list repeats its
        name), the step's headers over the provider block's (names compared without case)."""
        step_headers = {str(k): str(v) for k, v in (spec.get("headers") or {}).items()}
        lowered = {k.lower() for k in step_headers}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in lowered}
        headers.update(step_headers)
        url = _common.with_query(self._wire_url(str(spec["url"])), spec.get("query"))
        return Request(str(spec["method"]).upper(), url, headers, json=spec.get("body"))

    def _wire_url(self, url: str) -> str:
        """Where a request for ``url`` goes: ``url`` itself, or its place on the emulator."""
        if self._emulator_url is None:
            return url
        return self._emulator_url + "/" + url.split("://", 1)[-1].lstrip("/")


class HttpProvider(HttpRequests, Provider):
    """Sends the step's inline request; the parsed body is the output."""

    type_name: ClassVar[str] = "http"
    styles: ClassVar[tuple[str, ...]] = ("api",)
    replays: ClassVar[bool] = True

    @staticmethod
    def emulated_config(config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """The configuration ``--emulate`` uses: the emulator's echo API under ``/http``.

        Requests are recorded with the URL the runbook names (so ``--resume`` and ``replay``
        find the same request again) and sent to ``/http/<host>/<path>`` of the emulator, so
        an emulated run never leaves the machine.
        """
        return {**config, "_emulator_url": f"{url}/http"}

    @classmethod
    def request_builder(cls, name: str, config: Mapping[str, Any], *, env: Mapping[str, str]) -> HttpRequests:
        return HttpRequests(name, config, env=env)

    def __init__(
        self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str], redactor: Redactor
    ) -> None:
        HttpRequests.__init__(self, name, config, env=env)
        self._tls = _common.tls_settings(config, env, name)
        self._connection = _common.LazyConnection(self._tls)

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        named = f"{call.target.get('method', 'GET')} {self._url(call.target)}"
        return self._send(self.build_request(call), named, call.options.get("expect_status"), timeout)

    def replay(self, style: str, request: Any, timeout: float | None) -> ActionResult:
        """Send a request recorded in a manifest (any 2xx succeeds)."""
        return self._send(self.wire_request(request), f"{request['method']} {request['url']}", None, timeout)

    def _send(self, request: Request, named: str, expected: Any, timeout: float | None) -> ActionResult:
        """Send ``request`` (``named``: its method and URL as the runbook names them)."""
        response = self._connection.send(request, timeout)
        body, _ = _common.parse_body(response)
        status = response.status_code
        exports = {"status": status, "headers": dict(response.headers)}
        ok = status in expected if expected else 200 <= status < 300
        if not ok:
            raise ProviderError(
                _common.classify(status) if status >= 400 else "client_error",
                f"{named} answered {status}: {_common.error_message(body, status)}",
                http_status=status,
                retry_after=_common.retry_after(response.headers.get("retry-after")),
                extra={"exports": exports},
            )
        return ActionResult(output=body, exports=exports, http_status=status)

    def close(self) -> None:
        self._connection.close()
