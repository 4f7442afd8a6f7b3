"""Plain HTTP: the ``api`` style against ``base_url`` or an absolute ``url``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from engine.providers import _http
from engine.providers.base import ActionCall, ActionResult, ProviderError, Redactor

__all__ = ["HttpProvider"]


class HttpProvider:
    """Sends the step's inline request; the parsed body is the output."""

    type_name: ClassVar[str] = "http"
    styles: ClassVar[tuple[str, ...]] = ("api",)

    @staticmethod
    def emulated_config(config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """The configuration ``--emulate`` uses: the emulator's echo API under ``/http``.

        Requests are recorded with the URL the runbook names (so ``--resume`` and ``replay``
        find the same request again) and sent to ``/http/<host>/<path>`` of the emulator, so
        an emulated run never leaves the machine.
        """
        return {**config, "_emulator_url": f"{url}/http"}

    def __init__(
        self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str], redactor: Redactor
    ) -> None:
        self.name = name
        self.base_url = str(config.get("base_url") or "").rstrip("/")
        self.headers = {str(k): str(v) for k, v in (config.get("headers") or {}).items()}
        self._emulator_url: str | None = config.get("_emulator_url")
        self._tls = _http.tls_settings(config, env, name)
        self._client: Any = None

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

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        return self._send(self.request_body(call), call.options.get("expect_status"), timeout)

    def replay(self, style: str, request: dict[str, Any], timeout: float | None) -> ActionResult:
        """Send a request recorded in a manifest (any 2xx succeeds)."""
        return self._send(request, None, timeout)

    def _wire_url(self, url: str) -> str:
        """Where a request for ``url`` goes: ``url`` itself, or its place on the emulator."""
        if self._emulator_url is None:
            return url
        return self._emulator_url + "/" + url.split("://", 1)[-1].lstrip("/")

    def _send(self, spec: dict[str, Any], expected: Any, timeout: float | None) -> ActionResult:
        if self._client is None:
            base = self._emulator_url or self.base_url or "http://localhost"
            self._client = _http.make_client(base, self.headers, tls=self._tls)
        query = {k: _query_value(v) for k, v in (spec.get("query") or {}).items()}
        request = _http.build(self._client,
            spec["method"],
            self._wire_url(str(spec["url"])),
            params=query or None,
            headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
            json=spec["body"] if "body" in spec else None,
        )
        response = _http.send(self._client, request, timeout)
        body, _ = _http.parse_body(response)
        status = response.status_code
        exports = {"status": status, "headers": dict(response.headers)}
        ok = status in expected if expected else 200 <= status < 300
        if not ok:
            raise ProviderError(
                _http.classify(status) if status >= 400 else "client_error",
                f"{spec['method']} {spec['url']} answered {status}: {_http.error_message(body, status)}",
                http_status=status,
                retry_after=_http.retry_after(response.headers.get("retry-after")),
                extra={"exports": exports},
            )
        return ActionResult(output=body, exports=exports, http_status=status)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return [_query_value(v) for v in value]
    return value

