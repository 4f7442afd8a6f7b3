"""The emulator's core: a threaded HTTP/1.1 server with a route table, a request log and faults.

Provider modules (``membrane.py``, ``pipedream.py``, ``http_echo.py``) call :meth:`EmulatorServer.add_route`
from a ``register(server, **options)`` function; the core knows nothing about any provider.
Every request outside ``/_emulator/`` is logged, then checked against the fault rules, then
handed to its route's handler. The control routes under ``/_emulator/`` are neither logged
nor faultable.
"""

from __future__ import annotations

import copy
import json
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "CONTROL_PREFIX",
    "EmulatorServer",
    "FaultRule",
    "Request",
    "Response",
    "Route",
]

CONTROL_PREFIX = "/_emulator/"
MALFORMED_BODY = b"<html><body>Bad Gateway</body></html>"
FAULT_MATCH_KEYS = frozenset({"path", "action", "method"})
_MAX_BODY = 64 * 1024 * 1024


@dataclass
class Request:
    """One parsed request, as a handler sees it."""

    method: str
    path: str
    query: dict[str, Any]
    headers: dict[str, str]
    raw: bytes
    body: Any  # parsed JSON, else the text, else None when empty
    is_json: bool
    params: dict[str, str] = field(default_factory=dict)  # the route pattern's named groups
    received_at: float = 0.0  # Unix time the request was read

    def log_entry(self) -> dict[str, Any]:
        """The request as it is recorded in the request log."""
        return {
            "method": self.method,
            "path": self.path,
            "query": dict(self.query),
            "headers": dict(self.headers),
            "body": copy.deepcopy(self.body),
        }


@dataclass
class Response:
    """What a handler answers: a JSON ``body``, or ``raw`` bytes with their content type."""

    status: int = 200
    body: Any = None
    raw: bytes | None = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def payload(self) -> bytes:
        """The encoded body."""
        if self.raw is not None:
            return self.raw
        if self.status == 204:
            return b""
        return json.dumps(self.body, ensure_ascii=False).encode("utf-8")


Handler = Callable[[Request], Response]
ErrorFactory = Callable[[Request, int, str], Response]
ActionOf = Callable[[Request], str | None]


_ERROR_TYPES = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}


def generic_error(request: Request, status: int, message: str) -> Response:
    """A provider-neutral error body, used where no route gives its own shape."""
    return Response(status, {"type": _ERROR_TYPES.get(status, "error"), "message": message})


@dataclass
class Route:
    """A route: method, full-match pattern, handler, and how faults see it.

    ``action_of`` names the action a request runs (for a fault's ``action`` match); ``error``
    builds the provider-shaped body of an injected status or of a handler crash.
    """

    method: str
    pattern: re.Pattern[str]
    handler: Handler
    action_of: ActionOf | None = None
    error: ErrorFactory = generic_error


