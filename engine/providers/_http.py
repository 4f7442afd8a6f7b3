"""The one boundary between httpx and the engine: a :class:`~engine.providers.base.Request`
becomes an httpx request here, and httpx's exceptions become ProviderErrors.

Providers import this module only when they first send (through ``_common.connect``), so
``runbook plan``, which builds their requests, never imports httpx.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import httpx

from engine import __version__

# re-exported: the answer helpers that need no httpx live in _common
from engine.providers._common import TLS, classify, error_message, parse_body, retry_after, tls_settings
from engine.providers.base import ProviderError, Request

__all__ = ["TLS", "tls_settings", "Connection", "build", "send", "classify", "retry_after", "parse_body",
           "error_message", "USER_AGENT"]

#: Sent by every built-in provider (a step's own User-Agent header replaces it).
USER_AGENT = f"runbook/{__version__}"

_CONTEXTS: dict[str | None, ssl.SSLContext] = {}


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    # Building a context loads the CA bundle (~10 ms): once per bundle and process.
    context = _CONTEXTS.get(ca_bundle)
    if context is None:
        context = _CONTEXTS[ca_bundle] = (ssl.create_default_context(cafile=ca_bundle) if ca_bundle
                                          else httpx.create_ssl_context(trust_env=False))
    return context


_VERIFY = TLS()


class _VerifiedTransport(httpx.BaseTransport):
    """The transport of https requests, made on their first use: building its SSL context
    loads the CA bundle (~15 ms), which a run against http:// URLs never needs."""

    def __init__(self, tls: TLS) -> None:
        self._tls = tls
        self._transport: httpx.HTTPTransport | None = None
        self._lock = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self._transport is None:
            with self._lock:
                if self._transport is None:
                    self._transport = httpx.HTTPTransport(verify=_ssl_context(self._tls.ca_bundle))
        return self._transport.handle_request(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Connection:
    """Keep-alive httpx clients of one provider instance, sending :class:`Request` objects.

    Each send takes an idle client (or makes one) and gives it back after: one step at a time
    uses one client (one connection kept alive); the items of a fan-out in flight at once each
    use their own, so no request waits on another's connection pool (one client shared by 50
    threads spends its time scanning its pool). Certificates are verified for every https
    request unless the provider block says ``insecure: true``. ``transport`` replaces the
    network (``httpx.MockTransport`` in tests)."""

    def __init__(self, tls: TLS = _VERIFY, transport: httpx.BaseTransport | None = None) -> None:
        self._tls = tls
        self._transport = transport
        self._idle: list[httpx.Client] = []  # list.pop and .append are atomic: no lock needed
        self._clients: list[httpx.Client] = []
        self._idle.append(self._new_client())

    def _new_client(self) -> httpx.Client:
        client = _client(self._tls, self._transport)
        self._clients.append(client)
        return client

    def send(self, request: Request, timeout: float | None,
             credentials: Mapping[str, str] | None = None) -> httpx.Response:
        """Send ``request`` with the values of its ``auth`` headers (``credentials``)."""
        try:
            client = self._idle.pop()
        except IndexError:  # every client is sending: another item is in flight
            client = self._new_client()
        try:
            return send(client, build(client, request, credentials), timeout)
        finally:
            self._idle.append(client)

    def close(self) -> None:
        for client in self._clients:
            client.close()


def build(client: httpx.Client, request: Request,
          credentials: Mapping[str, str] | None = None) -> httpx.Request:
    """The httpx request of ``request`` with ``credentials`` (header name -> value, the
    headers its ``auth`` names) added. A URL, header or body httpx cannot send (a control
    character in a URL, a header that is not ASCII) is a ``configuration`` error."""
    headers = {**request.headers, **(credentials or {})}
    missing = [name for name in request.auth if name not in headers]
    if missing:
        raise ProviderError("configuration", f"no credential for the header {missing[0]} of {request.method}")
    kwargs: dict[str, Any] = {}
    if request.content is not None:
        kwargs["content"] = request.content.encode("utf-8")
    elif request.json is not None:
        kwargs["json"] = request.json
    with _unusable(f"the request {request.method} {request.url!r}"):
        return client.build_request(request.method, request.url, headers=headers, **kwargs)


@contextmanager
def _unusable(what: str) -> Iterator[None]:
    try:
        yield
    except (httpx.InvalidURL, UnicodeError, ValueError, TypeError) as exc:
        raise ProviderError("configuration", f"cannot send {what}: {type(exc).__name__}: {exc}") from None


def _client(tls: TLS, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    headers = {"User-Agent": USER_AGENT}
    if transport is not None:
        return httpx.Client(transport=transport, follow_redirects=False, trust_env=False, headers=headers)
    return httpx.Client(
        headers=headers,
        verify=False,  # the transport of plain http:// requests, which have no certificate
        mounts=None if tls.insecure else {"https://": _VerifiedTransport(tls)},
        follow_redirects=False,
        trust_env=False,
    )


def send(client: httpx.Client, request: httpx.Request, timeout: float | None) -> httpx.Response:
    """Send ``request``; map httpx's exceptions to typed :class:`ProviderError`."""
    request.extensions["timeout"] = httpx.Timeout(timeout).as_dict()
    try:
        response = client.send(request)
        response.read()
        return response
    except httpx.TimeoutException as exc:
        phase = type(exc).__name__.replace("Timeout", "").lower() or "request"
        raise ProviderError(
            "timeout", f"no answer within the per-attempt timeout of {timeout:g}s ({phase})"
            if timeout else f"timed out ({phase})"
        ) from None
    except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError,
            httpx.WriteError, httpx.ProxyError) as exc:
        raise ProviderError(
            "connection", f"connection to {request.url.host}:{request.url.port} failed: {exc}"
        ) from None
    except httpx.HTTPError as exc:
        raise ProviderError("connection", f"HTTP error: {type(exc).__name__}: {exc}") from None
