"""A minimal loopback HTTP/1.1 keep-alive server for the benchmark (not the emulator).

It answers just enough of Membrane and Pipedream Connect for a chain of
dependent steps, as fast as pure Python allows: hand-written request parsing
(an ``asyncio.Protocol`` class, no ``http.server``, no framework) driven either
by one blocking thread per connection (the default: on a chain of sequential
requests over one keep-alive connection it costs about half what an asyncio
event loop costs per request) or by an asyncio loop (``--impl asyncio``):

* ``POST /act`` (Membrane): ``{"output": {<input>..., "value": n + 1}, "actionRunId": "run_<k>"}``
  where ``n`` is ``input.n`` (0 if absent). A request without ``Authorization`` gets a 401.
* ``POST /v1/oauth/token`` (Pipedream): a client-credentials token.
* ``POST /v1/connect/{project}/actions/run`` (Pipedream): ``{"exports": {...}, "os": [],
  "ret": {<configured_props>..., "value": n + 1}, "stash_id": null}``.
* ``GET /health``: ``{"ok": true}``.

Run it as its own process so that it does not share the measured process's GIL::

    python bench/server.py [--host 127.0.0.1] [--port 0] [--impl threads|asyncio] [--max-seconds 3600]
                           [--delay-ms 0] [--log-times FILE]

It prints ``listening http://HOST:PORT`` on its first line of stdout, then
serves until its stdin is closed (the benchmark holds the other end), it gets
SIGTERM/SIGINT, or ``--max-seconds`` have passed.

``--delay-ms N`` holds every answer N ms after its request arrived, as a remote
API's latency would, without holding up any other connection: the threads
implementation sleeps in the connection's own thread, the asyncio one sets a
timer on the loop (what ``await asyncio.sleep`` does, without a task per request).
Answers to pipelined requests keep their order. At 50-100 connections and 20 ms, the
threads implementation gives 98-99% of the most C clients can get (C / 20 ms requests/s),
the asyncio loop 90-94% (its timers fire late by the loop's millisecond-rounded waits and
the turns of the other connections), for about 50-70 us of CPU per request either way:
``bench/fanout.py`` uses threads. ``--log-times FILE`` records when
each POST arrived (``time.monotonic()`` seconds, one a line, in arrival order) and
writes them to FILE when the server stops: the fan-out benchmark measures the rate
a ``rate_limit`` achieves from them.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import signal
import socket
import sys
import threading
import time
from typing import Any

_REASONS = {200: b"OK", 400: b"Bad Request", 401: b"Unauthorized", 404: b"Not Found",
            405: b"Method Not Allowed", 413: b"Payload Too Large", 501: b"Not Implemented"}
_MAX_HEAD = 64 * 1024
_MAX_BODY = 16 * 1024 * 1024
_run_ids = itertools.count(1)


def _next_value(data: Any) -> dict[str, Any]:
    """``data`` (a mapping) echoed, plus ``value``: its ``n`` plus one."""
    out = dict(data) if isinstance(data, dict) else {}
    n = out.get("n", 0)
    if isinstance(n, bool):
        n = int(n)
    elif isinstance(n, str):
        try:
            n = int(n.strip())
        except ValueError:
            n = 0
    elif not isinstance(n, (int, float)):
        n = 0
    out["value"] = n + 1
    return out


def _json(status: int, payload: Any) -> tuple[int, bytes]:
    return status, json.dumps(payload, separators=(",", ":")).encode()


def route(method: bytes, target: bytes, auth: bytes | None, body: bytes) -> tuple[int, bytes]:
    """The status and JSON body that answer one request."""
    path = target.split(b"?", 1)[0]
    if path == b"/health":
        return _json(200, {"ok": True})
    if method != b"POST":
        return _json(405, {"type": "method_not_allowed", "message": "POST only"})
    if path == b"/v1/oauth/token":
        return _json(200, {"access_token": "bench-access-token", "token_type": "Bearer",
                           "expires_in": 3600, "created_at": int(time.time())})
    is_act = path == b"/act"
    is_pd = path.startswith(b"/v1/connect/") and path.endswith(b"/actions/run")
    if not (is_act or is_pd):
        return _json(404, {"type": "not_found", "message": f"no route {path.decode('latin-1')}"})
    if not auth or not auth.startswith(b"Bearer "):
        return _json(401, {"type": "unauthorized", "message": "missing bearer token"})
    try:
        request = json.loads(body) if body else {}
    except ValueError:
        return _json(400, {"type": "bad_request", "message": "body is not JSON"})
    if not isinstance(request, dict):
        return _json(400, {"type": "bad_request", "message": "body is not a JSON object"})
    run_id = f"run_{next(_run_ids)}"
    if is_act:
        return _json(200, {"output": _next_value(request.get("input")), "actionRunId": run_id})
    return _json(200, {"exports": {"$summary": f"ran {request.get('id')}"}, "os": [],
                       "ret": _next_value(request.get("configured_props")), "stash_id": None})


class HttpProtocol(asyncio.Protocol):
    """One keep-alive connection: parse pipelined requests out of a buffer, answer each.

    ``delay`` (seconds) is how long after its request arrived an answer is due; this class
    answers at once and leaves waiting to its subclasses (:meth:`_respond`). ``times``, when
    given, gets the arrival time of every POST appended (a list is safe to append to from
    many threads).
    """

    def __init__(self, delay: float = 0.0, times: list[float] | None = None) -> None:
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.delay = delay
        self.times = times
        self.closing = False  # an answer that closes the connection is on its way: parse no more

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic()
        due = arrived + self.delay
        self.buf += data
        while self.transport is not None and not self.closing:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > _MAX_HEAD:
                    self._respond(413, b"{}", close=True, due=due)
                return
            lines = bytes(self.buf[:end]).split(b"\r\n")
            try:
                method, target, version = lines[0].split(b" ", 2)
            except ValueError:
                self._respond(400, b'{"message":"bad request line"}', close=True, due=due)
                return
            length = 0
            close = version != b"HTTP/1.1"
            auth: bytes | None = None
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        length = -1
                elif name == b"connection":
                    token = value.strip().lower()
                    close = token == b"close" or (close and token != b"keep-alive")
                elif name == b"authorization":
                    auth = value.strip()
                elif name == b"transfer-encoding":
                    self._respond(501, b'{"message":"chunked bodies are not supported"}', close=True, due=due)
                    return
            if length < 0 or length > _MAX_BODY:
                self._respond(400, b'{"message":"bad content-length"}', close=True, due=due)
                return
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4:total])
            del self.buf[:total]
            if self.times is not None and method == b"POST":
                self.times.append(arrived)
            status, payload = route(method, target, auth, body)
            self._respond(status, payload, close=close, due=due)

    def _respond(self, status: int, payload: bytes, *, close: bool, due: float) -> None:
        """Answer a request whose answer is due at ``due`` (``time.monotonic()``); here: now."""
        self.closing = self.closing or close
        self._answer(status, payload, close=close)

    def _answer(self, status: int, payload: bytes, *, close: bool) -> None:
        transport = self.transport
        if transport is None:
            return
        head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n%s\r\n"
                % (status, _REASONS.get(status, b"Status"), len(payload),
                   b"Connection: close\r\n" if close else b""))
        transport.write(head + payload)
        if close:
            transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


class LoopProtocol(HttpProtocol):
    """:class:`HttpProtocol` on an asyncio loop: a delayed answer waits on a timer, so the loop
    goes on serving every other connection. One timer per connection at a time, for the
    oldest answer not yet sent: answers leave in the order their requests came."""

    def __init__(self, delay: float = 0.0, times: list[float] | None = None) -> None:
        super().__init__(delay, times)
        self._pending: collections.deque[tuple[float, int, bytes, bool]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None

    def _respond(self, status: int, payload: bytes, *, close: bool, due: float) -> None:
        self.closing = self.closing or close
        if not self.delay:
            self._answer(status, payload, close=close)
            return
        self._pending.append((due, status, payload, close))
        if self._timer is None:
            self._schedule()

    def _schedule(self) -> None:
        wait = max(0.0, self._pending[0][0] - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(wait, self._flush)

    def _flush(self) -> None:
        """The timer of the oldest pending answer: send it and every other one now due."""
        self._timer = None
        now = time.monotonic()
        while self._pending and self.transport is not None:
            _, status, payload, close = self._pending.popleft()
            self._answer(status, payload, close=close)
            if self._pending and self._pending[0][0] > now:
                self._schedule()
                return

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()


class ThreadProtocol(HttpProtocol):
    """:class:`HttpProtocol` in a connection's own thread: a delayed answer sleeps in that
    thread, which holds up nothing but this connection (whose next request, HTTP/1.1 being
    sequential, waits for this answer anyway)."""

    def _respond(self, status: int, payload: bytes, *, close: bool, due: float) -> None:
        wait = due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        super()._respond(status, payload, close=close, due=due)


class _SocketTransport:
    """What :class:`HttpProtocol` needs of a transport, over a blocking socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def write(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


def _serve_connection(sock: socket.socket, delay: float, times: list[float] | None) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    protocol = ThreadProtocol(delay, times)
    protocol.transport = _SocketTransport(sock)  # type: ignore[assignment]
    try:
        while protocol.transport is not None:
            data = sock.recv(65536)
            if not data:
                break
            protocol.data_received(data)
    except OSError:
        pass
    finally:
        sock.close()


def _watch_stdin(stop: threading.Event, wake: Any = None) -> None:
    """Stop when the parent closes our stdin (or dies)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    stop.set()
    if wake is not None:
        wake()


def serve_threads(host: str, port: int, max_seconds: float, watch_stdin: bool, *, delay: float = 0.0,
                  times: list[float] | None = None) -> None:
    """One blocking thread per connection: the least work per request on a sequential keep-alive chain."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    if watch_stdin:
        threading.Thread(target=_watch_stdin, args=(stop,), daemon=True).start()
    with socket.create_server((host, port), backlog=128) as listener:
        listener.settimeout(0.2)
        bound = listener.getsockname()
        print(f"listening http://{bound[0]}:{bound[1]}", flush=True)
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except (TimeoutError, InterruptedError):
                continue
            conn.settimeout(None)
            threading.Thread(target=_serve_connection, args=(conn, delay, times), daemon=True).start()


async def serve_asyncio(host: str, port: int, max_seconds: float, watch_stdin: bool, *, delay: float = 0.0,
                        times: list[float] | None = None) -> None:
    """The same protocol on an asyncio event loop (more per-request overhead on one connection)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server = await loop.create_server(lambda: LoopProtocol(delay, times), host, port, reuse_address=True,
                                      backlog=128)
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    if watch_stdin:
        flag = threading.Event()
        threading.Thread(target=_watch_stdin, args=(flag, lambda: loop.call_soon_threadsafe(stop.set)),
                         daemon=True).start()
    bound = server.sockets[0].getsockname()
    print(f"listening http://{bound[0]}:{bound[1]}", flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except asyncio.TimeoutError:
        pass
    server.close()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--max-seconds", type=float, default=3600.0, help="stop after this long")
    parser.add_argument("--impl", choices=("threads", "asyncio"), default="threads",
                        help="blocking thread per connection (default, faster here) or an asyncio loop")
    parser.add_argument("--no-stdin-watch", action="store_true",
                        help="do not stop when stdin closes (for running it by hand)")
    parser.add_argument("--delay-ms", type=float, default=0.0,
                        help="answer every request this many ms after it arrived (other connections go on)")
    parser.add_argument("--log-times", metavar="FILE",
                        help="on stopping, write the arrival time of every POST (monotonic seconds, one a line)")
    args = parser.parse_args(argv)
    if not (args.host.startswith("127.") or args.host in ("localhost", "::1")):
        parser.error("the benchmark server listens on loopback only")
    if args.delay_ms < 0:
        parser.error("--delay-ms cannot be negative")
    delay = args.delay_ms / 1000
    times: list[float] | None = [] if args.log_times else None
    if args.impl == "threads":
        serve_threads(args.host, args.port, args.max_seconds, not args.no_stdin_watch, delay=delay, times=times)
    else:
        asyncio.run(serve_asyncio(args.host, args.port, args.max_seconds, not args.no_stdin_watch, delay=delay,
                                  times=times))
    if args.log_times and times is not None:
        with open(args.log_times, "w", encoding="utf-8") as fh:
            fh.writelines(f"{t:.6f}\n" for t in list(times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
