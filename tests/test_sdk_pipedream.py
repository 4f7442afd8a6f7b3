"""The emulator's contract with Pipedream: the official Python SDK (``pipedream`` 2.x, pinned in
the test extras) driven against ``engine.emulator`` over real HTTP on loopback.

Every route the SDK calls and the emulator serves is here: the token exchange (client secret and
private-key JWT client assertion), ``actions.run`` (every ``stash_id`` form the SDK types),
``actions.retrieve`` / ``components.retrieve`` (``configurable_props``), ``actions.reload_props``
(``dynamicProps.id``), ``accounts.list``, and the proxy (GET, a POST without a body, a binary
answer, an upstream error). If one of these fails, the emulator no longer answers as the service
does for the client people actually use.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from engine.emulator import Emulator

pipedream = pytest.importorskip("pipedream", reason="the Pipedream Python SDK is in the test extras")

from pipedream import Pipedream  # noqa: E402
from pipedream.core.api_error import ApiError  # noqa: E402

PROJECT = "proj_sdk42"
USER = "cus_sdk"


@pytest.fixture(autouse=True)
def _clean(emu: Emulator) -> None:
    emu.reset()


@pytest.fixture
def pd(emu: Emulator) -> Iterator[Pipedream]:
    client = Pipedream(client_id="sdk-client", client_secret="sdk-secret", project_id=PROJECT,
                       project_environment="development", base_url=emu.url, max_retries=0)
    yield client


def paths(emu: Emulator) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in emu.requests]


# -- token exchange ---------------------------------------------------------------------------


def test_client_secret_exchange_then_a_run(emu: Emulator, pd: Pipedream) -> None:
    result = pd.actions.run(id="slack-post-message", external_user_id=USER,
                            configured_props={"slack": {"authProvisionId": "apn_1"}, "channel": "C1", "text": "hi"})
    assert result.ret["channel"] == "C1" and len(result.ret["id"]) == 12
    assert result.exports == {"$summary": "Ran slack-post-message"}
    assert result.os and result.os[0].k == "console.log"
    token_request, run_request = emu.requests
    assert token_request["path"] == "/v1/oauth/token"
    assert token_request["body"]["grant_type"] == "client_credentials"
    assert run_request["headers"]["authorization"].startswith("Bearer pd_")
    assert run_request["headers"]["x-pd-environment"] == "development"
    assert run_request["headers"]["user-agent"].startswith("pipedream/")


def test_refused_credentials_raise_the_sdks_unauthorized_error(emu: Emulator) -> None:
    client = Pipedream(client_id="invalid-client", client_secret="s", project_id=PROJECT,
                       project_environment="development", base_url=emu.url, max_retries=0)
    with pytest.raises(ApiError) as caught:
        client.actions.run(id="a", external_user_id=USER)
    assert caught.value.status_code == 401
    assert paths(emu) == ["POST /v1/oauth/token"]  # nothing else was sent


def _private_key_pem() -> str:
    ec = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.ec")
    serialization = pytest.importorskip("cryptography.hazmat.primitives.serialization")
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def test_private_key_jwt_client_assertion(emu: Emulator) -> None:
    pytest.importorskip("jwt", reason="pipedream[private-key] brings PyJWT")
    client = Pipedream(client_id="pk-client", private_key=_private_key_pem(), key_id="kid-1",
                       project_id=PROJECT, project_environment="production", base_url=emu.url, max_retries=0)
    assert client.actions.run(id="echo", external_user_id=USER, configured_props={"n": 1}).ret["n"] == 1
    exchange = emu.requests[0]["body"]
    assert "client_secret" not in exchange
    assert exchange["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    head, claims = (json.loads(base64.urlsafe_b64decode(part + "==")) for part in
                    exchange["client_assertion"].split(".")[:2])
    assert head["alg"] == "ES256" and head["kid"] == "kid-1"
    assert claims["iss"] == claims["sub"] == "pk-client" and claims["aud"] == emu.url
    # The service refuses an assertion used twice (the SDK signs a new one every time).
    again = httpx.post(f"{emu.url}/v1/oauth/token", json=exchange)
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"


# -- actions and components -------------------------------------------------------------------


@pytest.mark.parametrize("stash", [True, "NEW", False, None, "sth_given"])
def test_every_stash_id_the_sdk_types(pd: Pipedream, emu: Emulator, stash: Any) -> None:
    result = pd.actions.run(id="echo", external_user_id=USER, configured_props={}, stash_id=stash)
    if stash is True or stash == "NEW":
        assert result.stash_id is not None and result.stash_id.startswith("sth_")
    elif stash == "sth_given":
        assert result.stash_id == "sth_given"
    else:
        assert result.stash_id is None


def test_retrieve_an_action_with_its_configurable_props(pd: Pipedream) -> None:
    action = pd.actions.retrieve("github-create-issue")
    assert (action.key, action.name, action.version) == ("github-create-issue", "Create Issue", "1.2.0")
    props = {prop.name: prop.type for prop in action.configurable_props}
    assert props == {"github": "app", "repo": "string", "title": "string", "labels": "string[]",
                     "milestone": "integer"}
    component = pd.components.retrieve("github-create-issue", version="1.2.0")
    assert component.configurable_props == action.configurable_props


def test_a_made_up_component_and_a_missing_one(pd: Pipedream) -> None:
    assert pd.actions.retrieve("anything-goes").configurable_props == []
    with pytest.raises(ApiError) as caught:
        pd.actions.retrieve("missing-action")
    assert caught.value.status_code == 404
    assert caught.value.body["error"]["code"] == "not_found"


def test_a_run_is_checked_against_the_components_props(pd: Pipedream) -> None:
    with pytest.raises(ApiError) as caught:
        pd.actions.run(id="github-create-issue", external_user_id=USER,
                       configured_props={"github": {"authProvisionId": "apn_1"}, "repo": 5})
    assert caught.value.status_code == 400
    message = caught.value.body["error"]["message"]
    assert "'title' is required" in message and "repo: expected string" in message


def test_reload_props_gives_a_dynamic_props_id_a_run_takes(pd: Pipedream) -> None:
    reloaded = pd.actions.reload_props(id="github-create-issue", external_user_id=USER,
                                       configured_props={"repo": "a/b"})
    assert reloaded.dynamic_props is not None and reloaded.dynamic_props.id.startswith("dyp_")
    assert pd.components.reload_props(id="github-create-issue", external_user_id=USER,
                                      configured_props={"repo": "a/b"}).dynamic_props == reloaded.dynamic_props
    result = pd.actions.run(id="echo", external_user_id=USER, dynamic_props_id=reloaded.dynamic_props.id)
    assert result.ret is not None


def test_failing_actions_raise_the_sdks_errors(pd: Pipedream) -> None:
    with pytest.raises(pipedream.TooManyRequestsError):
        pd.actions.run(id="fail-429", external_user_id=USER)
    with pytest.raises(ApiError) as caught:
        pd.actions.run(id="fail-503", external_user_id=USER)
    assert caught.value.status_code == 503
    assert caught.value.body["error"]["attribution"] == "pipedream"
    failed = pd.actions.run(id="err-upstream", external_user_id=USER)
    assert failed.os is not None and failed.os[-1].err is not None


# -- accounts ---------------------------------------------------------------------------------


def test_accounts_list(pd: Pipedream) -> None:
    accounts = list(pd.accounts.list(external_user_id=USER, app="github"))
    assert len(accounts) == 1
    account = accounts[0]
    assert account.id.startswith("apn_") and account.external_id == USER and account.healthy
    assert account.app is not None and account.app.name_slug == "github"
    assert list(pd.accounts.list(external_user_id=USER, app="github"))[0].id == account.id  # stable


# -- proxy ------------------------------------------------------------------------------------


def test_proxy_get_with_params_and_headers(pd: Pipedream, emu: Emulator) -> None:
    answer = pd.proxy.get("https://api.github.com/user", external_user_id=USER, account_id="apn_1",
                          headers={"X-Trace": "t-1"}, params={"page": "2"})
    assert isinstance(answer, dict)
    assert answer["url"] == "https://api.github.com/user?page=2"
    assert answer["headers"]["x-trace"] == "t-1"
    sent = emu.requests[-1]
    assert sent["query"] == {"external_user_id": USER, "account_id": "apn_1"}
    assert sent["path"].endswith("=")  # URL-safe base64 with its padding, as the SDK sends it


def test_proxy_post_without_a_body_sends_an_empty_object(pd: Pipedream, emu: Emulator) -> None:
    answer = pd.proxy.post("https://api.github.com/repos/a/b/forks", external_user_id=USER, account_id="apn_1")
    assert isinstance(answer, dict) and answer["body"] == {}
    assert emu.requests[-1]["headers"]["content-type"] == "application/json"


def test_proxy_binary_answer_streams_its_bytes(pd: Pipedream) -> None:
    answer = pd.proxy.get("https://files.example.com/bytes/300", external_user_id=USER, account_id="apn_1")
    assert not isinstance(answer, dict) and answer is not None
    assert b"".join(answer) == bytes(i % 256 for i in range(300))


def test_proxy_upstream_error(pd: Pipedream) -> None:
    with pytest.raises(ApiError) as caught:
        pd.proxy.get("https://api.github.com/status/404", external_user_id=USER, account_id="apn_1")
    assert caught.value.status_code == 404
    assert caught.value.body["error"] == "upstream answered 404"
