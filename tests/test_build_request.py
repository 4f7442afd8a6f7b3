"""``build_request`` is what ``send`` sends: for every built-in type and dispatch style, the
Request it builds is the request that arrives, at the emulator (the provider's own send, over
loopback) and at an ``httpx.MockTransport`` (byte for byte, through ``_http.Connection``)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from engine.emulator import Emulator
from engine.providers import _http
from engine.providers._common import TLS
from engine.providers.base import ActionCall, ProviderError, Redactor, Request
from engine.providers.http import HttpProvider
from engine.providers.membrane import MembraneProvider
from engine.providers.pipedream import EMULATOR_TOKEN, PipedreamProvider

TOKEN = "tok-build-request"

#: (type, call): every dispatch style of every built-in type, with the options it sends.
CALLS: list[tuple[str, ActionCall]] = [
    ("membrane", ActionCall("id", "find-or-create-company", {"name": "Acme"}, {"connection_key": "hubspot"})),
    ("membrane", ActionCall("key", "enrich-contact", {"id": 7},
                            {"integration_key": "hubspot", "meta": {"source": "test"}})),
    ("membrane", ActionCall("api", {"method": "POST", "path": "/crm/v3/objects", "query": {"limit": 2},
                                    "body": {"email": "jane@example.com"}}, None, {"connection_id": "con_1"})),
    ("membrane", ActionCall("code", "export default async ({ input }) => input", {"a": [1, 2]},
                            {"connection_key": "hubspot"})),
    ("pipedream", ActionCall("id", "slack-send-message", {"text": "hi"},
                             {"version": "1.0.0", "stash_id": "NEW", "external_user_id": "u-2"})),
    ("pipedream", ActionCall("api", {"method": "post", "url": "https://slack.com/api/chat.postMessage?x=1#top",
                                     "query": {"tags": ["a", "b c"], "dry": True, "none": None},
                                     "headers": {"Content-Type": "application/json", "X-Count": 3},
                                     "body": {"channel": "C0123"}}, None, {"account_id": "apn_1"})),
    ("pipedream", ActionCall("api", {"method": "PUT", "url": "https://api.example.com/notes/1",
                                     "body": "plain text, passed through"}, None, {"account_id": "apn_1"})),
    ("pipedream", ActionCall("api", {"url": "https://api.github.com/user"}, None, {"account_id": "apn_1"})),
    ("http", ActionCall("api", {"method": "POST", "path": "/items", "query": {"dry": False, "tags": ["a", "b"]},
                                "headers": {"X-Request": "one", "accept": "text/plain"},
                                "body": {"name": "widget", "count": 3}}, None, {})),
    ("http", ActionCall("api", {"method": "delete", "path": "items/9?force=1"}, None, {"expect_status": [200]})),
]


def _provider(ptype: str, emu: Emulator) -> MembraneProvider | PipedreamProvider | HttpProvider:
    if ptype == "membrane":
        return MembraneProvider("crm", {"base_url": emu.url, "token": TOKEN}, env={}, redactor=Redactor())
    if ptype == "pipedream":
        config = {"base_url": emu.url, "project_id": "proj_abc123", "environment": "production",
                  "token": EMULATOR_TOKEN, "external_user_id": "u-1"}
        return PipedreamProvider("pd", config, env={}, redactor=Redactor())
    config = {"base_url": f"{emu.url}/http/v1", "headers": {"Authorization": f"Bearer {TOKEN}",
                                                            "Accept": "application/json"}}
    return HttpProvider("api", config, env={}, redactor=Redactor())


def _credentials(ptype: str) -> dict[str, str]:
    """The values of a Request's ``auth`` headers, as the provider adds them."""
    return {} if ptype == "http" else {"Authorization": f"Bearer {EMULATOR_TOKEN if ptype == 'pipedream' else TOKEN}"}