@dataclass
class FaultRule:
    """An injected fault: which requests it matches, what it does, and how many times."""

    match: dict[str, str]
    status: int | None = None
    body: Any = None
    delay: float = 0
    retry_after: str | int | None = None
    malformed: bool = False
    drop: bool = False
    times: int = 1

    @classmethod
    def from_dict(cls, data: Any) -> FaultRule:
        """Build and check a rule from JSON-like data (the control API's body)."""
        if not isinstance(data, dict):
            raise ValueError("a fault must be a JSON object")
        known = {"match", "status", "body", "delay", "retry_after", "malformed", "drop", "times"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault field(s): {', '.join(unknown)}")
        rule = cls(**{"match": {}, **data})
        rule.check()
        return rule

    def check(self) -> None:
        """Raise ValueError when a field has the wrong type or value."""
        if not isinstance(self.match, dict):
            raise ValueError("match must be an object")
        unknown = sorted(set(self.match) - FAULT_MATCH_KEYS)
        if unknown:
            raise ValueError(f"unknown match key(s): {', '.join(unknown)}")
        if not all(isinstance(v, str) for v in self.match.values()):
            raise ValueError("match values must be strings")
        if self.status is not None and not (_is_int(self.status) and 100 <= self.status <= 599):
            raise ValueError("status must be an HTTP status code")
        if not isinstance(self.delay, (int, float)) or isinstance(self.delay, bool):
            raise ValueError("delay must be a number of seconds")
        if self.delay < 0:
            raise ValueError("delay must not be negative")
        if self.retry_after is not None and not (
            isinstance(self.retry_after, str) or _is_int(self.retry_after)
        ):
            raise ValueError("retry_after must be an integer or an HTTP-date string")
        if not isinstance(self.malformed, bool) or not isinstance(self.drop, bool):
            raise ValueError("malformed and drop must be booleans")
        if not _is_int(self.times) or self.times < 1:
            raise ValueError("times must be a positive integer")

    def matches(self, request: Request, route: Route | None) -> bool:
        """Whether every key of ``match`` agrees with the request."""
        for key, want in self.match.items():
            if key == "path" and request.path != want:
                return False
            if key == "method" and request.method != want.upper():
                return False
            if key == "action":
                got = route.action_of(request) if route and route.action_of else None
                if got != want:
                    return False
        return True

    def as_dict(self) -> dict[str, Any]:
        """The rule as JSON-ready data (``times`` is what is left)."""
        return {
            "match": dict(self.match),
            "status": self.status,
            "body": self.body,
            "delay": self.delay,
            "retry_after": self.retry_after,
            "malformed": self.malformed,
            "drop": self.drop,
            "times": self.times,
        }


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class EmulatorServer(ThreadingHTTPServer):
    """A loopback HTTP/1.1 server holding the routes, the request log and the fault rules."""

    daemon_threads = True
    allow_reuse_address = True
    #: the listen backlog: socketserver's default of 5 resets connections when a fan-out opens
    #: a hundred at once, which no real service does
    request_queue_size = socket.SOMAXCONN

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_log: Callable[[str], None] | None = None,
    ) -> None:
        if ":" in host:
            self.address_family = socket.AF_INET6
        self.routes: list[Route] = []
        self.access_log = access_log
        self._lock = threading.Lock()
        self._log: list[dict[str, Any]] = []
        self._faults: list[FaultRule] = []
        self._in_flight = 0  # provider requests being answered now
        self._reset_hooks: list[Callable[[], None]] = []
        self._connections: set[socket.socket] = set()
        super().__init__((host, port), _RequestHandler)

    # -- set-up -------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        host, port = self.server_address[:2]
        if isinstance(host, bytes):
            host = host.decode()
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}"

    def add_route(
        self,
        method: str,
        pattern: str,
        handler: Handler,
        *,
        action_of: ActionOf | None = None,
        error: ErrorFactory | None = None,
    ) -> None:
        """Register a provider route; ``pattern`` must match the whole path."""
        self.routes.append(
            Route(method.upper(), re.compile(pattern), handler, action_of, error or generic_error)
        )

    def on_reset(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` on every reset (a provider drops its state there)."""
        self._reset_hooks.append(hook)

    # -- log and faults -----------------------------------------------------------------------

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A deep copy of the request log."""
        with self._lock:
            return copy.deepcopy(self._log)

    def record(self, request: Request) -> None:
        """Append a request to the log, with ``in_flight`` (how many provider requests were
        being answered when it arrived, itself included: a fan-out's overlap shows there) and
        ``received_at`` (Unix time)."""
        entry = request.log_entry()
        with self._lock:
            entry["in_flight"] = self._in_flight
            entry["received_at"] = time.time()
            self._log.append(entry)

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self._log.clear()

    def add_fault(self, rule: FaultRule) -> None:
        """Append a checked fault rule (rules are tried in the order they were added)."""
        rule.check()
        with self._lock:
            self._faults.append(rule)

    @property
    def faults(self) -> list[dict[str, Any]]:
        """The rules that still have answers left."""
        with self._lock:
            return [rule.as_dict() for rule in self._faults]

    def take_fault(self, request: Request, route: Route | None) -> FaultRule | None:
        """The first rule matching the request with answers left, consuming one answer."""
        with self._lock:
            for rule in self._faults:
                if rule.matches(request, route):
                    rule.times -= 1
                    if rule.times <= 0:
                        self._faults.remove(rule)
                    return rule
        return None

    def reset(self) -> None:
        """Clear the log, the faults and every provider's state."""
        with self._lock:
            self._log.clear()
            self._faults.clear()
        for hook in self._reset_hooks:
            hook()

    # -- connections --------------------------------------------------------------------------

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def server_close(self) -> None:
        """Close the listening socket and every kept-alive connection.

        Without this, a client's idle keep-alive connection would still be served by its
        (daemon) handler thread after the emulator was stopped.
        """
        super().server_close()
        with self._lock:
            open_connections = list(self._connections)
        for conn in open_connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    # -- dispatch -----------------------------------------------------------------------------

    def resolve(self, request: Request) -> tuple[Route | None, bool]:
        """The route for a request, and whether its path is known under another method."""
        path_known = False
        for route in self.routes:
            found = route.pattern.fullmatch(request.path)
            if found is None:
                continue
            path_known = True
            if route.method == request.method:
                request.params = found.groupdict()
                return route, True
        return None, path_known

    def control(self, request: Request) -> Response:
        """Answer a control-API request (``/_emulator/...``)."""
        name = request.path[len(CONTROL_PREFIX) :].rstrip("/")
        method = request.method
        if name == "requests" and method == "GET":
            return Response(200, self.requests)
        if name == "requests" and method == "DELETE":
            self.clear_requests()
            return Response(204)
        if name == "faults" and method == "GET":
            return Response(200, self.faults)
        if name == "faults" and method == "POST":
            if not request.is_json:
                return generic_error(request, 400, "the body must be a JSON fault object")
            try:
                rule = FaultRule.from_dict(request.body)
            except (TypeError, ValueError) as exc:
                return generic_error(request, 400, str(exc))
            self.add_fault(rule)
            return Response(201, rule.as_dict())
        if name == "reset" and method == "POST":
            self.reset()
            return Response(204)
        if name == "health" and method == "GET":
            return Response(200, {"status": "ok"})
        return generic_error(request, 404, f"no control route {method} {request.path}")

    def answer(self, request: Request) -> Response | None:
        """The response to a provider request, or None to drop the connection."""
        with self._lock:
            self._in_flight += 1
        try:
            self.record(request)
            return self._answer(request)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _answer(self, request: Request) -> Response | None:
        route, path_known = self.resolve(request)
        rule = self.take_fault(request, route)
        error = route.error if route else generic_error
        if rule is not None:
            if rule.delay:
                time.sleep(rule.delay)
            if rule.drop:
                return None
            response = self._faulted(request, route, rule, error)
        elif route is None:
            message = f"no route for {request.method} {request.path}"
            response = generic_error(request, 405 if path_known else 404, message)
        else:
            response = self._handle(request, route)
        if rule is not None and rule.retry_after is not None:
            response.headers["Retry-After"] = str(rule.retry_after)
        return response

    def _faulted(
        self, request: Request, route: Route | None, rule: FaultRule, error: ErrorFactory
    ) -> Response:
        if rule.malformed:
            return Response(rule.status or 200, raw=MALFORMED_BODY, content_type="text/html")
        if rule.status is None and rule.body is None:
            # Only a delay and/or a Retry-After: the normal answer follows.
            if route is None:
                return generic_error(request, 404, f"no route for {request.method} {request.path}")
            return self._handle(request, route)
        status = rule.status or 200
        if rule.body is None:
            return error(request, status, f"injected fault: HTTP {status}")
        if isinstance(rule.body, str):
            return Response(status, raw=rule.body.encode("utf-8"), content_type="text/plain")
        return Response(status, copy.deepcopy(rule.body))

    def _handle(self, request: Request, route: Route) -> Response:
        try:
            return route.handler(request)
        except Exception as exc:  # a bug in a handler must not kill the connection
            return route.error(request, 500, f"emulator error: {type(exc).__name__}: {exc}")


class _RequestHandler(BaseHTTPRequestHandler):
    """Parses one request, asks the server for the answer, writes it with Content-Length."""

    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    server_version = "runbook-emulator/1"
    disable_nagle_algorithm = True
    timeout = 300  # an idle keep-alive connection frees its thread after this

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815

    def _dispatch(self) -> None:
        try:
            request = self._read_request()
        except ValueError as exc:
            self.send_error(400, str(exc))
            return
        if request.path.startswith(CONTROL_PREFIX):
            response: Response | None = self.server.control(request)
        else:
            response = self.server.answer(request)
        if response is None:
            self.close_connection = True  # drop: close the socket without a word
            self._access(request, "dropped")
            return
        self._write(response)
        self._access(request, str(response.status))

    def _read_request(self) -> Request:
        parts = urlsplit(self.path)
        query: dict[str, Any] = {}
        for key, values in parse_qs(parts.query, keep_blank_values=True).items():
            query[key] = values[0] if len(values) == 1 else values
        headers = {key.lower(): value for key, value in self.headers.items()}
        raw = self._read_body(headers)
        body: Any = None
        is_json = False
        if raw:
            text = raw.decode("utf-8", errors="replace")
            try:
                body, is_json = json.loads(text), True
            except ValueError:
                body = text
        return Request(self.command, parts.path or "/", query, headers, raw, body, is_json,
                       received_at=time.time())

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length_text = headers.get("content-length")
        if not length_text:
            return b""
        try:
            length = int(length_text)
        except ValueError:
            raise ValueError("bad Content-Length") from None
        if length < 0 or length > _MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length)

    def _read_chunked(self) -> bytes:
        chunks: list[bytes] = []
        while True:
            size_line = self.rfile.readline(1024).split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ValueError("bad chunk size") from None
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(chunks)
            chunks.append(self.rfile.read(size))
            self.rfile.readline(1024)

    def _write(self, response: Response) -> None:
        # The head and the body go out in one write: two small writes cost a round trip each
        # on a kept-alive connection.
        payload = response.payload()
        phrase = self.responses.get(response.status, ("",))[0]
        head = [
            f"{self.protocol_version} {response.status} {phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
        ]
        if response.status != 204:  # a 204 has neither a body nor a Content-Length
            head.append(f"Content-Type: {_content_type(response.content_type)}")
            head.append(f"Content-Length: {len(payload)}")
        head.extend(f"{name}: {value}" for name, value in response.headers.items())
        self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload)

    def _access(self, request: Request, outcome: str) -> None:
        if self.server.access_log is not None:
            self.server.access_log(f"{request.method} {self.path} {outcome}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        """Silence http.server's stderr lines; ``access_log`` replaces them."""


def _content_type(content_type: str) -> str:
    if "charset" in content_type or not content_type.startswith(("text/", "application/json")):
        return content_type
    return f"{content_type}; charset=utf-8"
