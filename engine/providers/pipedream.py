"""Pipedream Connect: run catalog actions for end users, and proxy requests to their APIs.

``dispatch: {id: ...}`` is ``POST {base_url}/v1/connect/{project_id}/actions/run`` (see
shared/seeds/pipedream-connect-actions-run.txt); ``dispatch: {api: ...}`` goes through the
Connect proxy, ``{METHOD} .../proxy/{urlsafe base64 of the target URL}``. Both carry
``Authorization: Bearer <token>`` and ``x-pd-environment``.

The token comes from an OAuth client-credentials exchange, made once per process and set of
credentials (whatever the number of steps and provider instances), renewed two minutes before
it expires, and renewed once more when a request answers 401. A ready token is the
alternative. Neither the client secret nor a token reaches the manifest, the console or an
error message: both are handed to the run's redactor.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote, urlencode

from engine.providers import _common
from engine.providers.base import ActionCall, ActionResult, Provider, ProviderError, Redactor, Request

if TYPE_CHECKING:
    pass

__all__ = [
    "PipedreamProvider",
    "PipedreamRequests",
    "TokenCache",
    "TOKEN_CACHE",
    "DEFAULT_BASE_URL",
    "ENVIRONMENTS",
    "encode_target",
    "target_url",
]

DEFAULT_BASE_URL = "https://api.pipedream.com"
ENVIRONMENTS = ("development", "production")
PROJECT_ID_PATTERN = r"^proj_[a-zA-Z0-9]+$"
EMULATOR_TOKEN = "emulator-token"
RENEW_BEFORE = 120.0
DEFAULT_LIFETIME = 3600.0
_ID_OPTIONS = ("version", "external_user_id", "dynamic_props_id", "stash_id")
_API_OPTIONS = ("external_user_id", "account_id")
_BODY_METHODS = ("POST", "PUT", "PATCH")

#: The clock token lifetimes are measured with (tests replace it).
_clock: Callable[[], float] = time.monotonic


def encode_target(url: str) -> str:
    """The proxy path segment of a target URL: URL-safe base64, padding kept (what the Python
    SDK sends; ``=`` needs no escaping in a path)."""
    return base64.urlsafe_b64encode(url.encode("utf-8")).decode("ascii")


def target_url(target: Mapping[str, Any]) -> str:
    """The proxy's target: ``url`` with the step's ``query`` appended (lists repeat the key)."""
    return _common.with_query(str(target["url"]), target.get("query"))


class TokenCache:
    """Access tokens by (base URL, client ID, secret hash, scope), shared by provider instances."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}
        self._refused: dict[tuple[str, ...], ProviderError] = {}

    def get(self, key: tuple[str, ...], exchange: Callable[[], tuple[str, float]]) -> str:
        """The cached token for ``key``, or a new one from ``exchange()`` -> (token, lifetime).

        Credentials the token endpoint refused (401/403) are not sent again in this process:
        providers sharing them get the same error.
        """
        with self._lock:
            cached = self._tokens.get(key)
            if cached is not None and _clock() < cached[1]:
                return cached[0]
            if key in self._refused:
                raise self._refused[key]
            try:
                token, lifetime = exchange()
            except ProviderError as exc:
                if exc.type == "authentication":
                    self._refused[key] = exc
                raise
            self._tokens[key] = (token, _clock() + lifetime - min(RENEW_BEFORE, lifetime / 2))
            return token

    def drop(self, key: tuple[str, ...], token: str) -> None:
        """Forget ``token`` (unless another caller already replaced it)."""
        with self._lock:
            if key in self._tokens and self._tokens[key][0] == token:
                del self._tokens[key]

    def clear(self) -> None:
        """Forget every token (and every refusal)."""
        with self._lock:
            self._tokens.clear()
            self._refused.clear()


#: The process-wide cache: one exchange per run and set of credentials.
TOKEN_CACHE = TokenCache()


