"""Pipedream Connect: the token exchange, ``actions/run`` and the proxy, checked like the service.

Routes (what the official SDKs, ``pipedream`` 2.x and ``@pipedream/sdk`` 3.x, call)::

    POST /v1/oauth/token                                  client secret or private-key JWT -> token
    POST /v1/connect/{project_id}/actions/run             run a catalog action for an end user
    GET  /v1/connect/{project_id}/actions/{key}           an action's definition, {data: component}
    GET  /v1/connect/{project_id}/components/{key}        the same for any component
    POST /v1/connect/{project_id}/actions/props           reload props -> {dynamicProps: {id, ...}}
    POST /v1/connect/{project_id}/components/props        the same
    GET  /v1/connect/{project_id}/accounts                the end user's connected accounts
    ANY  /v1/connect/{project_id}/proxy/{url_64}          proxy a request to the end user's API

The token exchange takes ``client_secret`` or a private-key JWT client assertion (RFC 7523:
``client_assertion_type`` ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer``, claims
``iss`` = ``sub`` = the client id, ``aud`` the API's origin, ``exp`` at most an hour ahead, a
``jti`` used once). The emulator knows no public key, so it checks the assertion's form and
claims, not its signature. The proxy's ``url_64`` may be standard or URL-safe base64, with or
without padding, percent-encoded or not (the JS SDK sends ``encodeURIComponent`` of standard
base64, the Python SDK URL-safe base64 with padding).

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
- a proxy target whose path is ``/status/NNN`` answers as if the upstream API said NNN;
- a proxy target whose path is ``/bytes/NNN`` answers NNN bytes of ``application/octet-stream``
  (``/image.png``: a 1x1 PNG), so a client's handling of binary answers can be tested;
- the catalog (``COMPONENTS``) holds components with typed ``configurable_props`` (a run is
  checked against them, as the service does); any other key is a component made up on the
  spot with no props, so any runbook runs; a key starting with ``missing`` is not found.

Errors are ``{"error": {"code", "message", "attribution"}}`` (the token endpoint answers the
OAuth shape ``{"error", "error_description"}``); ``attribution`` is ``user`` (the request was
wrong), ``pipedream`` (the platform), ``upstream`` (the app's API) or ``component`` (the
action's code). Token exchanges are in the request log like every request (path
``/v1/oauth/token``).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hashlib
import json
import re
import threading
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .schema_check import props_problems
from .server import EmulatorServer, Request, Response

__all__ = ["PipedreamService", "register", "DUMMY_TOKEN", "ERRORING_ACTIONS", "COMPONENTS", "component"]

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
UPSTREAM_BYTES = re.compile(r"/bytes/(\d{1,7})/?$")
_BASE64 = re.compile(r"^[A-Za-z0-9_+/-]+={0,2}$")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
_APP_PROP = {"type": "app", "app": "slack", "name": "slack", "label": "Slack"}
#: Components with typed props, by key (their version is fixed).
COMPONENTS: dict[str, dict[str, Any]] = {
    "slack-post-message": {
        "name": "Send Message",
        "version": "0.1.0",
        "app": "slack",
        "configurable_props": [
            _APP_PROP,
            {"type": "string", "name": "channel", "label": "Channel"},
            {"type": "string", "name": "text", "label": "Text"},
            {"type": "boolean", "name": "mrkdwn", "label": "Markdown", "optional": True},
        ],
    },
    "github-create-issue": {
        "name": "Create Issue",
        "version": "1.2.0",
        "app": "github",
        "configurable_props": [
            {"type": "app", "app": "github", "name": "github", "label": "GitHub"},
            {"type": "string", "name": "repo", "label": "Repository"},
            {"type": "string", "name": "title", "label": "Title"},
            {"type": "string[]", "name": "labels", "label": "Labels", "optional": True},
            {"type": "integer", "name": "milestone", "label": "Milestone", "optional": True},
        ],
    },
}
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
        self._jtis: set[str] = set()

    def register(self, server: EmulatorServer) -> None:
        """Add the Pipedream routes to ``server``."""
        server.add_route("POST", r"/v1/oauth/token", self.token, error=oauth_error)
        connect = r"/v1/connect/(?P<project_id>[^/]+)"
        server.add_route("POST", connect + r"/actions/run", self.run_action, action_of=action_of, error=pd_error)
        for kind in ("actions", "components"):
            server.add_route("POST", connect + rf"/{kind}/props", self.reload_props, action_of=action_of,
                             error=pd_error)
            server.add_route("GET", connect + rf"/{kind}/(?P<key>[^/]+)", self.get_component,
                             action_of=_key_of, error=pd_error)
        server.add_route("GET", connect + r"/accounts", self.accounts, error=pd_error)
        for method in PROXY_METHODS:
            server.add_route(
                method,
                connect + r"/proxy/(?P<url_64>[^/]*)",
                self.proxy,
                action_of=_proxy_action,
                error=pd_error,
            )
        server.on_reset(self.reset)

    def reset(self) -> None:
        """Forget every issued token, used assertion and counter."""
        with self._lock:
            self._tokens.clear()
            self._issued = 0
            self._stashes = 0
            self._jtis.clear()

    # -- routes -------------------------------------------------------------------------------

    def token(self, request: Request) -> Response:
        """``POST /v1/oauth/token``: client credentials, with a secret or a client assertion."""
        body = request.body
        if not request.is_json or not isinstance(body, dict):
            return oauth_error(request, 400, "the body must be a JSON object")
        if body.get("grant_type") != "client_credentials":
            return Response(400, {
                "error": "unsupported_grant_type",
                "error_description": "grant_type must be client_credentials",
            })
        client_id, secret, scope = body.get("client_id"), body.get("client_secret"), body.get("scope")
        assertion = body.get("client_assertion")
        if not (isinstance(client_id, str) and client_id):
            return oauth_error(request, 400, "client_id is required")
        if secret is not None and assertion is not None:
            return oauth_error(request, 400, "send client_secret or client_assertion, not both")
        if assertion is None and not (isinstance(secret, str) and secret):
            return oauth_error(request, 400, "client_secret (or client_assertion) is required")
        if scope is not None and (not isinstance(scope, str) or not scope.strip()):
            return Response(400, {"error": "invalid_scope", "error_description": "scope must be a string"})
        if assertion is not None:
            problem = self._check_assertion(request, client_id, body)
            if problem is not None:
                return oauth_error(request, problem[0], problem[1])
        if client_id.startswith("invalid") or (isinstance(secret, str) and secret.startswith("invalid")):
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

    def _check_assertion(self, request: Request, client_id: str, body: dict[str, Any]) -> tuple[int, str] | None:
        """(status, message) of a client assertion the service would refuse, or None."""
        if body.get("client_assertion_type") != CLIENT_ASSERTION_TYPE:
            return 400, f"client_assertion_type must be {CLIENT_ASSERTION_TYPE}"
        assertion = body.get("client_assertion")
        parts = assertion.split(".") if isinstance(assertion, str) else []
        try:
            header = json.loads(_b64decode(parts[0])) if len(parts) == 3 else None
            claims = json.loads(_b64decode(parts[1])) if len(parts) == 3 else None
        except (ValueError, binascii.Error):
            header = claims = None
        if not isinstance(header, dict) or not isinstance(claims, dict) or not parts[2]:
            return 401, "client_assertion is not a signed JWT"
        if header.get("alg") not in ("ES256", "RS256"):
            return 401, "client_assertion must be signed with ES256 or RS256"
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            return 401, "client_assertion: iss and sub must be the client_id"
        host = request.headers.get("host", "")
        audiences = {"https://api.pipedream.com", f"http://{host}", f"https://{host}"}
        aud = claims.get("aud")
        if not (aud in audiences or (isinstance(aud, list) and audiences & set(map(str, aud)))):
            return 401, f"client_assertion: aud must be the API's origin (got {aud!r})"
        exp, now = claims.get("exp"), time.time()
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp <= now:
            return 401, "client_assertion has expired (or has no exp)"
        if exp > now + 3600 + 60:
            return 401, "client_assertion: exp must be at most 1 hour ahead"
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            return 401, "client_assertion has no jti"
        with self._lock:
            if jti in self._jtis:
                return 401, "client_assertion was already used (sign a new one for every request)"
            self._jtis.add(jti)
        return None

    def run_action(self, request: Request) -> Response:
        """``POST /v1/connect/{project_id}/actions/run``."""
        try:
            self.check_connect(request, "connect:actions:*")
            body = check_run_body(request)
            _checked_component(body)
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

    def get_component(self, request: Request) -> Response:
        """``GET .../actions/{key}`` or ``.../components/{key}``: ``{data: component}``."""
        try:
            self.check_connect(request, "connect:actions:*")
            key = unquote(request.params["key"])
            version = request.query.get("version")
            found = component(key, version if isinstance(version, str) and version else None)
            if found is None:
                raise _Reject(404, f"component {key!r} not found")
        except _Reject as reject:
            return pd_error(request, reject.status, reject.message)
        return Response(200, {"data": found})

    def reload_props(self, request: Request) -> Response:
        """``POST .../actions/props``: the props as configured now, and a ``dynamicProps.id``."""
        try:
            self.check_connect(request, "connect:actions:*")
            body = request.body
            if not request.is_json or not isinstance(body, dict):
                raise _Reject(400, "the request body must be a JSON object")
            for name in ("id", "external_user_id"):
                if not isinstance(body.get(name), str) or not body[name]:
                    raise _Reject(400, f"'{name}' is required and must be a non-empty string")
            if body.get("configured_props") is not None and not isinstance(body["configured_props"], dict):
                raise _Reject(400, "'configured_props' must be an object")
            found = component(body["id"], body.get("version") if isinstance(body.get("version"), str) else None)
            if found is None:
                raise _Reject(404, f"component {body['id']!r} not found")
        except _Reject as reject:
            return pd_error(request, reject.status, reject.message)
        basis = {k: body.get(k) for k in ("id", "version", "external_user_id", "configured_props")}
        return Response(200, {
            "observations": [],
            "errors": [],
            "dynamicProps": {"id": "dyp_" + stable_id(basis), "configurableProps": found["configurable_props"]},
        })

    def accounts(self, request: Request) -> Response:
        """``GET .../accounts?external_user_id=...&app=...``: one connected account an app."""
        try:
            self.check_connect(request, "connect:accounts:read")
        except _Reject as reject:
            return pd_error(request, reject.status, reject.message)
        user = request.query.get("external_user_id")
        app = request.query.get("app")
        apps = [app] if isinstance(app, str) and app else sorted({str(c["app"]) for c in COMPONENTS.values()})
        data = [_account(user, name) for name in apps] if isinstance(user, str) and user else []
        return Response(200, {
            "data": data,
            "page_info": {"count": len(data), "total_count": len(data), "start_cursor": None, "end_cursor": None},
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
        binary = UPSTREAM_BYTES.search(parts.path)
        if binary is not None:
            size = int(binary.group(1))
            data = bytes(i % 256 for i in range(size))
            return Response(200, raw=data, content_type="application/octet-stream")
        if parts.path.endswith("/image.png"):
            return Response(200, raw=_PNG, content_type="image/png")
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
    if body.get("dynamic_props_id") is not None and not isinstance(body["dynamic_props_id"], str):
        raise _Reject(400, "'dynamic_props_id' must be a string")
    stash = body.get("stash_id")
    if stash is not None and not isinstance(stash, bool) and (not isinstance(stash, str) or not stash):
        raise _Reject(400, "'stash_id' must be a stash id, true, false, null or \"NEW\"")
    return body


def component(key: str, version: str | None = None) -> dict[str, Any] | None:
    """A component's definition (None: not found): a catalog one, else one made up for ``key``
    with no props (``missing...`` is not found). ``version`` must be the catalog's, if given."""
    entry = COMPONENTS.get(key)
    if entry is None:
        if not key or key.startswith("missing"):
            return None
        app = key.split("-", 1)[0]
        entry = {"name": key.replace("-", " ").capitalize(), "version": version or "0.0.1", "app": app,
                 "configurable_props": []}
    if version is not None and version not in (entry["version"], "latest"):
        return None
    return {
        "key": key,
        "name": entry["name"],
        "version": entry["version"],
        "description": f"{entry['name']} (emulated)",
        "component_type": "action",
        "configurable_props": copy.deepcopy(entry["configurable_props"]),
        "annotations": {"destructiveHint": False, "openWorldHint": True, "readOnlyHint": False},
    }


