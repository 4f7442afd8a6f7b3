"""Membrane's ``POST /act`` and ``GET /action-run-logs/{id}``, checked as strictly as the service.

Answers are deterministic: an output's ``id`` is the first 12 hex digits of the SHA-256 of the
canonical /act body, so the same request always gets the same id. Every /act call, failed or
not, creates a run log and carries its ``actionRunId``. An ``id`` or ``key`` of the form
``fail-NNN`` answers HTTP NNN (400-599) with a Membrane error body, for demos and tests.
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

from .server import EmulatorServer, Request, Response

__all__ = ["MembraneService", "register"]

STYLES = ("id", "key", "api", "code")
CONNECTION_FIELDS = ("connectionId", "connectionKey", "integrationId", "integrationKey")
ALLOWED_FIELDS = frozenset(STYLES + CONNECTION_FIELDS + ("input", "meta"))
API_FIELDS = frozenset({"method", "path", "query", "headers", "body"})
HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
FAILING_ACTION = re.compile(r"^fail-(\d{3})$")
_JWT = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$")
_ERROR_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    422: "bad_request",
    429: "rate_limit_exceeded",
}


def error_type(status: int) -> str:
    """Membrane's error ``type`` for an HTTP status."""
    if status in _ERROR_TYPES:
        return _ERROR_TYPES[status]
    return "internal_error" if status >= 500 else "bad_request"


