"""Membrane, checked as strictly as the service and answering in its shapes.

Routes (what the official JS SDK, ``@membranehq/sdk``, calls)::

    POST /act                                       run an action (id, key, api or code)
    POST /actions/{selector}/run                    legacy: run a saved action, body {input, meta}
    POST /action/run?key=...&integrationKey=...     the same, the action selected by query
    POST /connections/{c}/actions/{a}/run           run an action on a connection, body: the input
    GET  /actions/{selector}, GET /action?key=...   an action's definition (``inputSchema``)
    GET  /action-run-logs/{id}                      one run log
    GET  /action-run-logs?status=...&limit=...      run logs, newest first, {items, cursor}

Tokens: ``Authorization: Bearer <token>``. A JWT must be current (and signed HS256 with the
workspace secret when the emulator has one); any other token is taken as opaque. The SDK sends
only JWTs and ``pat-...`` tokens (it refuses others before sending), so the token ``--emulate``
and ``runbook emulate`` advertise is ``pat-emulator-token``. A refused (unauthenticated)
request creates no run log.

Errors are ``{type, key?, message, data}`` with the SDK's types (``bad_request`` with keys
``not_found``, ``not_authenticated``, ``access_denied``, ``already_exists``,
``rate_limit_exceeded``; ``internal``; ``action_run``; ``connection`` ...). Answers are
deterministic: an output's ``id`` is the first 12 hex digits of the SHA-256 of the canonical
/act body. Every run, failed or not, creates a run log and carries its ``actionRunId``.
Test conventions: an ``id`` or ``key`` ``fail-NNN`` answers HTTP NNN (400-599) with an
``action_run`` error; a connection key or id starting with ``defunct`` answers 400 with a
``connection`` error (key ``connection_is_defunct``); an action selector starting with
``missing`` is not found. The catalog (``CATALOG``) holds actions with strict input schemas
(input is checked against them, as the service does); any other selector is a permissive
action made up on the spot, so any runbook runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote

from .schema_check import schema_problems
from .server import EmulatorServer, Request, Response

__all__ = ["MembraneService", "register", "CATALOG", "ERROR_TYPES", "BAD_REQUEST_KEYS", "API_VERSIONS"]

STYLES = ("id", "key", "api", "code")
CONNECTION_FIELDS = ("connectionId", "connectionKey", "integrationId", "integrationKey")
ALLOWED_FIELDS = frozenset(STYLES + CONNECTION_FIELDS + ("input", "meta"))
API_FIELDS = frozenset({"method", "path", "query", "headers", "body", "url", "data"})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
FAILING_ACTION = re.compile(r"^fail-(\d{3})$")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
#: The SDK's ErrorType values (@membranehq/sdk 0.28, src/errors).
ERROR_TYPES = (
    "bad_request", "connection", "configuration", "dependency_error", "flow_run", "flow_instance_setup",
    "concurrency", "internal", "action_run", "action_instance_setup", "unit_run", "custom_code",
    "insufficient_credit", "openrouter_not_configured",
)
#: The SDK's BadRequestErrorKey values.
BAD_REQUEST_KEYS = ("not_found", "not_authenticated", "access_denied", "already_exists", "rate_limit_exceeded")
#: What the SDK sends as ``membrane-api-version`` (its LATEST_API_VERSION is the last).
API_VERSIONS = ("legacy", "2025-10-21")
_STATUS_KEYS = {401: "not_authenticated", 403: "access_denied", 404: "not_found", 409: "already_exists",
                429: "rate_limit_exceeded"}
WORKSPACE_USER_ID = "000000000000000000000001"

#: Actions with strict input schemas, by key (ids are derived: see ``_ident``).
CATALOG: dict[str, dict[str, Any]] = {
    "hubspot-create-contact": {
        "name": "Create contact",
        "integrationKey": "hubspot",
        "inputSchema": {
            "type": "object",
            "properties": {
                "email": {"type": "string", "minLength": 3},
                "name": {"type": "string"},
                "tags": {"type": "array", "items": {"type": "string"}},
            },
            "required": ["email"],
            "additionalProperties": False,
        },
    },
    "gmail-send-email": {
        "name": "Send email",
        "integrationKey": "gmail",
        "inputSchema": {
            "type": "object",
            "properties": {"to": {"type": "string"}, "subject": {"type": "string"}, "body": {"type": "string"}},
            "required": ["to", "subject"],
        },
    },
}


def error_of(status: int) -> tuple[str, str | None]:
    """Membrane's error ``type`` and ``key`` for an HTTP status."""
    if status >= 500:
        return "internal", None
    return "bad_request", _STATUS_KEYS.get(status)