class PipedreamRequests:
    """Pipedream Connect's request rules for one project and environment (no credentials, no
    I/O): ``POST .../actions/run`` for ``id``, the Connect proxy for ``api``, both with
    ``Authorization: Bearer <token>`` and ``x-pd-environment``."""

    def __init__(self, name: str, *, base_url: str, project_id: str, environment: str,
                 external_user_id: str | None) -> None:
        self.name = name
        self.base_url = base_url
        self.project_id = project_id
        self.environment = environment
        self.external_user_id = external_user_id

    @classmethod
    def from_config(cls, name: str, config: Mapping[str, Any], env: Mapping[str, str]) -> PipedreamRequests:
        """The rules of a provider block as it stands, unchecked (a project or environment set
        nowhere is a placeholder): what ``runbook plan`` shows. The provider checks them."""
        return cls(
            name,
            base_url=_base_url(config, env),
            project_id=_setting(config, env, "project_id", "PIPEDREAM_PROJECT_ID") or "<PIPEDREAM_PROJECT_ID>",
            environment=_setting(config, env, "environment", "PIPEDREAM_PROJECT_ENVIRONMENT") or "<unset>",
            external_user_id=config.get("external_user_id") or None,
        )

    def target(self) -> str:
        """Where requests go: base URL, project and environment (part of request_sha256)."""
        return f"{self.base_url} {self.project_id} {self.environment}"

    def _end_user(self, call: ActionCall) -> str:
        user = call.options.get("external_user_id") or self.external_user_id
        if not user:
            raise ProviderError(
                "configuration",
                f"no external user id: set with.external_user_id, or external_user_id in "
                f"providers.{self.name}",
            )
        return str(user)

    def _check_options(self, call: ActionCall, allowed: tuple[str, ...]) -> None:
        stray = [key for key in call.options if key not in allowed and call.options[key] is not None]
        if stray:
            what = "actions (dispatch id)" if call.style == "api" else "the proxy (dispatch api)"
            raise ProviderError(
                "configuration",
                f"with.{', with.'.join(stray)} applies only to {what}, not to dispatch {call.style}",
            )

    def request_body(self, call: ActionCall) -> dict[str, Any]:
        """The request as sent: the actions/run body, or the proxied request and its end user."""
        if call.style == "id":
            self._check_options(call, _ID_OPTIONS)
            body: dict[str, Any] = {"id": call.target, "external_user_id": self._end_user(call)}
            if call.options.get("version") is not None:
                body["version"] = call.options["version"]
            props = {} if call.input is None else call.input
            if not isinstance(props, dict):
                raise ProviderError(
                    "configuration",
                    "input must be a mapping: it is sent as the action's configured_props",
                )
            body["configured_props"] = props
            for option in ("dynamic_props_id", "stash_id"):
                if call.options.get(option) is not None:
                    body[option] = call.options[option]
            return body
        if call.style == "api":
            self._check_options(call, _API_OPTIONS)
            target = call.target
            account = call.options.get("account_id")
            if not account:
                raise ProviderError(
                    "configuration", "the proxy needs with.account_id (the end user's connected account, apn_...)"
                )
            request: dict[str, Any] = {
                "method": str(target.get("method") or "GET").upper(),
                "url": target_url(target),
            }
            if target.get("headers"):
                request["headers"] = {str(k): str(v) for k, v in target["headers"].items()}
            if "body" in target:
                request["body"] = target["body"]
            request["external_user_id"] = self._end_user(call)
            request["account_id"] = str(account)
            return request
        raise ProviderError(
            "configuration", f"pipedream does not support dispatch {call.style!r} (only id and api)"
        )

    def build_request(self, call: ActionCall) -> Request:
        return self.wire_request(call.style, self.request_body(call))

    def wire_request(self, style: str, spec: Mapping[str, Any]) -> Request:
        """The HTTP request of a built or recorded ``spec``: the actions/run body as it is, or
        the proxied request: its target URL (query included) URL-safe base64 in the path, the
        end user and account in the query, each header as ``x-pd-proxy-<Name>``, the body
        passed through (a string as it is, anything else as JSON; a POST, PUT or PATCH without
        one sends ``{}``, as the SDKs do)."""
        headers = {"x-pd-environment": self.environment}
        base = f"{self.base_url}/v1/connect/{self.project_id}"
        if style == "id":
            return Request("POST", f"{base}/actions/run", headers, json=dict(spec), auth=("Authorization",))
        for name, value in (spec.get("headers") or {}).items():
            headers[f"x-pd-proxy-{name}"] = str(value)
        body = spec.get("body")
        method = str(spec["method"]).upper()
        if body is None and method in _BODY_METHODS:
            body = {}
        query = urlencode([("external_user_id", str(spec["external_user_id"])),
                           ("account_id", str(spec["account_id"]))])
        return Request(
            method,
            f"{base}/proxy/{encode_target(str(spec['url']))}?{query}",
            headers,
            json=None if isinstance(body, str) else body,
            content=body if isinstance(body, str) else None,
            auth=("Authorization",),
        )