def canonical(value: Any) -> str:
    """Canonical JSON: sorted keys, no spaces (the input of every stable id)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def stable_id(body: Any) -> str:
    """The output id of an /act body: same body, same id."""
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()[:12]


class _Reject(Exception):
    """A request Membrane would refuse: HTTP status, error type and key, message."""

    def __init__(self, status: int, key: str, message: str, type_: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.key = key
        self.message = message
        self.type = type_ or error_type(status)


class MembraneService:
    """The Membrane side of the emulator: request checks, dispatch and the run logs."""

    def __init__(self, workspace_secret: str | None = None) -> None:
        self.workspace_secret = workspace_secret
        self._lock = threading.Lock()
        self._counter = 0
        self._runs: dict[str, dict[str, Any]] = {}

    def register(self, server: EmulatorServer) -> None:
        """Add the Membrane routes to ``server``."""
        server.add_route("POST", r"/act", self.act, action_of=action_of, error=self.act_error)
        server.add_route(
            "GET", r"/action-run-logs/(?P<run_id>[^/]+)", self.run_log, error=self.plain_error
        )
        server.on_reset(self.reset)

    def reset(self) -> None:
        """Forget every run log and restart the run counter."""
        with self._lock:
            self._counter = 0
            self._runs.clear()

    # -- routes -------------------------------------------------------------------------------

    def act(self, request: Request) -> Response:
        """``POST /act``."""
        try:
            self.check_auth(request)
            body = check_act_body(request)
            failing = _failing_status(body)
            if failing is not None:
                value = body.get("id", body.get("key"))
                raise _Reject(
                    failing,
                    "action_failed",
                    f"action {value!r} failed with HTTP {failing} (built-in failing action)",
                    "action_failed",
                )
        except _Reject as reject:
            return self.act_error(request, reject.status, reject.message, reject.key, reject.type)
        output = dispatch(body)
        run_id = self._save_run(request, "output", output)
        return Response(200, {"output": output, "actionRunId": run_id})

    def run_log(self, request: Request) -> Response:
        """``GET /action-run-logs/{id}``."""
        try:
            self.check_auth(request)
        except _Reject as reject:
            return self.plain_error(request, reject.status, reject.message, reject.key)
        run_id = request.params["run_id"]
        with self._lock:
            log = self._runs.get(run_id)
            log = json.loads(json.dumps(log)) if log is not None else None
        if log is None:
            message = f"action run log {run_id!r} not found"
            return self.plain_error(request, 404, message, "run_log_not_found")
        return Response(200, log)

    # -- errors -------------------------------------------------------------------------------

    def act_error(
        self,
        request: Request,
        status: int,
        message: str,
        key: str = "injected_fault",
        type_: str | None = None,
    ) -> Response:
        """An /act error: logged as a failed run, answered with its ``actionRunId``."""
        error: dict[str, Any] = {
            "type": type_ or error_type(status),
            "key": key,
            "message": message,
            "data": {},
        }
        run_id = self._save_run(request, "error", error)
        error["data"]["actionRunId"] = run_id
        return Response(status, {**error, "actionRunId": run_id})

    def plain_error(
        self, request: Request, status: int, message: str, key: str = "injected_fault"
    ) -> Response:
        """An error outside /act: Membrane's shape, without a run id."""
        body = {"type": error_type(status), "key": key, "message": message, "data": {}}
        return Response(status, body)

    # -- checks -------------------------------------------------------------------------------

    def check_auth(self, request: Request) -> None:
        """Require ``Authorization: Bearer <token>``; a JWT must be current (and signed)."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _Reject(401, "missing_token", "missing Authorization: Bearer <token> header")
        jwt_header = _jwt_header(token)
        if jwt_header is not None:
            self._check_jwt(token, jwt_header)

    def _check_jwt(self, token: str, header: dict[str, Any]) -> None:
        head_b64, payload_b64, signature_b64 = token.split(".")
        try:
            claims = json.loads(_b64decode(payload_b64))
        except (ValueError, binascii.Error):
            claims = None
        if not isinstance(claims, dict):
            raise _Reject(401, "invalid_token", "the token's payload is not a JSON object")
        if not isinstance(claims.get("iss"), str) or not claims["iss"]:
            raise _Reject(401, "invalid_token", "the token has no 'iss' claim")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool):
            raise _Reject(401, "invalid_token", "the token has no numeric 'exp' claim")
        if exp <= time.time():
            raise _Reject(401, "token_expired", "the token has expired")
        if self.workspace_secret is None:
            return
        if header.get("alg") != "HS256":
            raise _Reject(401, "invalid_token", "the token is not signed with HS256")
        signed = f"{head_b64}.{payload_b64}".encode("ascii")
        digest = hmac.new(self.workspace_secret.encode("utf-8"), signed, hashlib.sha256).digest()
        expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
        if not hmac.compare_digest(expected, signature_b64):
            raise _Reject(401, "invalid_token", "the token's signature does not verify")

    # -- run logs -----------------------------------------------------------------------------

    def _save_run(self, request: Request, outcome: str, value: Any) -> str:
        action = request.body
        basis = canonical(action) if request.is_json else request.raw.decode("utf-8", "replace")
        with self._lock:
            self._counter += 1
            seed = f"{basis}\n{self._counter}".encode()
            run_id = "run_" + hashlib.sha256(seed).hexdigest()[:16]
            self._runs[run_id] = json.loads(
                json.dumps(
                    {
                        "id": run_id,
                        "status": "success" if outcome == "output" else "error",
                        "action": action,
                        outcome: value,
                        "createdAt": _now(),
                    }
                )
            )
        return run_id


def register(server: EmulatorServer, *, workspace_secret: str | None = None) -> MembraneService:
    """Add the Membrane routes to ``server``; returns the service (its run logs live there)."""
    service = MembraneService(workspace_secret)
    service.register(server)
    return service


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
        raise _Reject(400, "invalid_body", "the request body must be a JSON object")
    unknown = sorted(set(body) - ALLOWED_FIELDS)
    if unknown:
        raise _Reject(400, "unknown_field", f"unknown field(s): {', '.join(unknown)}")
    styles = [style for style in STYLES if style in body]
    if len(styles) != 1:
        found = f" (got {', '.join(styles)})" if styles else ""
        raise _Reject(400, "dispatch_style", f"exactly one of id, key, api, code{found}")
    style = styles[0]
    if style == "api":
        _check_api(body["api"])
    elif not isinstance(body[style], str) or not body[style]:
        raise _Reject(400, "invalid_field", f"'{style}' must be a non-empty string")
    for name in CONNECTION_FIELDS:
        if name in body and (not isinstance(body[name], str) or not body[name]):
            raise _Reject(400, "invalid_field", f"'{name}' must be a non-empty string")
    if "meta" in body and not isinstance(body["meta"], dict):
        raise _Reject(400, "invalid_field", "'meta' must be an object")
    if style in ("api", "code") and not any(name in body for name in CONNECTION_FIELDS):
        raise _Reject(
            400,
            "connection_not_resolved",
            f"'{style}' needs a connection: give one of {', '.join(CONNECTION_FIELDS)}",
        )
    return body


def _check_api(api: Any) -> None:
    if not isinstance(api, dict):
        raise _Reject(400, "invalid_field", "'api' must be an object")
    unknown = sorted(set(api) - API_FIELDS)
    if unknown:
        raise _Reject(400, "unknown_field", f"unknown api field(s): {', '.join(unknown)}")
    method = api.get("method")
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise _Reject(400, "invalid_field", "'api.method' must be an HTTP method")
    if not isinstance(api.get("path"), str) or not api["path"]:
        raise _Reject(400, "invalid_field", "'api.path' must be a non-empty string")
    for name in ("query", "headers"):
        if name in api and not isinstance(api[name], dict):
            raise _Reject(400, "invalid_field", f"'api.{name}' must be an object")


def dispatch(body: dict[str, Any]) -> Any:
    """The deterministic output of a checked /act body."""
    ident = stable_id(body)
    if "api" in body:
        api = body["api"]
        return {
            "method": api["method"],
            "path": api["path"],
            "query": api.get("query", {}),
            "body": api.get("body"),
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


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