def _checked_component(body: dict[str, Any]) -> dict[str, Any]:
    """The component a run names, once its configured_props pass its props; raises _Reject."""
    version = body.get("version")
    found = component(body["id"], version if isinstance(version, str) else None)
    if found is None:
        what = f"{body['id']}@{version}" if version else body["id"]
        raise _Reject(404, f"component {what!r} not found")
    problems = props_problems(found["configurable_props"], body.get("configured_props"))
    if problems:
        raise _Reject(400, "configured_props do not match the component's props: " + "; ".join(problems))
    return found


def _account(user: str, app: str) -> dict[str, Any]:
    return {
        "id": "apn_" + hashlib.sha256(f"{user}\n{app}".encode()).hexdigest()[:8],
        "name": f"{app} ({user})",
        "external_id": user,
        "healthy": True,
        "dead": False,
        "app": {
            "id": "app_" + hashlib.sha256(app.encode()).hexdigest()[:8],
            "name_slug": app,
            "name": app.capitalize(),
            "auth_type": "oauth",
            "img_src": f"https://assets.pipedream.net/s.v0/app_{app}/logo/orig",
            "categories": ["Emulated"],
            "featured_weight": 0,
            "scope_profiles": [],
        },
        "created_at": "2025-01-01T00:00:00.000Z",
        "updated_at": "2025-01-01T00:00:00.000Z",
        "authorized_scopes": [],
    }


def _key_of(request: Request) -> str | None:
    return unquote(request.params.get("key", "")) or None


def decode_target(url_64: str) -> str:
    """The proxy's target URL from its base64: standard or URL-safe, padded or not, percent-
    encoded (as the JS SDK sends it) or not; raises _Reject."""
    text = unquote(url_64)
    if not _BASE64.match(text):
        raise _Reject(400, "the proxy path must be the base64 of the target URL")
    try:
        raw = text.replace("-", "+").replace("_", "/").rstrip("=")
        url = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise _Reject(400, "the proxy path is not valid base64") from None
    parts = urlsplit(url)
    if not (parts.scheme in ("http", "https") and parts.netloc) and not url.startswith("/"):
        raise _Reject(400, f"the proxy target {url!r} is not an http(s) URL or a relative path")
    return url


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _allows(scope: str | None, needed: str) -> bool:
    if scope is None:
        return True
    granted = scope.split()
    family = needed.split(":")[0] + ":*"
    return needed in granted or family in granted or "*" in granted
