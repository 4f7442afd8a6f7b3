"""Pipedream Connect: the token exchange, ``actions/run`` and the proxy, checked like the service.

Routes::

    POST /v1/oauth/token                                  client credentials -> access token
    POST /v1/connect/{project_id}/actions/run             run a catalog action for an end user
    ANY  /v1/connect/{project_id}/proxy/{url_64}          proxy a request to the end user's API

Connect requests need ``Authorization: Bearer <token>`` with a token this emulator issued (and
that has not expired) or the fixed ``emulator-token`` that ``--emulate`` uses (else 401), a
``project_id`` matching ``^proj_[a-zA-Z0-9]+$`` and an ``x-pd-environment`` of development or
production (else 400). A token issued with a ``scope`` reaches actions/run only with
``connect:actions:*`` (or ``connect:*``, ``*``) and the proxy only with ``connect:proxy``.

Answers are deterministic. ``ret`` echoes ``configured_props`` and adds an ``id``, the first 12
hex digits of the SHA-256 of the canonical body; ``stash_id: true`` or ``"NEW"`` creates a stash
``sth_...``, a string is echoed. Test conventions:

- a ``client_id`` or ``client_secret`` starting with ``invalid`` is refused (401 invalid_client);
- action ``fail-NNN`` answers HTTP NNN in Pipedream's error shape;
- actions ``err-component``, ``err-upstream`` and ``err-user`` answer 200 with an ``os`` entry
  holding an ``err`` and an ``error`` whose ``attribution`` is that origin;
- a proxy target whose path is ``/status/NNN`` answers as if the upstream API said NNN.

Errors are ``{"error": {"code", "message", "attribution"}}`` (the token endpoint answers the
OAuth shape ``{"error", "error_description"}``); ``attribution`` is ``user`` (the request was
wrong), ``pipedream`` (the platform), ``upstream`` (the app's API) or ``component`` (the
action's code). Token exchanges are in the request log like every request (path
``/v1/oauth/token``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .server import EmulatorServer, Request, Response

__all__ = ["PipedreamService", "register", "DUMMY_TOKEN", "ERRORING_ACTIONS"]

DUMMY_TOKEN = "emulator-token"
TOKEN_LIFETIME = 3600
PROJECT_ID = re.compile(r"^proj_[a-zA-Z0-9]+$")
ENVIRONMENTS = ("development", "production")
RUN_FIELDS = frozenset(
    {"id", "external_user_id", "version", "configured_props", "dynamic_props_id", "stash_id"}
)
PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
PROXY_HEADER = "x-pd-proxy-"
FAILING_ACTION = re.compile(r"^fail-(\d{3})$")
UPSTREAM_STATUS = re.compile(r"/status/(\d{3})/?$")
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+={0,2}$")
#: Built-in actions that "run" and fail: component id -> (err name, err message, attribution).
ERRORING_ACTIONS = {
    "err-component": ("TypeError", "Cannot read properties of undefined (reading 'channel')", "component"),
    "err-upstream": ("Error", "Slack API error: channel_not_found", "upstream"),
    "err-user": ("ConfigurationError", "the required prop 'channel' was not configured", "user"),
}
_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "unprocessable_entity",
    429: "rate_limit_exceeded",
}
_OAUTH_ERRORS = {400: "invalid_request", 401: "invalid_client", 403: "unauthorized_client"}


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces (the input of every stable id)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_id(body: Any) -> str:
    """The ``ret.id`` of an actions/run body: same body, same id."""
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()[:12]


def error_body(status: int, message: str, attribution: str | None = None) -> dict[str, Any]:
    """Pipedream's error shape for ``status``."""
    if attribution is None:
        attribution = "pipedream" if status >= 500 or status == 429 else "user"
    code = _CODES.get(status, "internal_error" if status >= 500 else "bad_request")
    return {"error": {"code": code, "message": message, "attribution": attribution}}


def pd_error(request: Request, status: int, message: str) -> Response:
    """A Connect route's error (also the body of an injected fault)."""
    return Response(status, error_body(status, message))


def oauth_error(request: Request, status: int, message: str) -> Response:
    """The token endpoint's error: ``{"error", "error_description"}``."""
    code = _OAUTH_ERRORS.get(status, "server_error" if status >= 500 else "invalid_request")
    return Response(status, {"error": code, "error_description": message})


def action_of(request: Request) -> str | None:
    """What a fault's ``action`` matches on actions/run: the body's component ``id``."""
    body = request.body
    component = body.get("id") if request.is_json and isinstance(body, dict) else None
    return component if isinstance(component, str) else None