class PipedreamProvider(PipedreamRequests, Provider):
    """Runs Pipedream Connect actions (``id``) and proxied requests (``api``) for an end user."""

    type_name: ClassVar[str] = "pipedream"
    styles: ClassVar[tuple[str, ...]] = ("id", "api")
    replays: ClassVar[bool] = True

    @staticmethod
    def emulated_config(config: Mapping[str, Any], url: str) -> dict[str, Any]:
        """The configuration ``--emulate`` uses: the emulator's URL and its dummy token.

        Project, environment, end user and scope are kept; a project or environment set
        nowhere falls back to an emulator placeholder instead of failing the run.
        """
        kept = ("project_id", "environment", "external_user_id", "scope")
        return {
            "type": "pipedream",
            "base_url": url,
            "token": EMULATOR_TOKEN,
            "_emulated": True,
            **{key: config[key] for key in kept if key in config},
        }

    @classmethod
    def request_builder(cls, name: str, config: Mapping[str, Any], *, env: Mapping[str, str]) -> PipedreamRequests:
        return PipedreamRequests.from_config(name, config, env)

    def __init__(
        self, name: str, config: Mapping[str, Any], *, env: Mapping[str, str], redactor: Redactor
    ) -> None:
        self.name = name
        self._redactor = redactor
        emulated = bool(config.get("_emulated"))
        problems: list[str] = []
        project_id = _setting(config, env, "project_id", "PIPEDREAM_PROJECT_ID")
        environment = _setting(config, env, "environment", "PIPEDREAM_PROJECT_ENVIRONMENT")
        if emulated:
            project_id = project_id or "proj_emulator"
            environment = environment or "development"
        if not project_id:
            problems.append("no project: set PIPEDREAM_PROJECT_ID (or project_id in its providers: block)")
        elif not re.fullmatch(PROJECT_ID_PATTERN, project_id):
            problems.append(
                f"project id {project_id!r} (from {_source(config, 'project_id', 'PIPEDREAM_PROJECT_ID')}) "
                "is not a Pipedream project id (proj_ followed by letters and digits)"
            )
        if not environment:
            problems.append(
                "no environment: set PIPEDREAM_PROJECT_ENVIRONMENT to development or production "
                "(or environment in its providers: block); there is no default"
            )
        elif environment not in ENVIRONMENTS:
            problems.append(
                f"environment {environment!r} (from "
                f"{_source(config, 'environment', 'PIPEDREAM_PROJECT_ENVIRONMENT')}) "
                "must be development or production"
            )
        PipedreamRequests.__init__(self, name, base_url=_base_url(config, env), project_id=project_id or "",
                                   environment=environment or "",
                                   external_user_id=config.get("external_user_id") or None)
        self._tls = _common.tls_settings(config, env, name)
        self.scope = config.get("scope") or None
        problem = self._credentials(config, env)
        if problem:
            problems.append(problem)
        if problems:
            raise ProviderError(
                "configuration", f"pipedream provider {name!r}: " + "; ".join(problems)
            )
        redactor.add(self._token)
        redactor.add(self._client_secret)
        self._cache_key: tuple[str, ...] = ()
        if self._client_secret is not None:
            assert self._client_id is not None
            digest = hashlib.sha256(self._client_secret.encode("utf-8")).hexdigest()
            self._cache_key = (self.base_url, self._client_id, digest, self.scope or "")
        self._connection = _common.LazyConnection(self._tls)
        self._expected: dict[tuple[str, Any], tuple[Any, str]] = {}

    def _credentials(self, config: Mapping[str, Any], env: Mapping[str, str]) -> str | None:
        """Pick the credentials; the problem naming what to set, or None.

        The providers: block wins over the environment; client credentials (which can be
        renewed) win over a ready token from the same place.
        """
        self._token: str | None = None
        self._client_id: str | None = None
        self._client_secret: str | None = None
        self._credentials_source = ""
        if config.get("token") and not (config.get("client_id") or config.get("client_secret")):
            self._token = str(config["token"])
            self._credentials_source = f"token in providers.{self.name}"
            return None
        client_id = config.get("client_id") or env.get("PIPEDREAM_CLIENT_ID")
        secret = config.get("client_secret") or env.get("PIPEDREAM_CLIENT_SECRET")
        if client_id and secret:
            self._client_id, self._client_secret = str(client_id), str(secret)
            self._credentials_source = (
                f"{_source(config, 'client_id', 'PIPEDREAM_CLIENT_ID')} and "
                f"{_source(config, 'client_secret', 'PIPEDREAM_CLIENT_SECRET')}"
            )
            return None
        if client_id or secret:
            missing = "PIPEDREAM_CLIENT_SECRET (or client_secret" if client_id else (
                "PIPEDREAM_CLIENT_ID (or client_id"
            )
            return f"incomplete client credentials: set {missing} in its providers: block)"
        if config.get("token") or env.get("PIPEDREAM_ACCESS_TOKEN"):
            self._token = str(config.get("token") or env["PIPEDREAM_ACCESS_TOKEN"])
            self._credentials_source = _source(config, "token", "PIPEDREAM_ACCESS_TOKEN")
            return None
        return (
            "no credentials: set PIPEDREAM_CLIENT_ID and PIPEDREAM_CLIENT_SECRET, or "
            "PIPEDREAM_ACCESS_TOKEN (or client_id and client_secret, or token, in its providers: block)"
        )

    # -- sending ----------------------------------------------------------------------------

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        _common.check_expected_input(self._expected, call)
        return self._send(call, self.build_request(call), timeout)

    def expect_input(self, style: str, target: str, resolved: Any, where: str) -> None:
        """Check the rendered input of ``style: target`` against ``resolved`` (a remote check's
        definition) before sending it; ``where`` is the input's FILE:LINE:COL."""
        self._expected[(style, target)] = (resolved, where)

    def fetch_definition(self, style: str, action: str, version: str | None,
                         timeout: float | None) -> dict[str, Any]:
        """``GET .../actions/{key}``: the component's name, version and ``configurable_props``."""
        query = f"?{urlencode([('version', version)])}" if version else ""
        request = Request("GET", f"{self.base_url}/v1/connect/{self.project_id}/actions/"
                          f"{quote(action, safe='')}{query}", {"x-pd-environment": self.environment},
                          auth=("Authorization",))
        token = self._bearer(timeout)
        response = self._connection_().send(request, timeout, {"Authorization": f"Bearer {token}"})
        body, is_json = _common.parse_body(response)
        if response.status_code != 200:
            raise self._http_error(body, response.status_code, response, f"GET actions/{action}", token_hint=True)
        data = body.get("data") if is_json and isinstance(body, dict) else None
        if not isinstance(data, dict) or not isinstance(data.get("configurable_props"), list):
            raise ProviderError("malformed_response", f"GET actions/{action}: no data.configurable_props")
        return {"name": str(data.get("name") or action), "version": str(data.get("version") or version or "-"),
                "props": [p for p in data["configurable_props"] if isinstance(p, dict)]}

    def replay(self, style: str, request: Any, timeout: float | None) -> ActionResult:
        """Send a request recorded in a manifest (an actions/run body, or a proxied request)."""
        target = request.get("id") if style == "id" else request  # a proxied record: method and url
        return self._send(ActionCall(style, target, None, {}), self.wire_request(style, request), timeout)

    def _send(self, call: ActionCall, request: Request, timeout: float | None) -> ActionResult:
        token = self._bearer(timeout)
        response = self._connection_().send(request, timeout, {"Authorization": f"Bearer {token}"})
        if response.status_code == 401 and self._cache_key:
            # A 401 means nothing ran: drop the token, get a new one, send once more.
            TOKEN_CACHE.drop(self._cache_key, token)
            token = self._bearer(timeout)
            response = self._connection_().send(request, timeout, {"Authorization": f"Bearer {token}"})
        if call.style == "id":
            return self._action_result(call, response)
        return self._proxy_result(call, response)

    def _connection_(self) -> _common.LazyConnection:
        return self._connection

    # -- answers ------------------------------------------------------------------------------

    def _action_result(self, call: ActionCall, response: Any) -> ActionResult:
        body, is_json = _common.parse_body(response)
        status = response.status_code
        if not 200 <= status < 300:
            raise self._http_error(body, status, response, f"action {call.target!r}", token_hint=True)
        if not is_json or not isinstance(body, dict):
            raise ProviderError(
                "malformed_response",
                f"expected a JSON object from actions/run, got {_common.describe(response)}",
                http_status=status,
            )
        logs = body.get("os")
        exports = body.get("exports")
        if not isinstance(logs, (list, type(None))) or not isinstance(exports, (dict, type(None))):
            raise ProviderError(
                "malformed_response",
                "actions/run answered 'os' that is not a list or 'exports' that is not an object",
                http_status=status,
            )
        logs, exports = logs or [], exports or {}
        extra = {"stash_id": body.get("stash_id")}
        failure = _failure(body, logs)
        if failure is not None:
            name, message, attribution, detail = failure
            raise ProviderError(
                "action_failed",
                f"action {call.target!r} failed: {name}: {message}",
                http_status=status,
                attribution=attribution,
                provider_error=detail,
                logs=logs,
                extra={**extra, "exports": exports} if exports else extra,
            )
        return ActionResult(
            output=body.get("ret"), exports=exports, logs=logs, http_status=status, extra=extra
        )

    def _proxy_result(self, call: ActionCall, response: Any) -> ActionResult:
        body = _common.parse_answer(response)
        status = response.status_code
        exports = {"status": status, "headers": dict(response.headers)}
        if 200 <= status < 300:
            return ActionResult(output=body, exports=exports, http_status=status)
        target = call.target
        what = f"{str(target.get('method') or 'GET').upper()} {target_url(target)} (through the proxy)"
        error = self._http_error(body, status, response, what, token_hint=False)
        error.extra = {"exports": exports}
        raise error

    def _http_error(
        self, body: Any, status: int, response: Any, what: str, *, token_hint: bool
    ) -> ProviderError:
        attribution, detail = _attribution(body)
        message = f"{what} answered HTTP {status}: {_common.error_message(body, status)}"
        if status == 401 and token_hint:
            message += (
                f"; the access token was refused (renewed once) - check {self._credentials_source}"
                if self._cache_key
                else f"; the access token was refused - check {self._credentials_source}, or use client "
                "credentials so the engine can renew it"
            )
        return ProviderError(
            _common.classify(status),
            message,
            http_status=status,
            attribution=attribution,
            provider_error=detail,
            retry_after=_common.retry_after(response.headers.get("retry-after")),
        )

    # -- tokens -------------------------------------------------------------------------------

    def verify_credentials(self, timeout: float | None) -> None:
        """Prove client credentials before the run's first step: the token exchange, whose
        token is then cached for the run. A ready token is not checked (proving it would
        need a request that acts)."""
        if not self._cache_key:
            return
        self._bearer(timeout)

    def _bearer(self, timeout: float | None) -> str:
        if not self._cache_key:
            assert self._token is not None
            return self._token
        token = TOKEN_CACHE.get(self._cache_key, lambda: self._exchange(timeout))
        self._redactor.add(token)
        return token

    def _exchange(self, timeout: float | None) -> tuple[str, float]:
        """``POST /v1/oauth/token`` (client credentials): (access token, lifetime in seconds)."""
        payload = {
            "grant_type": "client_credentials",
            "client_id": self._client_id,
            "client_secret": self._client_secret,
        }
        if self.scope:
            payload["scope"] = self.scope
        request = Request("POST", f"{self.base_url}/v1/oauth/token", json=payload)
        response = self._connection_().send(request, timeout)
        body, _ = _common.parse_body(response)
        status = response.status_code
        if not 200 <= status < 300:
            hint = (
                f"; check {self._credentials_source}" + (f" and the scope {self.scope!r}" if self.scope else "")
                if status in (400, 401, 403)
                else ""
            )
            raise ProviderError(
                _common.classify(status),
                f"Pipedream token exchange (POST /v1/oauth/token) answered HTTP {status}: "
                f"{_oauth_message(body, status)}{hint}",
                http_status=status,
                retry_after=_common.retry_after(response.headers.get("retry-after")),
            )
        token = body.get("access_token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise ProviderError(
                "malformed_response",
                f"the Pipedream token endpoint answered without an access_token ({_common.describe(response)})",
                http_status=status,
            )
        self._redactor.add(token)
        lifetime = body.get("expires_in")
        if not isinstance(lifetime, (int, float)) or isinstance(lifetime, bool) or lifetime <= 0:
            lifetime = DEFAULT_LIFETIME
        return token, float(lifetime)

    def close(self) -> None:
        self._connection.close()