def _query(url: str) -> dict[str, Any]:
    return {k: v[0] if len(v) == 1 else v for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def assert_arrived(request: Request, got: dict[str, Any], credentials: dict[str, str], emu: Emulator) -> None:
    """The emulator's log entry ``got`` is ``request`` with ``credentials``."""
    parts = urlsplit(request.url)
    assert f"{parts.scheme}://{parts.netloc}" == emu.url
    assert (got["method"], got["path"], got["query"]) == (request.method, parts.path, _query(request.url))
    assert set(request.auth) == set(credentials)
    for name, value in {**request.headers, **credentials}.items():
        assert got["headers"][name.lower()] == value, name
    assert got["body"] == (request.content if request.content is not None else request.json)


@pytest.fixture
def emulator_log(emu: Emulator) -> Iterator[Emulator]:
    emu.reset()
    yield emu


@pytest.mark.parametrize(("ptype", "call"), CALLS, ids=[f"{t}-{c.style}-{i}" for i, (t, c) in enumerate(CALLS)])
def test_what_build_request_says_is_what_arrives(ptype: str, call: ActionCall, emulator_log: Emulator) -> None:
    emu = emulator_log
    provider = _provider(ptype, emu)
    try:
        request = provider.build_request(call)
        assert provider.build_request(call) == request  # pure: same call, same request
        assert emu.requests == []  # and it sent nothing
        provider.send(call, 10)
        (sent,) = emu.requests
        assert_arrived(request, sent, _credentials(ptype), emu)

        emu.clear_requests()  # replaying the manifest's record sends the same request again
        provider.replay(call.style, provider.request_body(call), 10)
        (replayed,) = emu.requests
        for entry in (sent, replayed):
            del entry["received_at"]  # when each arrived: the one way they differ
        assert replayed == sent
    finally:
        provider.close()


@pytest.mark.parametrize(("ptype", "call"), CALLS, ids=[f"{t}-{c.style}-{i}" for i, (t, c) in enumerate(CALLS)])
def test_a_request_goes_out_byte_for_byte(ptype: str, call: ActionCall, emu: Emulator) -> None:
    provider = _provider(ptype, emu)
    request: Request = provider.build_request(call)
    provider.close()
    seen: list[httpx.Request] = []

    def answer(sent: httpx.Request) -> httpx.Response:
        seen.append(sent)
        return httpx.Response(200, json={})

    connection = _http.Connection(TLS(), transport=httpx.MockTransport(answer))
    connection.send(request, 5, _credentials(ptype))
    (sent,) = seen
    assert (sent.method, str(sent.url)) == (request.method, request.url.partition("#")[0])
    for name, value in {**request.headers, **_credentials(ptype)}.items():
        assert sent.headers[name] == value
    if request.content is not None:
        assert sent.content == request.content.encode("utf-8") and "content-type" not in sent.headers
    elif request.json is not None:
        assert json.loads(sent.content) == request.json
        assert sent.headers["content-type"] == "application/json"
    else:
        assert sent.content == b""


def test_the_rules_of_each_type() -> None:
    """What the Requests hold, spelled out once per type (no I/O: nothing listens on :9)."""
    base = "http://127.0.0.1:9"
    membrane = MembraneProvider.request_builder("crm", {"base_url": base + "/"}, env={})
    assert membrane is not None
    assert membrane.build_request(ActionCall("id", "a", None, {"connection_key": "k"})) == Request(
        "POST", f"{base}/act", {"membrane-api-version": "2025-10-21"},  # the header the Membrane SDK sends
        json={"id": "a", "connectionKey": "k"}, auth=("Authorization",))

    pd = PipedreamProvider.request_builder("pd", {"base_url": base, "project_id": "proj_x1", "environment":
                                                  "development", "external_user_id": "u"}, env={})
    assert pd is not None
    target = "https://a.io/x?q=1&b=a+b#frag"  # the query before the fragment, both in the target
    proxied = pd.build_request(ActionCall("api", {"url": "https://a.io/x?q=1#frag", "query": {"b": "a b"},
                                                  "headers": {"X-A": "1"}}, None, {"account_id": "apn_2"}))
    encoded = base64.urlsafe_b64encode(target.encode()).decode()  # padding kept, as the Python SDK sends it
    assert proxied == Request("GET", f"{base}/v1/connect/proj_x1/proxy/{encoded}?external_user_id=u&account_id=apn_2",
                              {"x-pd-environment": "development", "x-pd-proxy-X-A": "1"}, auth=("Authorization",))
    assert proxied.shown_headers() == {"Authorization": "***", "x-pd-environment": "development",
                                       "x-pd-proxy-X-A": "1"}

    http = HttpProvider.request_builder("api", {"base_url": base, "headers": {"Accept": "a/b", "X-Key": "k"}},
                                        env={})
    assert http is not None
    assert http.build_request(ActionCall("api", {"path": "v", "query": {"n": [1, 2]}, "headers": {"accept": "c/d"}},
                                         None, {})) == Request("GET", f"{base}/v?n=1&n=2",
                                                               {"X-Key": "k", "accept": "c/d"})


def test_building_reads_no_credential() -> None:
    """The builders plan uses take the provider block as it is, credentials and all, and no
    Request holds them: they exist only in send."""
    env = {"MEMBRANE_TOKEN": "env-secret-1", "PIPEDREAM_ACCESS_TOKEN": "env-secret-2",
           "PIPEDREAM_CLIENT_SECRET": "env-secret-3"}
    builders = [
        MembraneProvider.request_builder("crm", {"token": "block-secret"}, env=env),
        PipedreamProvider.request_builder("pd", {"client_secret": "block-secret", "external_user_id": "u"}, env=env),
    ]
    for builder in builders:
        assert builder is not None
        for style, target, options in (("id", "x", {}), ("api", {"url": "https://a.io"}, {"account_id": "apn_1"})):
            request = builder.build_request(ActionCall(style, target, None, options))
            assert "secret" not in repr(request)
            assert request.shown_headers()["Authorization"] == "***"


def test_a_replayed_proxy_request_that_fails_names_its_target(emulator_log: Emulator) -> None:
    provider = _provider("pipedream", emulator_log)
    call = ActionCall("api", {"url": "https://api.example.com/status/404"}, None, {"account_id": "apn_1"})
    try:
        for send in (lambda: provider.send(call, 10),
                     lambda: provider.replay("api", provider.request_body(call), 10)):
            with pytest.raises(ProviderError) as failed:
                send()
            assert failed.value.type == "client_error"
            assert failed.value.message.startswith("GET https://api.example.com/status/404 (through the proxy)")
    finally:
        provider.close()
