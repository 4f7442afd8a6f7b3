"""What the built-in providers share that needs no httpx: URLs and queries, TLS settings,
reading answers, and the connection made (importing httpx) when a provider first sends.

``runbook plan`` imports the provider modules to build their requests; only sending imports
httpx (through :func:`connect`).
"""

from __future__ import annotations

import base64
import email.utils
import json
import os
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlencode, urlsplit

from engine.providers.base import ProviderError, Request

if TYPE_CHECKING:
    from engine.providers._http import Connection

__all__ = ["TLS", "tls_settings", "connect", "query_pairs", "with_query", "classify", "retry_after",
           "parse_body", "parse_answer", "error_message", "describe", "check_expected_input"]


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


def connect(tls: TLS) -> Connection:
    """A keep-alive connection that sends :class:`~engine.providers.base.Request` objects
    (the first call imports httpx)."""
    from engine.providers import _http

    return _http.Connection(tls)


class LazyConnection:
    """A provider's :class:`~engine.providers._http.Connection`, made on its first send (which
    imports httpx), once, whichever of a fan-out's threads sends first."""

    def __init__(self, tls: TLS) -> None:
        self._tls = tls
        self._connection: Connection | None = None
        self._lock = threading.Lock()

    def send(self, request: Request, timeout: float | None,
             credentials: Mapping[str, str] | None = None) -> Any:
        """Send ``request`` (see :meth:`Connection.send`)."""
        connection = self._connection
        if connection is None:
            with self._lock:
                if self._connection is None:
                    self._connection = connect(self._tls)
                connection = self._connection
        return connection.send(request, timeout, credentials)

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None


# -- URLs -------------------------------------------------------------------------------------


def _query_text(value: Any) -> str:
    # what httpx makes of a query parameter's value: JSON-style booleans, null as empty
    if value is True:
        return "true"
    if value is False:
        return "false"
    return "" if value is None else str(value)


def query_pairs(query: Any) -> list[tuple[str, str]]:
    """A step's ``query`` mapping as (name, value) pairs: a list repeats its name."""
    if not isinstance(query, Mapping):
        return []
    pairs: list[tuple[str, str]] = []
    for key, value in query.items():
        for item in value if isinstance(value, list) else [value]:
            pairs.append((str(key), _query_text(item)))
    return pairs


def with_query(url: str, query: Any) -> str:
    """``url`` with ``query`` appended to its own query (form-encoded, before a ``#fragment``)."""
    pairs = query_pairs(query)
    if not pairs:
        return url
    base, hash_, fragment = url.partition("#")
    return base + ("&" if urlsplit(base).query else "?") + urlencode(pairs) + hash_ + fragment


# -- answers ----------------------------------------------------------------------------------


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


def parse_body(response: Any) -> tuple[Any, bool]:
    """``(value, is_json)``: the parsed JSON body of an httpx response, or its text."""
    content = response.content
    if not content:
        return None, False
    try:
        return json.loads(content), True
    except ValueError:
        return response.text, False


_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript",
               "application/x-www-form-urlencoded", "application/problem+json")


def parse_answer(response: Any) -> Any:
    """An upstream answer as a step's output: its parsed JSON, its text, or, for a binary
    answer (a content type that is not text, or bytes that are not UTF-8), its bytes intact
    as ``{"content_type", "base64", "size"}``."""
    content = response.content
    if not content:
        return None
    ctype = str(response.headers.get("content-type", "")).split(";")[0].strip().lower()
    textual = not ctype or ctype.startswith(_TEXT_TYPES) or ctype.endswith(("+json", "+xml"))
    if textual:
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            textual = False
        else:
            try:
                return json.loads(text)
            except ValueError:
                return text
    return {"content_type": ctype or "application/octet-stream",
            "base64": base64.b64encode(content).decode("ascii"), "size": len(content)}


def error_message(body: Any, status: int) -> str:
    """The provider's own message from an error body, or a short excerpt of it."""
    if isinstance(body, dict):
        for key in ("message", "error_description", "detail", "error"):
            value = body.get(key)
            if isinstance(value, str) and value:
                return value
            if isinstance(value, dict) and isinstance(value.get("message"), str):
                return str(value["message"])
    if isinstance(body, str) and body.strip():
        text = " ".join(body.split())
        return text[:200] + ("..." if len(text) > 200 else "")
    return f"HTTP {status}"


def describe(response: Any) -> str:
    """``123 bytes of text/html``: what an answer that is not the contract's held."""
    ctype = response.headers.get("content-type", "no content type")
    return f"{len(response.content)} bytes of {ctype.split(';')[0]}"


def check_expected_input(expected: Mapping[tuple[str, Any], tuple[Any, str]], call: Any) -> None:
    """Raise a ``configuration`` ProviderError, before anything is sent, when a remote check
    armed this provider for the call's action (see engine/remote_check.py) and the rendered
    input does not match the action's definition."""
    if not expected or not isinstance(call.target, str):
        return
    found = expected.get((call.style, call.target))
    if found is None:
        return
    from engine.remote_check import input_problems

    resolved, where = found
    problems = input_problems(resolved, call.input)
    if problems:
        detail = "; ".join(f"input{''.join(f'.{p}' for p in path)}: {message}" for path, message in problems)
        raise ProviderError("configuration", f"{where}: the rendered input does not match {resolved.provider_type} "
                                             f"action {resolved.action!r} ({resolved.name}, version "
                                             f"{resolved.version}), so it was not sent: {detail}")
