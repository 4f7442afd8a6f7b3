"""Membrane: every style goes to ``POST {base_url}/act`` (see shared/seeds/membrane-act.txt)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from engine.providers import _common
from engine.providers.base import ActionCall, ActionResult, Provider, ProviderError, Redactor, Request

if TYPE_CHECKING:
    pass

__all__ = ["MembraneProvider", "MembraneRequests", "mint_jwt", "error_type", "DEFAULT_BASE_URL", "API_VERSION",
           "EMULATOR_TOKEN"]

DEFAULT_BASE_URL = "https://api.getmembrane.com"
#: The ``membrane-api-version`` header the SDK sends (@membranehq/sdk 0.28: LATEST_API_VERSION);
#: ``api_version`` in the provider block, else env MEMBRANE_API_VERSION, overrides it.
API_VERSION = "2025-10-21"
#: What ``--emulate`` uses: a personal access token (``pat-...``), one the SDK accepts too.
EMULATOR_TOKEN = "pat-emulator-token"
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


class MembraneRequests:
    """Membrane's request rules for one configuration (no credentials, no I/O): every style
    is ``POST {base_url}/act`` with ``Authorization: Bearer <token>``."""

    def __init__(self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str]) -> None:
        self.name = name
        self.base_url = str(
            config.get("base_url") or env.get("MEMBRANE_BASE_URL") or DEFAULT_BASE_URL
        ).rstrip("/")
        self.api_version = str(config.get("api_version") or env.get("MEMBRANE_API_VERSION") or API_VERSION)

    def target(self) -> str:
        """Where requests go (part of request_sha256, so a resume elsewhere sends again)."""
        return self.base_url

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

    def build_request(self, call: ActionCall) -> Request:
        return self.act_request(self.request_body(call))

    def act_request(self, body: dict[str, Any]) -> Request:
        """``POST /act`` with ``body`` (built, recorded, or a run log's ``action``)."""
        return Request("POST", f"{self.base_url}/act", self._headers(), json=body, auth=("Authorization",))

    def run_log_request(self, run_id: str) -> Request:
        """``GET /action-run-logs/{id}``."""
        return Request("GET", f"{self.base_url}/action-run-logs/{quote(run_id, safe='')}", self._headers(),
                       auth=("Authorization",))

    def action_request(self, selector: str) -> Request:
        """``GET /actions/{id or key}``: the action's definition (its ``inputSchema``)."""
        return Request("GET", f"{self.base_url}/actions/{quote(selector, safe='')}", self._headers(),
                       auth=("Authorization",))

    def _headers(self) -> dict[str, str]:
        return {"membrane-api-version": self.api_version}


class MembraneProvider(MembraneRequests, Provider):
    """Runs actions through Membrane's unified ``POST /act``."""

    type_name: ClassVar[str] = "membrane"
    styles: ClassVar[tuple[str, ...]] = ("id", "key", "api", "code")
    replays: ClassVar[bool] = True
    run_logs: ClassVar[bool] = True

    @staticmethod
    def emulated_config(config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """The configuration ``--emulate`` uses: the emulator's URL and a dummy token."""
        return {"type": "membrane", "base_url": url, "token": EMULATOR_TOKEN}

    @classmethod
    def request_builder(cls, name: str, config: Mapping[str, Any], *, env: Mapping[str, str]) -> MembraneRequests:
        return MembraneRequests(name, config, env=env)

    def __init__(
        self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str], redactor: Redactor
    ) -> None:
        MembraneRequests.__init__(self, name, config, env=env)
        self._token = config.get("token") or env.get("MEMBRANE_TOKEN")
        self._workspace_key = config.get("workspace_key") or env.get("MEMBRANE_WORKSPACE_KEY")
        self._workspace_secret = config.get("workspace_secret") or env.get(
            "MEMBRANE_WORKSPACE_SECRET"
        )
        self._tenant_key = config.get("tenant_key") or env.get("MEMBRANE_TENANT_KEY")
        self._redactor = redactor
        self._tls = _common.tls_settings(config, env, name)
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
        self._connection = _common.LazyConnection(self._tls)
        self._expected: dict[tuple[str, Any], tuple[Any, str]] = {}

    def _bearer(self) -> str:
        if self._token and not self._workspace_secret:
            return str(self._token)
        if time.time() > self._jwt_expires - _RENEW_BEFORE:
            assert self._workspace_key and self._workspace_secret
            self._token, self._jwt_expires = mint_jwt(
                self._workspace_key, self._workspace_secret, self._tenant_key
            )
            self._redactor.add(self._token)
        assert self._token
        return str(self._token)

    def _send(self, request: Request, timeout: float | None) -> Any:
        return self._connection.send(request, timeout, {"Authorization": f"Bearer {self._bearer()}"})

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        _common.check_expected_input(self._expected, call)
        return self._act(self.build_request(call), timeout)

    def expect_input(self, style: str, target: str, resolved: Any, where: str) -> None:
        """Check the rendered input of ``style: target`` against ``resolved`` (a remote check's
        definition) before sending it; ``where`` is the input's FILE:LINE:COL."""
        self._expected[(style, target)] = (resolved, where)

    def fetch_definition(self, style: str, action: str, version: str | None,
                         timeout: float | None) -> dict[str, Any]:
        """``GET /actions/{id or key}``: the action's name, revision and ``inputSchema``."""
        response = self._send(self.action_request(action), timeout)
        body, is_json = _common.parse_body(response)
        if response.status_code != 200:
            raise ProviderError(_common.classify(response.status_code),
                                f"GET /actions/{action}: {_common.error_message(body, response.status_code)}",
                                http_status=response.status_code)
        if not is_json or not isinstance(body, dict):
            raise ProviderError("malformed_response", f"GET /actions/{action}: {_common.describe(response)}")
        schema = body.get("inputSchema")
        return {"name": str(body.get("name") or action), "version": str(body.get("revision") or "-"),
                "schema": schema if isinstance(schema, dict) else {}}

    def replay(self, style: str, request: Any, timeout: float | None) -> ActionResult:
        """Send an ``/act`` body recorded in a manifest, or a run log's ``action``, as it was."""
        return self._act(self.act_request(request), timeout)

    def run_log_action(self, run_id: str, timeout: float | None) -> dict[str, Any]:
        """The ``/act`` body that ran, from ``GET /action-run-logs/{id}`` (its ``action`` field)."""
        response = self._send(self.run_log_request(run_id), timeout)
        body, _ = _common.parse_body(response)
        if response.status_code != 200:
            raise ProviderError(_common.classify(response.status_code),
                                f"run log {run_id}: {_common.error_message(body, response.status_code)}",
                                http_status=response.status_code)
        if not isinstance(body, dict) or not isinstance(body.get("action"), dict):
            raise ProviderError("malformed_response", f"run log {run_id} has no action to replay")
        action: dict[str, Any] = body["action"]
        return action

    def _act(self, request: Request, timeout: float | None) -> ActionResult:
        response = self._send(request, timeout)
        body, is_json = _common.parse_body(response)
        status = response.status_code
        run_id = _run_id(body)
        if 200 <= status < 300:
            if not is_json or not isinstance(body, dict):
                raise ProviderError(
                    "malformed_response",
                    f"expected a JSON object from /act, got {_common.describe(response)}",
                    http_status=status,
                )
            return ActionResult(output=body.get("output"), run_id=run_id, http_status=status)
        provider_error = None
        if isinstance(body, dict):
            provider_error = {k: body[k] for k in ("type", "key") if body.get(k) is not None}
        raise ProviderError(
            error_type(status, provider_error),
            _common.error_message(body, status),
            http_status=status,
            run_id=run_id,
            provider_error=provider_error or None,
            retry_after=_common.retry_after(response.headers.get("retry-after")),
        )

    def close(self) -> None:
        self._connection.close()


#: Membrane error keys (the SDK's BadRequestErrorKey and ConnectionErrorKey values) that say
#: more than an HTTP status: the step's error type for each. Any other type or key (``internal``,
#: ``action_run``, ``connection``, ``not_found`` ...) is kept in ``provider_error`` as given and
#: the step's error type follows the HTTP status.
_KEY_TYPES = {
    "not_authenticated": "authentication",
    "access_denied": "authentication",
    "access_token_expired": "authentication",
    "connection_is_defunct": "authentication",
    "rate_limit_exceeded": "rate_limited",
    "lock_timeout": "rate_limited",
}


def error_type(status: int, provider_error: dict[str, Any] | None) -> str:
    """The step's error type of a Membrane error answer: from its ``key`` when that names an
    authentication or rate-limit failure (whatever the status), else from the HTTP status."""
    key = (provider_error or {}).get("key")
    if status >= 400 and isinstance(key, str) and key in _KEY_TYPES:
        return _KEY_TYPES[key]
    return _common.classify(status)


def _run_id(body: Any) -> str | None:
    if not isinstance(body, dict):
        return None
    run_id = body.get("actionRunId")
    if run_id is None and isinstance(body.get("data"), dict):
        run_id = body["data"].get("actionRunId")
    return str(run_id) if run_id is not None else None