def _proxy_action(request: Request) -> str:
    return "api"


class _Reject(Exception):
    """A request Pipedream would refuse."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class PipedreamService:
    """The Pipedream side of the emulator: issued tokens, request checks and answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[float, str | None]] = {}
        self._issued = 0
        self._stashes = 0

    def register(self, server: EmulatorServer) -> None:
        """Add the Pipedream routes to ``server``."""
        server.add_route("POST", r"/v1/oauth/token", self.token, error=oauth_error)
        server.add_route(
            "POST",
            r"/v1/connect/(?P<project_id>[^/]+)/actions/run",
            self.run_action,
            action_of=action_of,
            error=pd_error,
        )
        for method in PROXY_METHODS:
            server.add_route(
                method,
                r"/v1/connect/(?P<project_id>[^/]+)/proxy/(?P<url_64>[^/]*)",
                self.proxy,
                action_of=_proxy_action,
                error=pd_error,
            )
        server.on_reset(self.reset)

    def reset(self) -> None:
        """Forget every issued token and restart the counters."""
        with self._lock:
            self._tokens.clear()
            self._issued = 0
            self._stashes = 0

    # -- routes -------------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        """``POST /v1/oauth/token`` with a client-credentials JSON body."""
        body = request.body
        if not request.is_json or not isinstance(body, dict):
            return oauth_error(request, 400, "the body must be a JSON object")
        if body.get("grant_type") != "client_credentials":
            return Response(400, {
                "error": "unsupported_grant_type",
                "error_description": "grant_type must be client_credentials",
            })
        client_id, secret, scope = body.get("client_id"), body.get("client_secret"), body.get("scope")
        if not (isinstance(client_id, str) and client_id and isinstance(secret, str) and secret):
            return oauth_error(request, 400, "client_id and client_secret are required")
        if scope is not None and (not isinstance(scope, str) or not scope.strip()):
            return Response(400, {"error": "invalid_scope", "error_description": "scope must be a string"})
        if client_id.startswith("invalid") or secret.startswith("invalid"):
            return oauth_error(request, 401, "invalid client credentials")
        now = time.time()
        with self._lock:
            self._issued += 1
            seed = f"{client_id}\n{scope}\n{self._issued}".encode()
            token = "pd_" + hashlib.sha256(seed).hexdigest()[:32]
            self._tokens[token] = (now + TOKEN_LIFETIME, scope)
        return Response(200, {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": TOKEN_LIFETIME,
            "created_at": int(now),
        })

    def run_action(self, request: Request) -> Response:
        """``POST /v1/connect/{project_id}/actions/run``."""
        try:
            self.check_connect(request, "connect:actions:*")
            body = check_run_body(request)
        except _Reject as reject:
            return pd_error(request, reject.status, reject.message)
        component = body["id"]
        failing = FAILING_ACTION.match(component)
        if failing and 400 <= int(failing.group(1)) <= 599:
            status = int(failing.group(1))
            message = f"action {component!r} failed with HTTP {status} (built-in failing action)"
            return pd_error(request, status, message)
        stash = self._stash(body)
        now_ms = int(time.time() * 1000)
        version = body.get("version") or "latest"
        logs: list[dict[str, Any]] = [{
            "k": "console.log",
            "ts": now_ms,
            "msg": f"running {component}@{version} for {body['external_user_id']}",
        }]
        if stash is not None:
            logs.append({"k": "console.log", "ts": now_ms, "msg": f"/tmp synced with file stash {stash}"})
        if component in ERRORING_ACTIONS:
            name, message, attribution = ERRORING_ACTIONS[component]
            err = {"name": name, "message": message, "stack": f"{name}: {message}\n    at run ({component})"}
            logs.append({"k": "error", "ts": now_ms, "err": err})
            return Response(200, {
                "exports": {},
                "os": logs,
                "ret": None,
                "stash_id": stash,
                "error": {"name": name, "message": message, "attribution": attribution},
            })
        props = body.get("configured_props") or {}
        return Response(200, {
            "exports": {"$summary": f"Ran {component}"},
            "os": logs,
            "ret": {**props, "id": stable_id(body)},
            "stash_id": stash,
        })

    def proxy(self, request: Request) -> Response:
        """``{METHOD} /v1/connect/{project_id}/proxy/{url_64}``: echo the upstream request."""
        try:
            self.check_connect(request, "connect:proxy")
            for name in ("external_user_id", "account_id"):
                value = request.query.get(name)
                if not isinstance(value, str) or not value:
                    raise _Reject(400, f"the {name} query parameter is required")
            url = decode_target(request.params["url_64"])
        except _Reject as reject:
            return pd_error(request, reject.status, reject.message)
        parts = urlsplit(url)
        headers = {
            key[len(PROXY_HEADER):]: value
            for key, value in request.headers.items()
            if key.startswith(PROXY_HEADER) and len(key) > len(PROXY_HEADER)
        }
        echo = {
            "method": request.method,
            "url": url,
            "query": {k: v[0] if len(v) == 1 else v for k, v in parse_qs(parts.query).items()},
            "headers": headers,
            "body": request.body,
        }
        upstream = UPSTREAM_STATUS.search(parts.path)
        status = int(upstream.group(1)) if upstream else 200
        if not 200 <= status <= 599:
            status = 200
        if status >= 300:
            echo["error"] = f"upstream answered {status}"
        return Response(status, echo)

    # -- checks -------------------------------------------------------------------------------

    def check_connect(self, request: Request, needed_scope: str) -> None:
        """Auth (401/403), then the project id and the environment header (400)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _Reject(401, "missing Authorization: Bearer <token> header")
        if token != DUMMY_TOKEN:
            with self._lock:
                issued = self._tokens.get(token)
            if issued is None:
                raise _Reject(401, "invalid access token")
            if time.time() >= issued[0]:
                raise _Reject(401, "the access token has expired")
            if not _allows(issued[1], needed_scope):
                raise _Reject(403, f"the access token's scope does not include {needed_scope}")
        project_id = request.params["project_id"]
        if not PROJECT_ID.match(project_id):
            raise _Reject(400, f"invalid project id {project_id!r}: expected ^proj_[a-zA-Z0-9]+$")
        environment = request.headers.get("x-pd-environment")
        if environment not in ENVIRONMENTS:
            got = "missing" if environment is None else f"{environment!r}"
            raise _Reject(400, f"x-pd-environment must be development or production (got {got})")

    def _stash(self, body: dict[str, Any]) -> str | None:
        given = body.get("stash_id")
        if given is True or given == "NEW":
            with self._lock:
                self._stashes += 1
                seed = f"{canonical(body)}\n{self._stashes}".encode()
            return "sth_" + hashlib.sha256(seed).hexdigest()[:10]
        return given if isinstance(given, str) else None


def register(server: EmulatorServer) -> PipedreamService:
    """Add the Pipedream routes to ``server``; returns the service (its tokens live there)."""
    service = PipedreamService()
    service.register(server)
    return service


def check_run_body(request: Request) -> dict[str, Any]:
    """The actions/run body, once it passes the checks of the API reference; raises _Reject."""
    body = request.body
    if not request.is_json or not isinstance(body, dict):
        raise _Reject(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - RUN_FIELDS)
    if unknown:
        raise _Reject(400, f"unknown field(s): {', '.join(unknown)}")
    for name in ("id", "external_user_id"):
        if not isinstance(body.get(name), str) or not body[name]:
            raise _Reject(400, f"'{name}' is required and must be a non-empty string")
    if "version" in body and body["version"] is not None and not isinstance(body["version"], str):
        raise _Reject(400, "'version' must be a string or null")
    if "configured_props" in body and not isinstance(body["configured_props"], dict):
        raise _Reject(400, "'configured_props' must be an object")
    if "dynamic_props_id" in body and not isinstance(body["dynamic_props_id"], str):
        raise _Reject(400, "'dynamic_props_id' must be a string")
    stash = body.get("stash_id")
    if "stash_id" in body and stash is not True and (not isinstance(stash, str) or not stash):
        raise _Reject(400, "'stash_id' must be a stash id, true or \"NEW\"")
    return body


def decode_target(url_64: str) -> str:
    """The proxy's target URL from its URL-safe base64 (padding optional); raises _Reject."""
    if not _BASE64URL.match(url_64):
        raise _Reject(400, "the proxy path must be the URL-safe base64 of the target URL")
    try:
        url = base64.urlsafe_b64decode(url_64 + "=" * (-len(url_64) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _Reject(400, "the proxy path is not valid URL-safe base64") from None
    parts = urlsplit(url)
    if not (parts.scheme in ("http", "https") and parts.netloc) and not url.startswith("/"):
        raise _Reject(400, f"the proxy target {url!r} is not an http(s) URL or a relative path")
    return url


def _allows(scope: str | None, needed: str) -> bool:
    if scope is None:
        return True
    granted = scope.split()
    family = needed.split(":")[0] + ":*"
    return needed in granted or family in granted or "*" in granted
