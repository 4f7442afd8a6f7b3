"""The emulator's Pipedream Connect side over real HTTP: token exchange, actions/run, proxy, faults."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.emulator import Emulator

PROJECT = "proj_abc123"
RUN = f"/v1/connect/{PROJECT}/actions/run"
HEADERS = {"Authorization": "Bearer emulator-token", "x-pd-environment": "development"}
CREDENTIALS = {"grant_type": "client_credentials", "client_id": "cid", "client_secret": "csecret"}
SEED_RESPONSE_KEYS = {"exports", "os", "ret", "stash_id"}


@pytest.fixture(autouse=True)
def _clean(emu: Emulator) -> None:
    emu.reset()


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, timeout=5) as c:
        yield c


def b64(url: str) -> str:
    return base64.urlsafe_b64encode(url.encode()).rstrip(b"=").decode()


def proxy_path(url: str, project: str = PROJECT) -> str:
    return f"/v1/connect/{project}/proxy/{b64(url)}"


def run(client: httpx.Client, body: dict[str, Any], headers: dict[str, str] | None = None,
        path: str = RUN) -> httpx.Response:
    return client.post(path, json=body, headers=HEADERS if headers is None else headers)


def assert_error(response: httpx.Response, status: int, attribution: str = "user") -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"code", "message", "attribution"}
    assert error["attribution"] == attribution
    return error


# -- token exchange ----------------------------------------------------------------------------


def test_token_exchange_answers_the_oauth_shape(client: httpx.Client) -> None:
    response = client.post("/v1/oauth/token", json=CREDENTIALS)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "created_at"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert isinstance(body["created_at"], int)
    token = body["access_token"]
    ok = run(client, {"id": "a", "external_user_id": "u"},
             {"Authorization": f"Bearer {token}", "x-pd-environment": "production"})
    assert ok.status_code == 200


@pytest.mark.parametrize(
    "body, status, error",
    [
        ({**CREDENTIALS, "client_secret": "invalid-secret"}, 401, "invalid_client"),
        ({**CREDENTIALS, "client_id": "invalid-id"}, 401, "invalid_client"),
        ({**CREDENTIALS, "grant_type": "password"}, 400, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": "cid"}, 400, "invalid_request"),
        ({**CREDENTIALS, "scope": 3}, 400, "invalid_scope"),
    ],
)
def test_token_exchange_refusals(client: httpx.Client, body: dict, status: int, error: str) -> None:
    response = client.post("/v1/oauth/token", json=body)
    assert response.status_code == status
    assert response.json()["error"] == error
    assert response.json()["error_description"]


def test_token_exchange_needs_json(client: httpx.Client) -> None:
    response = client.post("/v1/oauth/token", content=b"grant_type=client_credentials")
    assert response.status_code == 400 and response.json()["error"] == "invalid_request"


def test_token_exchanges_are_in_the_request_log(emu: Emulator, client: httpx.Client) -> None:
    for _ in range(2):
        client.post("/v1/oauth/token", json=CREDENTIALS)
    run(client, {"id": "a", "external_user_id": "u"})
    exchanges = [r for r in emu.requests if r["path"] == "/v1/oauth/token"]
    assert len(exchanges) == 2
    assert exchanges[0]["method"] == "POST" and exchanges[0]["body"] == CREDENTIALS


def test_tokens_are_forgotten_on_reset(emu: Emulator, client: httpx.Client) -> None:
    token = client.post("/v1/oauth/token", json=CREDENTIALS).json()["access_token"]
    emu.reset()
    response = run(client, {"id": "a", "external_user_id": "u"},
                   {"Authorization": f"Bearer {token}", "x-pd-environment": "development"})
    assert assert_error(response, 401)["message"] == "invalid access token"


def test_scoped_token_reaches_only_what_it_was_granted(client: httpx.Client) -> None:
    token = client.post("/v1/oauth/token", json={**CREDENTIALS, "scope": "connect:proxy"}).json()
    headers = {"Authorization": f"Bearer {token['access_token']}", "x-pd-environment": "development"}
    assert_error(run(client, {"id": "a", "external_user_id": "u"}, headers), 403)
    proxied = client.get(proxy_path("https://api.x.io/"), headers=headers,
                         params={"external_user_id": "u", "account_id": "apn_1"})
    assert proxied.status_code == 200
    wide = client.post("/v1/oauth/token", json={**CREDENTIALS, "scope": "connect:*"}).json()
    headers["Authorization"] = f"Bearer {wide['access_token']}"
    assert run(client, {"id": "a", "external_user_id": "u"}, headers).status_code == 200


# -- actions/run: checks -----------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, "Bearer", "Basic emulator-token", "Bearer not-issued"])
def test_missing_or_unknown_token_is_401(client: httpx.Client, auth: str | None) -> None:
    headers = {"x-pd-environment": "development"}
    if auth is not None:
        headers["Authorization"] = auth
    assert_error(run(client, {"id": "a", "external_user_id": "u"}, headers), 401)


@pytest.mark.parametrize("environment", [None, "prod", "Production", ""])
def test_environment_header_is_checked(client: httpx.Client, environment: str | None) -> None:
    headers = {"Authorization": "Bearer emulator-token"}
    if environment is not None:
        headers["x-pd-environment"] = environment
    error = assert_error(run(client, {"id": "a", "external_user_id": "u"}, headers), 400)
    assert "x-pd-environment" in error["message"]


@pytest.mark.parametrize("project", ["abc123", "proj_", "proj_a-b", "PROJ_abc"])
def test_project_id_pattern_is_checked(client: httpx.Client, project: str) -> None:
    response = run(client, {"id": "a", "external_user_id": "u"},
                   path=f"/v1/connect/{project}/actions/run")
    assert "project id" in assert_error(response, 400)["message"]


def test_auth_is_checked_before_the_project(client: httpx.Client) -> None:
    response = run(client, {"id": "a", "external_user_id": "u"}, {"x-pd-environment": "x"},
                   path="/v1/connect/nope/actions/run")
    assert_error(response, 401)


@pytest.mark.parametrize(
    "body",
    [
        {"external_user_id": "u"},
        {"id": "a"},
        {"id": "", "external_user_id": "u"},
        {"id": "a", "external_user_id": "u", "input": {}},
        {"id": "a", "external_user_id": "u", "configured_props": []},
        {"id": "a", "external_user_id": "u", "version": 1},
        {"id": "a", "external_user_id": "u", "dynamic_props_id": 5},
        {"id": "a", "external_user_id": "u", "stash_id": ""},
    ],
)
def test_wrong_bodies_are_400(client: httpx.Client, body: dict) -> None:
    assert_error(run(client, body), 400)


def test_body_must_be_a_json_object(client: httpx.Client) -> None:
    response = client.post(RUN, content=b"[1]", headers=HEADERS)
    assert_error(response, 400)


# -- actions/run: answers ----------------------------------------------------------------------


def test_ret_echoes_configured_props_with_a_stable_id(client: httpx.Client) -> None:
    body = {"id": "slack-send-message", "external_user_id": "u", "version": "1.0.0",
            "configured_props": {"channel": "C1", "text": "hi"}}
    first, second = run(client, body).json(), run(client, body).json()
    assert set(first) == SEED_RESPONSE_KEYS
    assert first["ret"]["channel"] == "C1" and first["ret"]["text"] == "hi"
    assert re.fullmatch(r"[0-9a-f]{12}", first["ret"]["id"])
    assert first["ret"] == second["ret"]
    assert first["stash_id"] is None
    assert first["exports"] == {"$summary": "Ran slack-send-message"}
    assert first["os"][0]["msg"] == "running slack-send-message@1.0.0 for u"
    assert {"k", "ts", "msg"} <= set(first["os"][0])
    other = run(client, {**body, "configured_props": {"channel": "C2"}}).json()
    assert other["ret"]["id"] != first["ret"]["id"]


@pytest.mark.parametrize("new", [True, "NEW"])
def test_stash_id_true_or_new_creates_a_stash(client: httpx.Client, new: Any) -> None:
    created = run(client, {"id": "a", "external_user_id": "u", "stash_id": new}).json()
    stash = created["stash_id"]
    assert re.fullmatch(r"sth_[0-9a-f]{10}", stash)
    again = run(client, {"id": "a", "external_user_id": "u", "stash_id": new}).json()
    assert again["stash_id"] != stash
    reused = run(client, {"id": "b", "external_user_id": "u", "stash_id": stash}).json()
    assert reused["stash_id"] == stash
    assert any(stash in entry.get("msg", "") for entry in reused["os"])


@pytest.mark.parametrize("component, attribution", [
    ("err-component", "component"), ("err-upstream", "upstream"), ("err-user", "user"),
])
def test_erroring_actions_answer_2xx_with_an_err(client: httpx.Client, component: str,
                                                 attribution: str) -> None:
    response = run(client, {"id": component, "external_user_id": "u", "stash_id": "NEW"})
    assert response.status_code == 200
    body = response.json()
    assert SEED_RESPONSE_KEYS <= set(body)
    errors = [entry["err"] for entry in body["os"] if "err" in entry]
    assert len(errors) == 1 and set(errors[0]) == {"name", "message", "stack"}
    assert body["error"]["attribution"] == attribution
    assert body["error"]["message"] == errors[0]["message"]
    assert body["ret"] is None and body["stash_id"].startswith("sth_")


@pytest.mark.parametrize("status, attribution", [(404, "user"), (429, "pipedream"), (502, "pipedream")])
def test_fail_nnn_answers_that_status(client: httpx.Client, status: int, attribution: str) -> None:
    error = assert_error(run(client, {"id": f"fail-{status}", "external_user_id": "u"}), status,
                         attribution)
    assert f"fail-{status}" in error["message"]


# -- proxy -------------------------------------------------------------------------------------


def test_proxy_echoes_the_upstream_request(client: httpx.Client) -> None:
    url = "https://slack.com/api/chat.postMessage?as_user=true&x=1&x=2"
    response = client.post(
        proxy_path(url),
        params={"external_user_id": "u", "account_id": "apn_1"},
        headers={**HEADERS, "x-pd-proxy-Accept": "application/json", "x-other": "no"},
        json={"channel": "C1"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "method": "POST",
        "url": url,
        "query": {"as_user": "true", "x": ["1", "2"]},
        "headers": {"accept": "application/json"},
        "body": {"channel": "C1"},
    }


def test_proxy_accepts_padded_base64_and_relative_paths(client: httpx.Client) -> None:
    params = {"external_user_id": "u", "account_id": "apn_1"}
    padded = base64.urlsafe_b64encode(b"https://a.io/x").decode()
    assert padded.endswith("=")
    ok = client.get(f"/v1/connect/{PROJECT}/proxy/{padded}", params=params, headers=HEADERS)
    assert ok.json()["url"] == "https://a.io/x"
    relative = client.delete(proxy_path("/api/v2/chats"), params=params, headers=HEADERS)
    assert relative.json()["method"] == "DELETE" and relative.json()["url"] == "/api/v2/chats"


@pytest.mark.parametrize(
    "path, params",
    [
        (proxy_path("https://a.io/"), {"external_user_id": "u"}),
        (proxy_path("https://a.io/"), {"account_id": "apn_1"}),
        (f"/v1/connect/{PROJECT}/proxy/not+base64!", {"external_user_id": "u", "account_id": "a"}),
        (proxy_path("ftp://a.io/"), {"external_user_id": "u", "account_id": "a"}),
        (proxy_path("https://a.io/", "bad"), {"external_user_id": "u", "account_id": "a"}),
    ],
)
def test_proxy_refusals(client: httpx.Client, path: str, params: dict) -> None:
    assert_error(client.get(path, params=params, headers=HEADERS), 400)


def test_proxy_needs_auth_and_environment(client: httpx.Client) -> None:
    params = {"external_user_id": "u", "account_id": "apn_1"}
    assert_error(client.get(proxy_path("https://a.io/"), params=params), 401)
    no_env = {"Authorization": "Bearer emulator-token"}
    assert_error(client.get(proxy_path("https://a.io/"), params=params, headers=no_env), 400)


def test_proxy_upstream_status(client: httpx.Client) -> None:
    response = client.get(proxy_path("https://httpbin.org/status/404"), headers=HEADERS,
                          params={"external_user_id": "u", "account_id": "apn_1"})
    assert response.status_code == 404
    assert response.json()["error"] == "upstream answered 404"


# -- faults ------------------------------------------------------------------------------------


def test_action_fault_matches_the_component_id(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"action": "slack-send-message"}, status=503, retry_after=2)
    other = run(client, {"id": "other", "external_user_id": "u"})
    assert other.status_code == 200
    faulted = run(client, {"id": "slack-send-message", "external_user_id": "u"})
    assert_error(faulted, 503, "pipedream")
    assert faulted.headers["retry-after"] == "2"
    assert run(client, {"id": "slack-send-message", "external_user_id": "u"}).status_code == 200


def test_proxy_fault_matches_api(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"action": "api"}, status=401)
    params = {"external_user_id": "u", "account_id": "apn_1"}
    assert_error(client.get(proxy_path("https://a.io/"), params=params, headers=HEADERS), 401)
    assert client.get(proxy_path("https://a.io/"), params=params, headers=HEADERS).status_code == 200


def test_token_fault_answers_the_oauth_shape(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"path": "/v1/oauth/token"}, status=503)
    response = client.post("/v1/oauth/token", json=CREDENTIALS)
    assert response.status_code == 503 and response.json()["error"] == "server_error"