def error_type(status: int) -> str:
    """Membrane's error ``type`` for an HTTP status."""
    return error_of(status)[0]


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces (the input of every stable id)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_id(body: Any) -> str:
    """The output id of an /act body: same body, same id."""
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()[:12]


class _Reject(Exception):
    """A request Membrane would refuse: HTTP status, message, error type and key."""

    def __init__(self, status: int, message: str, key: str | None = None, type_: str | None = None,
                 data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        default_type, default_key = error_of(status)
        self.type = type_ or default_type
        self.key = key if key is not None or type_ is not None else default_key
        self.data = data or {}


class MembraneService:
    """The Membrane side of the emulator: request checks, dispatch and the run logs."""

    def __init__(self, workspace_secret: str | None = None) -> None:
        self.workspace_secret = workspace_secret
        self._lock = threading.Lock()
        self._counter = 0
        self._runs: dict[str, dict[str, Any]] = {}
        self._jobs: dict[str, int] = {}  # job id -> how many times its status was asked

    def register(self, server: EmulatorServer) -> None:
        """Add the Membrane routes to ``server``."""
        server.add_route("POST", r"/act", self.act, action_of=action_of, error=self.act_error)
        server.add_route("POST", r"/actions/(?P<selector>[^/]+)/run", self.run_saved,
                         action_of=_selector_of, error=self.act_error)
        server.add_route("POST", r"/action/run", self.run_saved, action_of=_selector_of, error=self.act_error)
        server.add_route("POST", r"/connections/(?P<connection>[^/]+)/actions/(?P<selector>[^/]+)/run",
                         self.run_on_connection, action_of=_selector_of, error=self.act_error)
        server.add_route("GET", r"/actions/(?P<selector>[^/]+)", self.get_action, error=self.plain_error)
        server.add_route("GET", r"/action", self.get_action, error=self.plain_error)
        server.add_route("GET", r"/action-run-logs", self.list_run_logs, error=self.plain_error)
        server.add_route(
            "GET", r"/action-run-logs/(?P<run_id>[^/]+)", self.run_log, error=self.plain_error
        )
        server.on_reset(self.reset)

    def reset(self) -> None:
        """Forget every run log and restart the run counter."""
        with self._lock:
            self._counter = 0
            self._runs.clear()
            self._jobs.clear()

    # -- routes -------------------------------------------------------------------------------

    def act(self, request: Request) -> Response:
        """``POST /act``."""
        try:
            self.check_auth(request)
        except _Reject as reject:
            return self._refusal(reject)
        try:
            body = check_act_body(request)
            definition = _definition_for(body)
            _check_run(body, definition)
        except _Reject as reject:
            return self._failed_run(request, request.body, reject)
        output = self._job_status(body) if body.get("key") == JOB_STATUS_ACTION else dispatch(body)
        run_id = self._save_run(request, body, "output", output, definition)
        return Response(200, {"output": output, "actionRunId": run_id})

    def _job_status(self, body: dict[str, Any]) -> dict[str, Any]:
        """The saved action ``job-status`` (input ``{job, ready_after}``): an asynchronous job
        that is ``running`` the first ``ready_after`` times it is asked (default 2), then
        ``done``, with a ``url``: what a runbook polls (``until`` + ``poll``)."""
        given: dict[str, Any] = body["input"] if isinstance(body.get("input"), dict) else {}
        job = str(given.get("job", ""))
        ready_after = given.get("ready_after", 2)
        with self._lock:
            asked = self._jobs[job] = self._jobs.get(job, 0) + 1
        if isinstance(ready_after, int) and asked <= ready_after:
            return {"job": job, "status": "running", "asked": asked}
        return {"job": job, "status": "done", "asked": asked, "url": f"https://files.example/{job}.csv"}

    def run_saved(self, request: Request) -> Response:
        """``POST /actions/{selector}/run`` (body ``{input, meta}``, connection in the query), and
        ``POST /action/run?key=...``: the legacy run of a saved action."""
        try:
            self.check_auth(request)
        except _Reject as reject:
            return self._refusal(reject)
        act: Any = request.body
        try:
            selector, scope = _selector(request)
            given = request.body if request.is_json else None
            if request.raw and not isinstance(given, dict):
                raise _Reject(400, "the request body must be a JSON object: {input, meta}")
            given = given or {}
            unknown = sorted(set(given) - {"input", "meta"})
            if unknown:
                raise _Reject(400, f"unknown field(s): {', '.join(unknown)} (the body is {{input, meta}})")
            act = {**selector, **scope, **{k: given[k] for k in ("input", "meta") if k in given}}
        except _Reject as reject:
            return self._failed_run(request, act, reject)
        return self._run_as_act(request, act)

    def _run_as_act(self, request: Request, act: dict[str, Any]) -> Response:
        """Run ``act`` (what an SDK route means, as an ``/act`` body): checked, dispatched, logged."""
        try:
            request_view = Request(request.method, request.path, request.query, request.headers,
                                   request.raw, act, True, request.params)
            body = check_act_body(request_view)
            definition = _definition_for(body)
            _check_run(body, definition)
        except _Reject as reject:
            return self._failed_run(request, act, reject)
        output = dispatch(body)
        run_id = self._save_run(request, body, "output", output, definition)
        return Response(200, {"output": output, "actionRunId": run_id})

    def run_on_connection(self, request: Request) -> Response:
        """``POST /connections/{c}/actions/{a}/run``: the body is the input itself."""
        try:
            self.check_auth(request)
        except _Reject as reject:
            return self._refusal(reject)
        connection = unquote(request.params["connection"])
        selector = unquote(request.params["selector"])
        act: dict[str, Any] = {
            ("id" if _is_id(selector) else "key"): selector,
            ("connectionId" if _is_id(connection) else "connectionKey"): connection,
        }
        if request.raw:
            act["input"] = request.body
        return self._run_as_act(request, act)

    def get_action(self, request: Request) -> Response:
        """``GET /actions/{selector}`` or ``GET /action?key=...``: the action's definition."""
        try:
            self.check_auth(request)
            selector, scope = _selector(request)
            value = selector.get("id") or selector.get("key") or ""
            definition = action_definition(str(value), scope.get("integrationKey"))
            if definition is None:
                raise _Reject(404, f"action {value!r} not found")
        except _Reject as reject:
            return self._refusal(reject)
        return Response(200, definition)

    def run_log(self, request: Request) -> Response:
        """``GET /action-run-logs/{id}``."""
        try:
            self.check_auth(request)
        except _Reject as reject:
            return self._refusal(reject)
        run_id = request.params["run_id"]
        with self._lock:
            log = self._runs.get(run_id)
            log = json.loads(json.dumps(log)) if log is not None else None
        if log is None:
            return self._refusal(_Reject(404, f"action run log {run_id!r} not found"))
        return Response(200, log)

    def list_run_logs(self, request: Request) -> Response:
        """``GET /action-run-logs``: newest first, filtered by the query; ``{items, cursor}``."""
        try:
            self.check_auth(request)
            query = request.query
            limit_text = str(query.get("limit") or "100")
            if not limit_text.isdigit() or not 1 <= int(limit_text) <= 1000:
                raise _Reject(400, "limit must be an integer from 1 to 1000")
            cursor_text = str(query.get("cursor") or "0")
            if not cursor_text.isdigit():
                raise _Reject(400, "cursor must come from a previous answer")
        except _Reject as reject:
            return self._refusal(reject)
        filters = {name: query[name] for name in ("actionId", "integrationActionId", "integrationId",
                                                  "connectionId", "status") if isinstance(query.get(name), str)}
        with self._lock:
            logs = [json.loads(json.dumps(log)) for log in reversed(self._runs.values())]
        logs = [log for log in logs if all(log.get(_FILTER_FIELDS.get(k, k)) == v for k, v in filters.items())]
        start, limit = int(cursor_text), int(limit_text)
        page: dict[str, Any] = {"items": logs[start:start + limit]}
        if start + limit < len(logs):
            page["cursor"] = str(start + limit)
        return Response(200, page)

    # -- errors -------------------------------------------------------------------------------

    def act_error(self, request: Request, status: int, message: str) -> Response:
        """An injected fault on a run route: a failed run with its ``actionRunId`` (an injected
        401/403 refuses the request, which creates no run)."""
        reject = _Reject(status, message)
        if status in (401, 403):
            return self._refusal(reject)
        return self._failed_run(request, request.body, reject)

    def plain_error(self, request: Request, status: int, message: str) -> Response:
        """An error outside the run routes: Membrane's shape, without a run id."""
        return self._refusal(_Reject(status, message))

    def _refusal(self, reject: _Reject) -> Response:
        return Response(reject.status, _error_body(reject))

    def _failed_run(self, request: Request, act: Any, reject: _Reject) -> Response:
        error = _error_body(reject)
        definition = _definition_for(act) if isinstance(act, dict) else None
        run_id = self._save_run(request, act, "error", error, definition)
        error["data"] = {**error["data"], "actionRunId": run_id}
        return Response(reject.status, {**error, "actionRunId": run_id})

    # -- checks -------------------------------------------------------------------------------

    def check_auth(self, request: Request) -> None:
        """Require ``Authorization: Bearer <token>``: a current (and signed) JWT, or ``pat-...``;
        and a known ``membrane-api-version`` when one is sent."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _Reject(401, "missing Authorization: Bearer <token> header")
        version = request.headers.get("membrane-api-version")
        if version is not None and version not in API_VERSIONS:
            raise _Reject(400, f"unknown membrane-api-version {version!r} (known: {', '.join(API_VERSIONS)})")
        jwt_header = _jwt_header(token)
        if jwt_header is not None:
            self._check_jwt(token, jwt_header)
        # Any other token is taken as an opaque one (the emulator cannot know real ones). The
        # SDK itself sends only JWTs and pat-... tokens, which is why --emulate uses
        # ``pat-emulator-token``.

    def _check_jwt(self, token: str, header: dict[str, Any]) -> None:
        head_b64, payload_b64, signature_b64 = token.split(".")
        try:
            claims = json.loads(_b64decode(payload_b64))
        except (ValueError, binascii.Error):
            claims = None
        if not isinstance(claims, dict):
            raise _Reject(401, "the token's payload is not a JSON object")
        if not isinstance(claims.get("iss"), str) or not claims["iss"]:
            raise _Reject(401, "the token has no 'iss' claim")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise _Reject(401, "the token has no numeric 'exp' claim")
        if exp <= time.time():
            raise _Reject(401, "the token has expired")
        if self.workspace_secret is None:
            return
        if header.get("alg") != "HS256":
            raise _Reject(401, "the token is not signed with HS256")
        signed = f"{head_b64}.{payload_b64}".encode("ascii")
        digest = hmac.new(self.workspace_secret.encode("utf-8"), signed, hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if not hmac.compare_digest(expected, signature_b64):
            raise _Reject(401, "the token's signature does not verify")

    # -- run logs -----------------------------------------------------------------------------

    def _save_run(self, request: Request, act: Any, outcome: str, value: Any,
                  definition: dict[str, Any] | None) -> str:
        basis = canonical(act) if act is not None else request.raw.decode("utf-8", "replace")
        started = request.received_at or time.time()
        finished = time.time()
        body = act if isinstance(act, dict) else {}
        connection = body.get("connectionId") or (
            _ident("connection", str(body["connectionKey"])) if isinstance(body.get("connectionKey"), str) else None)
        integration_key = body.get("integrationKey") or (definition or {}).get("integrationKey") or "emulator"
        integration = body.get("integrationId") or _ident("integration", str(integration_key))
        with self._lock:
            self._counter += 1
            seed = f"{basis}\n{self._counter}".encode()
            run_id = "run_" + hashlib.sha256(seed).hexdigest()[:16]
            log: dict[str, Any] = {
                "id": run_id,
                "name": (definition or {}).get("name") or _inline_name(body),
                "userId": WORKSPACE_USER_ID,
                "integrationActionId": (definition or {}).get("id") or _ident("action", _inline_name(body)),
                "integrationId": integration,
                "connectionId": connection or _ident("connection", f"default:{integration}"),
                "status": "success" if outcome == "output" else "error",
                "action": act,
                "input": body.get("input"),
                outcome: value,
                "createdAt": _iso(started),
                "completedAt": _iso(finished),
                "duration": max(0, round((finished - started) * 1000)),
            }
            if isinstance(body.get("meta"), dict):
                log["meta"] = body["meta"]
            self._runs[run_id] = json.loads(json.dumps(log))
        return run_id


_FILTER_FIELDS = {"actionId": "integrationActionId"}


def register(server: EmulatorServer, *, workspace_secret: str | None = None) -> MembraneService:
    """Add the Membrane routes to ``server``; returns the service (its run logs live there)."""
    service = MembraneService(workspace_secret)
    service.register(server)
    return service


def _error_body(reject: _Reject) -> dict[str, Any]:
    body: dict[str, Any] = {"type": reject.type}
    if reject.key:
        body["key"] = reject.key
    body["message"] = reject.message
    body["data"] = dict(reject.data)
    return body


def _ident(kind: str, value: str) -> str:
    """A stable 24-hex-digit id (Membrane's ids look like that) for a key."""
    return hashlib.sha256(f"{kind}:{value}".encode()).hexdigest()[:24]


def _is_id(value: str) -> bool:
    return re.fullmatch(r"[0-9a-f]{24}", value) is not None


def _inline_name(body: dict[str, Any]) -> str:
    for style in ("key", "id"):
        if isinstance(body.get(style), str):
            return str(body[style])
    if isinstance(body.get("api"), dict):
        return f"API request {body['api'].get('method', '')} {body['api'].get('path', '')}".strip()
    return "Run JavaScript" if "code" in body else "action"


def action_definition(selector: str, integration_key: str | None = None) -> dict[str, Any] | None:
    """The definition ``GET /actions/{selector}`` answers (None: not found): a catalog action by
    key or id, else a permissive one made up for the selector (``missing...`` is not found)."""
    for key, entry in CATALOG.items():
        if selector in (key, _ident("action", key)):
            return _definition(key, entry)
    if not selector or selector.startswith("missing"):
        return None
    made_up: dict[str, Any] = {"name": selector.replace("-", " ").replace("_", " ").capitalize(),
               "integrationKey": integration_key, "inputSchema": {}}
    definition = _definition(selector, made_up)
    if _is_id(selector):  # an id: the made-up action has no key
        definition["id"] = selector
        definition.pop("key")
    return definition


def _definition(key: str, entry: dict[str, Any]) -> dict[str, Any]:
    revision = hashlib.sha256(canonical(entry).encode()).hexdigest()[:8]
    definition: dict[str, Any] = {
        "id": _ident("action", key),
        "key": key,
        "name": entry["name"],
        "state": "READY",
        "revision": revision,
        "inputSchema": entry["inputSchema"],
        "createdAt": "2025-01-01T00:00:00.000Z",
        "updatedAt": "2025-01-01T00:00:00.000Z",
    }
    if entry.get("integrationKey"):
        definition["integrationKey"] = entry["integrationKey"]
        definition["integrationId"] = _ident("integration", str(entry["integrationKey"]))
    return definition


def _definition_for(body: Any) -> dict[str, Any] | None:
    if not isinstance(body, dict):
        return None
    for style in ("id", "key"):
        if isinstance(body.get(style), str):
            return action_definition(body[style], body.get("integrationKey"))
    return None


def _check_run(body: dict[str, Any], definition: dict[str, Any] | None) -> None:
    """The checks of a run beyond the body's shape: the built-in failures, the connection,
    the action's existence and its input schema."""
    failing = _failing_status(body)
    if failing is not None:
        value = body.get("id", body.get("key"))
        raise _Reject(failing, f"action {value!r} failed with HTTP {failing} (built-in failing action)",
                      type_="action_run", data={"response": {"status": failing}})
    for name in ("connectionKey", "connectionId"):
        if str(body.get(name, "")).startswith("defunct"):
            raise _Reject(400, f"connection {body[name]!r} is defunct: reconnect it",
                          key="connection_is_defunct", type_="connection")
    if ("id" in body or "key" in body) and definition is None:
        value = body.get("id", body.get("key"))
        raise _Reject(404, f"action {value!r} not found")
    if definition is not None:
        given = body.get("input")
        problems = schema_problems(definition.get("inputSchema"), {} if given is None else given)
        if problems:
            raise _Reject(400, "input does not match the action's inputSchema: " + "; ".join(problems),
                          data={"problems": problems})


def _selector(request: Request) -> tuple[dict[str, str], dict[str, str]]:
    """The action (``id`` or ``key``) and the connection fields a legacy route names."""
    query = {k: v for k, v in request.query.items() if isinstance(v, str) and v}
    scope = {k: query[k] for k in CONNECTION_FIELDS if k in query}
    if "selector" in request.params:
        value = unquote(request.params["selector"])
        return {("id" if _is_id(value) else "key"): value}, scope
    for style in ("id", "key"):
        if style in query:
            return {style: query[style]}, scope
    raise _Reject(400, "select the action with id or key in the query")


def _selector_of(request: Request) -> str | None:
    if "selector" in request.params:
        return unquote(request.params["selector"])
    value = request.query.get("key", request.query.get("id"))
    return value if isinstance(value, str) else None


def action_of(request: Request) -> str | None:
    """What a fault's ``action`` matches: the id or key value, or ``api`` / ``code``."""
    body = request.body
    if not request.is_json or not isinstance(body, dict):
        return None
    for style in ("id", "key"):
        value = body.get(style)
        if isinstance(value, str):
            return value
    for style in ("api", "code"):
        if style in body:
            return style
    return None


def check_act_body(request: Request) -> dict[str, Any]:
    """The /act body, once it passes Membrane's checks; raises _Reject otherwise."""
    body = request.body
    if not request.is_json or not isinstance(body, dict):
        raise _Reject(400, "the request body must be a JSON object")
    unknown = sorted(set(body) - ALLOWED_FIELDS)
    if unknown:
        raise _Reject(400, f"unknown field(s): {', '.join(unknown)}")
    styles = [style for style in STYLES if style in body]
    if len(styles) != 1:
        found = f" (got {', '.join(styles)})" if styles else ""
        raise _Reject(400, f"exactly one of id, key, api, code{found}")
    style = styles[0]
    if style == "api":
        _check_api(body["api"])
    elif not isinstance(body[style], str) or not body[style]:
        raise _Reject(400, f"'{style}' must be a non-empty string")
    for name in CONNECTION_FIELDS:
        if name in body and (not isinstance(body[name], str) or not body[name]):
            raise _Reject(400, f"'{name}' must be a non-empty string")
    if "meta" in body and not isinstance(body["meta"], dict):
        raise _Reject(400, "'meta' must be an object")
    if style in ("api", "code") and not any(name in body for name in CONNECTION_FIELDS):
        raise _Reject(400, f"'{style}' needs a connection: give one of {', '.join(CONNECTION_FIELDS)}")
    return body


def _check_api(api: Any) -> None:
    if not isinstance(api, dict):
        raise _Reject(400, "'api' must be an object")
    unknown = sorted(set(api) - API_FIELDS)
    if unknown:
        raise _Reject(400, f"unknown api field(s): {', '.join(unknown)}")
    method = api.get("method")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise _Reject(400, "'api.method' must be an HTTP method")
    if "path" in api and "url" in api:
        raise _Reject(400, "'api.url' is an alias of 'api.path': give one of them")
    if "body" in api and "data" in api:
        raise _Reject(400, "'api.data' is an alias of 'api.body': give one of them")
    path = api.get("path", api.get("url"))
    if not isinstance(path, str) or not path:
        raise _Reject(400, "'api.path' must be a non-empty string")
    for name in ("query", "headers"):
        if name in api and not isinstance(api[name], dict):
            raise _Reject(400, f"'api.{name}' must be an object")


#: The saved action whose answer changes as it is asked again (MembraneService._job_status).
JOB_STATUS_ACTION = "job-status"


def dispatch(body: dict[str, Any]) -> Any:
    """The deterministic output of a checked /act body."""
    ident = stable_id(body)
    if "api" in body:
        api = body["api"]
        return {
            "method": api["method"],
            "path": api.get("path", api.get("url")),
            "query": api.get("query", {}),
            "body": api.get("body", api.get("data")),
            "id": ident,
        }
    given = body.get("input")
    if "code" not in body and isinstance(given, dict):
        return {**given, "id": ident}
    return {"input": given, "id": ident}


def _failing_status(body: dict[str, Any]) -> int | None:
    for style in ("id", "key"):
        found = FAILING_ACTION.match(body.get(style) or "") if style in body else None
        if found and 400 <= int(found.group(1)) <= 599:
            return int(found.group(1))
    return None


def _jwt_header(token: str) -> dict[str, Any] | None:
    """The header of a token that looks like a JWT (three base64url parts, a JSON header)."""
    if not _JWT.match(token):
        return None
    try:
        header = json.loads(_b64decode(token.split(".", 1)[0]))
    except (ValueError, binascii.Error):
        return None
    return header if isinstance(header, dict) else None


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
