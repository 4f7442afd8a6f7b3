"""A plain HTTP echo API under ``/http/``: what ``--emulate`` gives the http provider.

Any method on ``/http/<path>`` answers 200 with ``{method, path, query, headers, body}``
echoing the request (``path`` without the ``/http`` prefix), so an http step runs offline
and its output shows exactly what was sent.
"""

from __future__ import annotations

from .server import EmulatorServer, Request, Response

__all__ = ["register"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def echo(request: Request) -> Response:
    """Answer with the request itself."""
    return Response(200, {
        "method": request.method,
        "path": "/" + request.params.get("rest", ""),
        "query": dict(request.query),
        "headers": {k: v for k, v in request.headers.items() if k != "authorization"},
        "body": request.body,
    })


def register(server: EmulatorServer) -> None:
    """Add the echo routes to ``server``."""
    for method in _METHODS:
        server.add_route(method, r"/http/(?P<rest>.*)", echo)
