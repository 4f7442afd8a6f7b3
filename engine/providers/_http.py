"""The one boundary between httpx and the engine: exceptions become ProviderErrors."""

from __future__ import annotations

import email.utils
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple

import httpx

from engine.providers.base import ProviderError

__all__ = ["TLS", "tls_settings", "make_client", "build", "send", "classify", "retry_after", "parse_body",
           "error_message"]

_CONTEXTS: dict[str | None, ssl.SSLContext] = {}


class TLS(NamedTuple):
    """How a provider verifies certificates: always, against ``ca_bundle`` (a PEM file; else
    ``SSL_CERT_FILE``; else the certifi bundle), unless ``insecure`` (then never)."""

    ca_bundle: str | None = None
    insecure: bool = False


def tls_settings(config: Mapping[str, Any], env: Mapping[str, str], name: str) -> TLS:
    """The TLS settings of a provider block (``ca_bundle``, ``insecure``) and the environment."""
    ca_bundle = config.get("ca_bundle") or env.get("SSL_CERT_FILE") or None
    if ca_bundle is not None and not os.path.isfile(str(ca_bundle)):
        origin = "ca_bundle" if config.get("ca_bundle") else "SSL_CERT_FILE"
        raise ProviderError("configuration", f"provider {name!r}: {origin} {ca_bundle} is not a file")
    return TLS(str(ca_bundle) if ca_bundle else None, bool(config.get("insecure")))


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


def make_client(base_url: str, headers: dict[str, str] | None = None, tls: TLS = _VERIFY) -> httpx.Client:
    """One keep-alive client per provider instance. Certificates are verified for every
    https request, whatever the base URL (a step may name an absolute https URL), unless
    the provider block says ``insecure: true``. A base URL or header httpx cannot use is a
    ``configuration`` error."""
    with _unusable(f"the base URL {base_url!r} or a provider header"):
        return _client(base_url, headers, tls)


def build(client: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Request:
    """``client.build_request(...)``; a URL, header or body httpx cannot send (a control
    character in a URL, a header that is not ASCII) is a ``configuration`` error."""
    with _unusable(f"the request {method} {url!r}"):
        return client.build_request(method, url, **kwargs)


@contextmanager
def _unusable(what: str) -> Iterator[None]:
    try:
        yield
    except (httpx.InvalidURL, UnicodeError, ValueError, TypeError) as exc:
        raise ProviderError("configuration", f"cannot send {what}: {type(exc).__name__}: {exc}") from None


def _client(base_url: str, headers: dict[str, str] | None, tls: TLS) -> httpx.Client:
    return httpx.Client(
        base_url=base_url,
        headers=headers or {},
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


def classify(status: int) -> str:
    """The error type of a non-success HTTP status."""
    if status in (401, 403):
        return "authentication"
    if status == 429:
        return "rate_limited"
    if 400 <= status < 500:
        return "client_error"
    if status >= 500:
        return "server_error"
    return "malformed_response"


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def parse_body(response: httpx.Response) -> tuple[Any, bool]:
    """``(value, is_json)``: the parsed JSON body, or its text."""
    content = response.content
    if not content:
        return None, False
    try:
        return json.loads(content), True
    except ValueError:
        return response.text, False


def error_message(body: Any, status: int) -> str:
    """The provider's own message from an error body, or a short excerpt of it."""
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return value["message"]
    if isinstance(body, str) and body.strip():
        text = " ".join(body.split())
        return text[:200] + ("..." if len(text) > 200 else "")
    return f"HTTP {status}"