def _base_url(config: Mapping[str, Any], env: Mapping[str, str]) -> str:
    return str(config.get("base_url") or env.get("PIPEDREAM_BASE_URL") or DEFAULT_BASE_URL).rstrip("/")


def _setting(config: Mapping[str, Any], env: Mapping[str, str], key: str, var: str) -> str | None:
    value = config.get(key) or env.get(var)
    return str(value) if value else None


def _source(config: Mapping[str, Any], key: str, var: str) -> str:
    return key if config.get(key) else var


def _failure(body: dict[str, Any], logs: list[Any]) -> tuple[str, str, str | None, dict[str, Any] | None] | None:
    """(name, message, attribution, detail) of a 2xx answer that reports a failed action."""
    errors = [entry["err"] for entry in logs if isinstance(entry, dict) and entry.get("err")]
    top = body.get("error")
    if not errors and not top:
        return None
    err = errors[-1] if errors else top
    err = err if isinstance(err, dict) else {"message": str(err)}
    attribution, detail = _attribution(body)
    if attribution is None:
        attribution, detail = _attribution({"error": err})
    name = str(err.get("name") or "Error")
    detail = {**(detail or {}), "name": name}
    return name, str(err.get("message") or "the action failed"), attribution, detail


def _attribution(body: Any) -> tuple[str | None, dict[str, Any] | None]:
    """The error's attribution (as given; an object's ``origin``) and the error's own fields."""
    if not isinstance(body, dict):
        return None, None
    error = body.get("error")
    if not isinstance(error, dict):
        error = {}
    raw = error.get("attribution", body.get("attribution"))
    detail = {k: error[k] for k in ("code", "name", "attribution") if error.get(k) is not None}
    if isinstance(raw, dict):
        origin = raw.get("origin")
        attribution = str(origin) if origin is not None else None
    else:
        attribution = str(raw) if raw is not None else None
    return attribution, detail or None


def _oauth_message(body: Any, status: int) -> str:
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return f"{body['error']}: {description}" if description else body["error"]
    return _common.error_message(body, status)

