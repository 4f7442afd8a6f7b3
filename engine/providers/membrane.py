"""Membrane: every style goes to ``POST {base_url}/act`` (see shared/seeds/membrane-act.txt)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from engine.providers import _http
from engine.providers.base import ActionCall, ActionResult, ProviderError, Redactor

__all__ = ["MembraneProvider", "mint_jwt", "DEFAULT_BASE_URL"]

DEFAULT_BASE_URL = "https://api.getmembrane.com"
JWT_LIFETIME = 3600
_RENEW_BEFORE = 60
_OPTION_FIELDS = {
    "connection_id": "connectionId",
    "connection_key": "connectionKey",
    "integration_id": "integrationId",
    "integration_key": "integrationKey",
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint_jwt(workspace_key: str, workspace_secret: str, tenant_key: str | None,
             lifetime: int = JWT_LIFETIME, now: float | None = None) -> tuple[str, float]:
    """An HS256 token with claims ``iss`` (workspace key), ``id`` (tenant key), ``exp``."""
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {"iss": workspace_key, "exp": issued + lifetime}
    if tenant_key:
        claims["id"] = tenant_key
    header = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode("ascii")
    signature = hmac.new(workspace_secret.encode("utf-8"), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64url(signature)}", float(claims["exp"])


class MembraneProvider:
    """Runs actions through Membrane's unified ``POST /act``."""

    type_name: ClassVar[str] = "membrane"
    styles: ClassVar[tuple[str, ...]] = ("id", "key", "api", "code")

    @staticmethod
    def emulated_config(config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """The configuration ``--emulate`` uses: the emulator's URL and a dummy token."""
        return {"type": "membrane", "base_url": url, "token": "emulator-token"}

    def __init__(
        self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str], redactor: Redactor
    ) -> None:
        self.name = name
        self.base_url = (
            config.get("base_url") or env.get("MEMBRANE_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self._token = config.get("token") or env.get("MEMBRANE_TOKEN")
        self._workspace_key = config.get("workspace_key") or env.get("MEMBRANE_WORKSPACE_KEY")
        self._workspace_secret = config.get("workspace_secret") or env.get(
            "MEMBRANE_WORKSPACE_SECRET"
        )
        self._tenant_key = config.get("tenant_key") or env.get("MEMBRANE_TENANT_KEY")
        self._redactor = redactor
        self._tls = _http.tls_settings(config, env, name)
        if not self._token and not (self._workspace_key and self._workspace_secret):
            missing = "MEMBRANE_WORKSPACE_SECRET" if self._workspace_key else (
                "MEMBRANE_WORKSPACE_KEY" if self._workspace_secret else None
            )
            hint = f"set {missing}" if missing else (
                "set MEMBRANE_TOKEN, or MEMBRANE_WORKSPACE_KEY and MEMBRANE_WORKSPACE_SECRET "
                "(or token, or workspace_key and workspace_secret, in its providers: block)"
            )
            raise ProviderError("configuration", f"membrane provider {name!r} has no credentials: {hint}")
        redactor.add(self._token)
        redactor.add(self._workspace_secret)
        self._jwt_expires = 0.0
        self._client: Any = None

    def target(self) -> str:
        """Where requests go (part of request_sha256, so a resume elsewhere sends again)."""
        return self.base_url

    def _bearer(self) -> str:
        if self._token and not self._workspace_secret:
            return self._token
        if time.time() > self._jwt_expires - _RENEW_BEFORE:
            assert self._workspace_key and self._workspace_secret
            self._token, self._jwt_expires = mint_jwt(
                self._workspace_key, self._workspace_secret, self._tenant_key
            )
            self._redactor.add(self._token)
        assert self._token
        return self._token

    def request_body(self, call: ActionCall) -> dict[str, Any]:
        """The ``/act`` body: the style's field, connection fields, ``input``, ``meta``."""
        target = call.target
        if call.style == "api" and isinstance(target, dict):
            target = {"method": target.get("method", "GET"), **target}
        body: dict[str, Any] = {call.style: target}
        for option, wire in _OPTION_FIELDS.items():
            if call.options.get(option) is not None:
                body[wire] = call.options[option]
        if call.input is not None:
            body["input"] = call.input
        if call.options.get("meta") is not None:
            body["meta"] = call.options["meta"]
        return body

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        return self._act(self.request_body(call), timeout)

    def replay(self, style: str, request: dict[str, Any], timeout: float | None) -> ActionResult:
        """Send an ``/act`` body recorded in a manifest, or a run log's ``action``, as it was."""
        return self._act(request, timeout)

    def run_log_action(self, run_id: str, timeout: float | None) -> dict[str, Any]:
        """The ``/act`` body that ran, from ``GET /action-run-logs/{id}`` (its ``action`` field)."""
        if self._client is None:
            self._client = _http.make_client(self.base_url, tls=self._tls)
        request = _http.build(self._client,
            "GET", f"/action-run-logs/{run_id}", headers={"Authorization": f"Bearer {self._bearer()}"}
        )
        response = _http.send(self._client, request, timeout)
        body, _ = _http.parse_body(response)
        if response.status_code != 200:
            raise ProviderError(_http.classify(response.status_code),
                                f"run log {run_id}: {_http.error_message(body, response.status_code)}",
                                http_status=response.status_code)
        if not isinstance(body, dict) or not isinstance(body.get("action"), dict):
            raise ProviderError("malformed_response", f"run log {run_id} has no action to replay")
        return body["action"]

    def _act(self, body: dict[str, Any], timeout: float | None) -> ActionResult:
        if self._client is None:
            self._client = _http.make_client(self.base_url, tls=self._tls)
        request = _http.build(self._client,
            "POST", "/act", json=body,
            headers={"Authorization": f"Bearer {self._bearer()}"},
        )
        response = _http.send(self._client, request, timeout)
        body, is_json = _http.parse_body(response)
        status = response.status_code
        run_id = _run_id(body)
        if 200 <= status < 300:
            if not is_json or not isinstance(body, dict):
                raise ProviderError(
                    "malformed_response",
                    f"expected a JSON object from /act, got {_describe(response)}",
                    http_status=status,
                )
            return ActionResult(output=body.get("output"), run_id=run_id, http_status=status)
        provider_error = None
        if isinstance(body, dict):
            provider_error = {k: body[k] for k in ("type", "key") if body.get(k) is not None}
        raise ProviderError(
            _http.classify(status),
            _http.error_message(body, status),
            http_status=status,
            run_id=run_id,
            provider_error=provider_error or None,
            retry_after=_http.retry_after(response.headers.get("retry-after")),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _run_id(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    run_id = body.get("actionRunId")
    if run_id is None and isinstance(body.get("data"), dict):
        run_id = body["data"].get("actionRunId")
    return str(run_id) if run_id is not None else None


def _describe(response: Any) -> str:
    ctype = response.headers.get("content-type", "no content type")
    return f"{len(response.content)} bytes of {ctype.split(';')[0]}"

