"""A local emulator of the Membrane and Pipedream Connect endpoints, stdlib only.

Use it in-process::

    with start() as emu:
        httpx.post(f"{emu.url}/act", ...)
        emu.add_fault({"action": "send-email"}, status=429, retry_after=2)
        assert emu.requests[-1]["path"] == "/act"

or from another process through the control API (``GET``/``DELETE /_emulator/requests``,
``GET``/``POST /_emulator/faults``, ``POST /_emulator/reset``, ``GET /_emulator/health``).
Each provider module adds its routes with a ``register(server, **options)`` function.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from . import http_echo, membrane, pipedream
from .server import EmulatorServer, FaultRule

__all__ = ["Emulator", "start", "serve_forever"]


def _build(
    host: str,
    port: int,
    *,
    membrane_workspace_secret: str | None = None,
    access_log: Callable[[str], None] | None = None,
) -> EmulatorServer:
    server = EmulatorServer(host, port, access_log=access_log)
    membrane.register(server, workspace_secret=membrane_workspace_secret)
    pipedream.register(server)
    http_echo.register(server)
    return server


class Emulator:
    """A running emulator: its URL, its request log, its fault rules; stop it when done."""

    def __init__(self, server: EmulatorServer) -> None:
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            # stop() waits for the loop's next poll: a short one makes every --emulate run end sooner
            kwargs={"poll_interval": 0.01},
            name=f"runbook-emulator-{server.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    @property
    def url(self) -> str:
        """The base URL, e.g. ``http://127.0.0.1:54321``."""
        return self._server.url

    @property
    def requests(self) -> list[dict[str, Any]]:
        """A copy of the log of provider requests, oldest first."""
        return self._server.requests

    def clear_requests(self) -> None:
        """Empty the request log."""
        self._server.clear_requests()

    def add_fault(
        self,
        match: dict[str, str],
        *,
        status: int | None = None,
        body: object = None,
        delay: float = 0,
        retry_after: str | int | None = None,
        malformed: bool = False,
        drop: bool = False,
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` requests matching ``match`` with a fault.

        ``match`` holds any of ``path``, ``method`` and ``action`` (an /act body's id or key
        value, or ``"api"``/``"code"``; a Pipedream actions/run body's component ``id``, or
        ``"api"`` for the Connect proxy). Raises ValueError on a bad rule.
        """
        self._server.add_fault(
            FaultRule(
                match=dict(match),
                status=status,
                body=body,
                delay=delay,
                retry_after=retry_after,
                malformed=malformed,
                drop=drop,
                times=times,
            )
        )

    def reset(self) -> None:
        """Clear the request log, the faults and the providers' state (run logs)."""
        self._server.reset()

    def stop(self) -> None:
        """Stop serving and close every connection; safe to call twice."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()

    def __enter__(self) -> Emulator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<Emulator {self.url}>"


def start(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    membrane_workspace_secret: str | None = None,
    access_log: Callable[[str], None] | None = None,
) -> Emulator:
    """Start an emulator in a daemon thread; it is listening when this returns.

    ``port=0`` picks a free port. With ``membrane_workspace_secret``, Membrane JWTs must carry
    a valid HS256 signature. ``access_log`` receives one line per request.
    """
    return Emulator(
        _build(
            host, port, membrane_workspace_secret=membrane_workspace_secret, access_log=access_log
        )
    )


def serve_forever(
    host: str = "127.0.0.1",
    port: int = 8765,
    *,
    on_ready: Callable[[str], None] | None = None,
    membrane_workspace_secret: str | None = None,
    access_log: Callable[[str], None] | None = None,
) -> None:
    """Serve in the calling thread until interrupted (``runbook emulate``).

    ``on_ready`` gets the URL once the socket listens. KeyboardInterrupt propagates after the
    server is closed.
    """
    server = _build(
        host, port, membrane_workspace_secret=membrane_workspace_secret, access_log=access_log
    )
    try:
        if on_ready is not None:
            on_ready(server.url)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
