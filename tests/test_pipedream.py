"""The Pipedream Connect provider: end to end through the CLI on the emulator, and its pieces."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.emulator import Emulator
from engine.providers import pipedream
from engine.providers.base import ActionCall, ProviderError, Redactor
from engine.providers.pipedream import TOKEN_CACHE, PipedreamProvider, encode_target, target_url
from tests.conftest import base_env, run_cli

SECRET = "pd-client-secret-5f3a9c"
PROJECT = "proj_abc123"
RUN_PATH = f"/v1/connect/{PROJECT}/actions/run"
TOKEN_PATH = "/v1/oauth/token"
#: The body fields of the seed page (shared/seeds/pipedream-connect-actions-run.txt).
SEED_FIELDS = {"id", "external_user_id", "version", "configured_props", "dynamic_props_id", "stash_id"}


@pytest.fixture
def pd_env(emulator: Emulator) -> dict[str, str]:
    return base_env(PIPEDREAM_BASE_URL=emulator.url, PIPEDREAM_CLIENT_ID="cid_test",
                    PIPEDREAM_CLIENT_SECRET=SECRET)


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    TOKEN_CACHE.clear()
    yield
    TOKEN_CACHE.clear()


def requests_to(emu: Emulator, path: str) -> list[dict[str, Any]]:
    return [r for r in emu.requests if r["path"] == path]


def proxied(emu: Emulator) -> list[dict[str, Any]]:
    return [r for r in emu.requests if "/proxy/" in r["path"]]


def issued_tokens(emu: Emulator) -> list[str]:
    return [r["headers"]["authorization"].split()[1] for r in emu.requests if r["path"] != TOKEN_PATH]


def assert_no_secrets(result: Any, *values: str) -> None:
    text = result.manifest_path.read_text() if result.manifest_path.exists() else ""
    for value in values:
        assert value not in text and value not in result.stdout and value not in result.stderr


HEADER = f"""
version: 1
name: pd
vars: {{user: cus_42, channel: C0123}}
providers:
  chat:
    type: pipedream
    project_id: {PROJECT}
    environment: production
    external_user_id: "{{{{ vars.user }}}}"
  files:
    type: pipedream
    project_id: {PROJECT}
    environment: development
"""

THREE_STEPS = HEADER + """
steps:
  - id: post
    provider: chat
    dispatch: {id: slack-send-message}
    with: {version: "1.0.0"}
    input: {channel: "{{ vars.channel }}", text: hello}
  - id: fetch
    provider: files
    dispatch: {id: google_drive-download-file}
    with: {external_user_id: other_user, stash_id: NEW, dynamic_props_id: dyp_6xUyVgQ}
    input: {message_id: "{{ steps.post.output.id }}", text: "{{ steps.post.output.text }}"}
  - id: reuse
    provider: chat
    dispatch: {id: google_drive-upload-file}
    with: {stash_id: "{{ steps.fetch.stash_id }}"}
    input: {file: "{{ steps.fetch.output.message_id }}"}
outputs:
  stash: "{{ steps.fetch.stash_id }}"
"""


# -- end to end: actions/run -------------------------------------------------------------------


def test_three_steps_one_token_exchange_and_seed_bodies(write, tmp_path: Path, emulator: Emulator,
                                                        pd_env: dict[str, str]) -> None:
    result = run_cli(["run", str(write(THREE_STEPS))], cwd=tmp_path, env=pd_env)
    assert result.code == 0, result.stdout + result.stderr
    exchanges = requests_to(emulator, TOKEN_PATH)
    assert len(exchanges) == 1, "one exchange per run and credentials, whatever the providers"
    assert exchanges[0]["body"] == {"grant_type": "client_credentials", "client_id": "cid_test",
                                    "client_secret": SECRET}
    runs = requests_to(emulator, RUN_PATH)
    # run's remote input check: each action's definition fetched once (in its version), after the
    # token exchange and before step 1, with the same token
    definitions = [(r["method"], r["path"], r["query"]) for r in emulator.requests[1:4]]
    assert definitions == [("GET", f"/v1/connect/{PROJECT}/actions/slack-send-message", {"version": "1.0.0"}),
                           ("GET", f"/v1/connect/{PROJECT}/actions/google_drive-download-file", {}),
                           ("GET", f"/v1/connect/{PROJECT}/actions/google_drive-upload-file", {})]
    assert len(runs) == 3 and len(emulator.requests) == 1 + 3 + 3
    token = issued_tokens(emulator)[0]
    assert token.startswith("pd_")
    for request, environment in zip(runs, ["production", "development", "production"], strict=True):
        assert request["method"] == "POST"
        assert request["headers"]["authorization"] == f"Bearer {token}"
        assert request["headers"]["content-type"] == "application/json"
        assert request["headers"]["x-pd-environment"] == environment
        assert set(request["body"]) <= SEED_FIELDS
    post, fetch, reuse = (r["body"] for r in runs)
    assert post == {"id": "slack-send-message", "external_user_id": "cus_42", "version": "1.0.0",
                    "configured_props": {"channel": "C0123", "text": "hello"}}
    first_ret = result.step("post")["output"]
    assert fetch == {"id": "google_drive-download-file", "external_user_id": "other_user",
                     "configured_props": {"message_id": first_ret["id"], "text": "hello"},
                     "dynamic_props_id": "dyp_6xUyVgQ", "stash_id": "NEW"}
    stash = result.step("fetch")["extra"]["stash_id"]
    assert stash.startswith("sth_")
    assert reuse == {"id": "google_drive-upload-file", "external_user_id": "cus_42",
                     "configured_props": {"file": first_ret["id"]}, "stash_id": stash}
    manifest = result.manifest
    assert [s["request"] for s in manifest["steps"]] == [post, fetch, reuse]
    step = result.step("post")
    assert step["provider_type"] == "pipedream" and step["dispatch"] == "id"
    assert step["exports"] == {"$summary": "Ran slack-send-message"}
    assert step["logs"][0]["msg"] == "running slack-send-message@1.0.0 for cus_42"
    assert step["extra"] == {"stash_id": None}
    assert manifest["outputs"] == {"stash": stash}
    assert_no_secrets(result, SECRET, token)
    assert result.stdout.splitlines()[0].split()[:5] == ["ok", "post", "chat", "(pipedream)", "id"]


def test_ready_token_needs_no_exchange(write, tmp_path: Path, emulator: Emulator) -> None:
    env = base_env(PIPEDREAM_BASE_URL=emulator.url, PIPEDREAM_ACCESS_TOKEN="emulator-token",
                   PIPEDREAM_PROJECT_ID=PROJECT, PIPEDREAM_PROJECT_ENVIRONMENT="development")
    path = write("""
        version: 1
        name: ready
        steps:
          - id: one
            provider: pipedream
            dispatch: {id: a}
            with: {external_user_id: u1}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 0, result.stdout + result.stderr
    assert requests_to(emulator, TOKEN_PATH) == []
    (request,) = requests_to(emulator, RUN_PATH)
    assert request["headers"]["authorization"] == "Bearer emulator-token"
    assert request["headers"]["x-pd-environment"] == "development"
    assert_no_secrets(result, "emulator-token")


def test_scope_is_sent_in_the_exchange(write, tmp_path: Path, emulator: Emulator,
                                       pd_env: dict[str, str]) -> None:
    path = write(f"""
        version: 1
        name: scoped
        providers:
          pd: {{type: pipedream, project_id: {PROJECT}, environment: development,
                external_user_id: u1, scope: "connect:actions:*"}}
        steps:
          - id: one
            provider: pd
            dispatch: {{id: a}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 0, result.stdout + result.stderr
    assert requests_to(emulator, TOKEN_PATH)[0]["body"]["scope"] == "connect:actions:*"


def test_2xx_with_err_fails_the_step_with_its_attribution(write, tmp_path: Path, emulator: Emulator,
                                                          pd_env: dict[str, str]) -> None:
    path = write(HEADER + """
steps:
  - id: post
    provider: chat
    dispatch: {id: err-upstream}
    with: {stash_id: NEW}
    input: {channel: C404}
  - id: never
    provider: chat
    dispatch: {id: slack-send-message}
finally:
  - id: report
    provider: chat
    dispatch: {id: report}
    input: {status: "{{ run.status }}", origin: "{{ steps.post.error.attribution }}"}
""")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 1
    step = result.step("post")
    assert step["status"] == "failed"
    assert step["error"]["type"] == "action_failed"
    assert step["error"]["http_status"] == 200
    assert step["error"]["attribution"] == "upstream"
    assert step["error"]["message"] == "action 'err-upstream' failed: Error: Slack API error: channel_not_found"
    assert step["error"]["provider_error"]["name"] == "Error"
    assert any("err" in entry for entry in step["logs"])
    assert step["extra"]["stash_id"].startswith("sth_"), "the stash is kept on failure too"
    assert len(step["attempts"]) == 1, "a failed action is not retried"
    assert result.step("never")["status"] == "not_run"
    assert requests_to(emulator, RUN_PATH)[-1]["body"]["configured_props"] == {
        "status": "failed", "origin": "upstream"}
    lines = result.stdout.splitlines()
    assert "      attribution: upstream" in lines
    assert "      log: running err-upstream@latest for cus_42" in lines
    assert "      log: Error: Slack API error: channel_not_found" in lines


def test_non_2xx_action_is_a_typed_error(write, tmp_path: Path, emulator: Emulator,
                                         pd_env: dict[str, str]) -> None:
    path = write(HEADER + """
steps:
  - id: post
    provider: chat
    dispatch: {id: fail-422}
""")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 1
    error = result.step("post")["error"]
    assert error["type"] == "client_error" and error["http_status"] == 422
    assert error["attribution"] == "user"
    assert error["provider_error"]["code"] == "unprocessable_entity"
    assert "fail-422" in error["message"]


def test_retry_on_429_uses_the_cached_token(write, tmp_path: Path, emulator: Emulator,
                                            pd_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slack-send-message"}, status=429, retry_after=0)
    path = write(HEADER + """
steps:
  - id: post
    provider: chat
    dispatch: {id: slack-send-message}
    retry: {attempts: 2, initial_delay: 10ms}
""")
    # --no-remote-check: the fault matches the action's definition GET too, and this test is about
    # the send's 429 and retry, not the remote input check
    result = run_cli(["run", str(path), "--no-remote-check"], cwd=tmp_path, env=pd_env)
    assert result.code == 0, result.stdout + result.stderr
    assert len(result.step("post")["attempts"]) == 2
    assert len(requests_to(emulator, TOKEN_PATH)) == 1
    assert len(requests_to(emulator, RUN_PATH)) == 2


# -- 401: renew once ---------------------------------------------------------------------------


def test_401_renews_the_token_and_resends_once(write, tmp_path: Path, emulator: Emulator,
                                               pd_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slack-send-message"}, status=401)
    path = write(HEADER + """
steps:
  - id: post
    provider: chat
    dispatch: {id: slack-send-message}
  - id: after
    provider: files
    dispatch: {id: b}
    with: {external_user_id: u2}
""")
    # --no-remote-check: the fault matches the action's definition GET too, and this test is about
    # the send's 401 and its token renewal, not the remote input check
    result = run_cli(["run", str(path), "--no-remote-check"], cwd=tmp_path, env=pd_env)
    assert result.code == 0, result.stdout + result.stderr
    assert len(requests_to(emulator, TOKEN_PATH)) == 2
    first, second, third = requests_to(emulator, RUN_PATH)
    assert first["body"] == second["body"]
    assert first["headers"]["authorization"] != second["headers"]["authorization"]
    assert third["headers"]["authorization"] == second["headers"]["authorization"]
    assert len(result.step("post")["attempts"]) == 1, "the resend is part of the attempt"


def test_a_second_401_fails_after_one_resend(write, tmp_path: Path, emulator: Emulator,
                                             pd_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slack-send-message"}, status=401, times=5)
    path = write(HEADER + """
steps:
  - id: post
    provider: chat
    dispatch: {id: slack-send-message}
""")
    # --no-remote-check: the fault matches the action's definition GET too, and this test is about
    # the send's second 401, not the remote input check
    result = run_cli(["run", str(path), "--no-remote-check"], cwd=tmp_path, env=pd_env)
    assert result.code == 1
    assert len(requests_to(emulator, RUN_PATH)) == 2
    assert len(requests_to(emulator, TOKEN_PATH)) == 2
    error = result.step("post")["error"]
    assert error["type"] == "authentication" and error["http_status"] == 401
    assert "PIPEDREAM_CLIENT_ID and PIPEDREAM_CLIENT_SECRET" in error["message"]


def test_401_with_a_ready_token_is_not_resent(write, tmp_path: Path, emulator: Emulator) -> None:
    env = base_env(PIPEDREAM_BASE_URL=emulator.url, PIPEDREAM_ACCESS_TOKEN="stale-token-123")
    path = write(HEADER + """
steps:
  - id: post
    provider: chat
    dispatch: {id: slack-send-message}
""")
    # run's remote input check meets the 401 first, at the action's definition: not resent either,
    # and nothing is sent (exit 2, before step 1)
    checked = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert checked.code == 2, checked.stdout + checked.stderr
    assert "PIPEDREAM_ACCESS_TOKEN" in checked.stderr
    assert [(r["method"], r["path"]) for r in emulator.requests] == [
        ("GET", f"/v1/connect/{PROJECT}/actions/slack-send-message")]
    assert_no_secrets(checked, "stale-token-123")
    emulator.clear_requests()
    # the send's own 401 (the check skipped)
    result = run_cli(["run", str(path), "--no-remote-check"], cwd=tmp_path, env=env)
    assert result.code == 1
    assert len(requests_to(emulator, RUN_PATH)) == 1 and requests_to(emulator, TOKEN_PATH) == []
    error = result.step("post")["error"]
    assert error["type"] == "authentication"
    assert "PIPEDREAM_ACCESS_TOKEN" in error["message"]
    assert_no_secrets(result, "stale-token-123")


# -- the proxy ---------------------------------------------------------------------------------


def test_proxy_step_reaches_the_emulator_with_base64_path_and_headers(
        write, tmp_path: Path, emulator: Emulator, pd_env: dict[str, str]) -> None:
    path = write(HEADER + """
steps:
  - id: post
    provider: chat
    with: {account_id: apn_kGhJ5Dd}
    dispatch:
      api:
        method: POST
        url: "https://slack.com/api/chat.postMessage?as_user=true"
        query: {limit: 3, pretty: true}
        headers: {Accept: application/json, X-Trace: t-1}
        body: {channel: "{{ vars.channel }}", text: hi}
  - id: who
    provider: files
    with: {account_id: apn_2, external_user_id: other}
    dispatch: {api: {url: "https://api.github.com/user"}}
""")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 0, result.stdout + result.stderr
    first, second = proxied(emulator)
    target = "https://slack.com/api/chat.postMessage?as_user=true&limit=3&pretty=true"
    encoded = base64.urlsafe_b64encode(target.encode()).decode()  # padding kept, as the Python SDK sends it
    assert first["path"] == f"/v1/connect/{PROJECT}/proxy/{encoded}"
    assert first["method"] == "POST"
    assert first["query"] == {"external_user_id": "cus_42", "account_id": "apn_kGhJ5Dd"}
    headers = first["headers"]
    assert headers["x-pd-proxy-accept"] == "application/json"
    assert headers["x-pd-proxy-x-trace"] == "t-1"
    assert headers["x-pd-environment"] == "production"
    assert headers["authorization"].startswith("Bearer pd_")
    assert "accept" not in headers or headers["accept"] != "application/json"
    assert first["body"] == {"channel": "C0123", "text": "hi"}
    step = result.step("post")
    assert step["dispatch"] == "api"
    assert step["request"] == {
        "method": "POST", "url": target, "headers": {"Accept": "application/json", "X-Trace": "t-1"},
        "body": {"channel": "C0123", "text": "hi"}, "external_user_id": "cus_42",
        "account_id": "apn_kGhJ5Dd"}
    assert step["output"] == {"method": "POST", "url": target,
                              "query": {"as_user": "true", "limit": "3", "pretty": "true"},
                              "headers": {"accept": "application/json", "x-trace": "t-1"},
                              "body": {"channel": "C0123", "text": "hi"}}
    assert step["exports"]["status"] == 200
    assert second["method"] == "GET" and second["body"] is None
    assert second["path"].endswith("/proxy/" + encode_target("https://api.github.com/user"))
    assert second["query"] == {"external_user_id": "other", "account_id": "apn_2"}
    assert second["headers"]["x-pd-environment"] == "development"
    assert len(requests_to(emulator, TOKEN_PATH)) == 1


def test_proxy_upstream_error_and_text_body(write, tmp_path: Path, emulator: Emulator,
                                            pd_env: dict[str, str]) -> None:
    path = write(HEADER + """
steps:
  - id: text
    provider: chat
    with: {account_id: apn_1}
    dispatch: {api: {method: GET, url: "https://example.com/robots.txt"}}
  - id: missing
    provider: chat
    with: {account_id: apn_1}
    dispatch: {api: {method: DELETE, url: "https://httpbin.org/status/404"}}
""")
    emulator.add_fault({"action": "api"}, status=200, body="User-agent: *")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 1
    assert result.step("text")["output"] == "User-agent: *"
    error = result.step("missing")["error"]
    assert error["type"] == "client_error" and error["http_status"] == 404
    assert "DELETE https://httpbin.org/status/404" in error["message"]
    assert "upstream answered 404" in error["message"]


def test_proxy_401_renews_and_resends_once(write, tmp_path: Path, emulator: Emulator,
                                           pd_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "api"}, status=401)
    path = write(HEADER + """
steps:
  - id: get
    provider: chat
    with: {account_id: apn_1}
    dispatch: {api: {url: "https://api.github.com/user"}}
""")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 0, result.stdout + result.stderr
    assert len(proxied(emulator)) == 2 and len(requests_to(emulator, TOKEN_PATH)) == 2


# -- bad input: nothing sent -------------------------------------------------------------------


def test_bad_credentials_are_found_in_preflight(write, tmp_path: Path, emulator: Emulator) -> None:
    """A refused client secret is exit 2 before step 1: the token exchange is the pre-flight proof."""
    env = base_env(PIPEDREAM_BASE_URL=emulator.url, PIPEDREAM_CLIENT_ID="cid_test",
                   PIPEDREAM_CLIENT_SECRET="invalid-secret-77")
    result = run_cli(["run", str(write(THREE_STEPS))], cwd=tmp_path, env=env)
    assert result.code == 2
    assert requests_to(emulator, RUN_PATH) == [] and len(requests_to(emulator, TOKEN_PATH)) == 1
    lines = [line for line in (result.stdout + result.stderr).splitlines() if "token exchange" in line]
    # Both provider blocks use these credentials: each is named, the exchange is made once.
    assert [line.split(": ")[1] for line in lines] == ["providers.chat", "providers.files"]
    for line in lines:
        assert line.endswith(
            "its credentials could not be proved before the first step: Pipedream token exchange "
            "(POST /v1/oauth/token) answered HTTP 401: invalid_client: invalid client credentials; "
            "check PIPEDREAM_CLIENT_ID and PIPEDREAM_CLIENT_SECRET"
        ), line
    assert "Traceback" not in result.stderr
    assert not result.manifest_path.exists()
    assert "invalid-secret-77" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "env, names",
    [
        ({}, ["PIPEDREAM_CLIENT_ID and PIPEDREAM_CLIENT_SECRET", "PIPEDREAM_ACCESS_TOKEN"]),
        ({"PIPEDREAM_CLIENT_ID": "cid"}, ["PIPEDREAM_CLIENT_SECRET"]),
        ({"PIPEDREAM_CLIENT_SECRET": SECRET}, ["PIPEDREAM_CLIENT_ID"]),
    ],
)
def test_missing_credentials_exit_2_naming_the_variable(write, tmp_path: Path, emulator: Emulator,
                                                        env: dict[str, str], names: list[str]) -> None:
    result = run_cli(["run", str(write(THREE_STEPS))], cwd=tmp_path,
                     env=base_env(PIPEDREAM_BASE_URL=emulator.url, **env))
    assert result.code == 2
    assert emulator.requests == []
    assert not result.manifest_path.exists()
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, "one line per provider"
    assert lines[0].startswith(f"{tmp_path / 'runbook.yml'}:6:5: pipedream provider 'chat': ")
    for name in names:
        assert name in lines[0]
    assert SECRET not in result.stderr


@pytest.mark.parametrize(
    "block, message",
    [
        ("project_id: abc123, environment: production",
         "'abc123' does not match the pattern ^proj_[a-zA-Z0-9]+$"),
        ("project_id: proj_abc123, environment: prod",
         "'prod' is not one of development, production"),
        ("project_id: proj_abc123, environment: Production",
         "'Production' is not one of development, production (did you mean 'production'?)"),
        ("project_id: proj_abc123, environment: development, client_secret: 5",
         "expected a string, got the number 5"),
    ],
)
def test_wrong_project_or_environment_is_a_validation_error(
        write, tmp_path: Path, emulator: Emulator, pd_env: dict[str, str], block: str,
        message: str) -> None:
    path = write(f"""
        version: 1
        name: bad
        providers:
          pd: {{type: pipedream, external_user_id: u, {block}}}
        steps:
          - id: one
            provider: pd
            dispatch: {{id: a}}
    """)
    for command in (["validate", str(path)], ["run", str(path)]):
        result = run_cli(command, cwd=tmp_path, env=pd_env)
        assert result.code == 2, result.stdout + result.stderr
        assert message in result.stderr
        assert f"{path}:4:" in result.stderr
    assert emulator.requests == []


@pytest.mark.parametrize(
    "env, message",
    [
        ({"PIPEDREAM_PROJECT_ENVIRONMENT": "development"}, "no project: set PIPEDREAM_PROJECT_ID"),
        ({"PIPEDREAM_PROJECT_ID": PROJECT},
         "no environment: set PIPEDREAM_PROJECT_ENVIRONMENT to development or production"),
        ({"PIPEDREAM_PROJECT_ID": "abc", "PIPEDREAM_PROJECT_ENVIRONMENT": "development"},
         "project id 'abc' (from PIPEDREAM_PROJECT_ID) is not a Pipedream project id"),
        ({"PIPEDREAM_PROJECT_ID": PROJECT, "PIPEDREAM_PROJECT_ENVIRONMENT": "staging"},
         "environment 'staging' (from PIPEDREAM_PROJECT_ENVIRONMENT) must be development or production"),
    ],
)
def test_project_and_environment_from_the_environment_are_checked(
        write, tmp_path: Path, emulator: Emulator, pd_env: dict[str, str], env: dict[str, str],
        message: str) -> None:
    path = write("""
        version: 1
        name: env
        steps:
          - id: one
            provider: pipedream
            dispatch: {id: a}
            with: {external_user_id: u}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env={**pd_env, **env})
    assert result.code == 2
    assert message in result.stderr
    assert f"{path}:5:15: pipedream provider 'pipedream': " in result.stderr
    assert emulator.requests == []


@pytest.mark.parametrize(
    "dispatch, message",
    [
        ("{key: send-slack}", "does not support dispatch style 'key'; it supports: id, api; Pipedream "
         "Connect runs catalog actions by id; saved keys and inline code are Membrane features"),
        ("{code: 'export default 1'}", "does not support dispatch style 'code'"),
        ("{api: {path: /chat.postMessage}}", "the pipedream provider takes url here, not path"),
    ],
)
def test_unsupported_dispatch_is_a_validation_error(write, tmp_path: Path, emulator: Emulator,
                                                    pd_env: dict[str, str], dispatch: str,
                                                    message: str) -> None:
    path = write(HEADER + f"""
steps:
  - id: one
    provider: chat
    dispatch: {dispatch}
    with: {{account_id: apn_1}}
""")
    result = run_cli(["validate", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 2
    assert message in result.stderr
    assert emulator.requests == []


def test_stash_id_and_options_are_checked_before_sending(write, tmp_path: Path, emulator: Emulator,
                                                         pd_env: dict[str, str]) -> None:
    path = write(HEADER + """
steps:
  - id: one
    provider: chat
    dispatch: {id: a}
    with: {stash_id: 5, versoin: "1"}
""")
    result = run_cli(["validate", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 2
    assert "with.stash_id: 5 is not valid" in result.stderr
    assert "unknown key 'versoin' (did you mean 'version'?)" in result.stderr


@pytest.mark.parametrize(
    "providers, step, message",
    [
        (f"pd: {{type: pipedream, project_id: {PROJECT}, environment: development}}",
         "provider: pd\n    dispatch: {id: a}",
         "needs with.external_user_id, or external_user_id in the provider's block"),
        (f"pd: {{type: pipedream, project_id: {PROJECT}, environment: development, external_user_id: u}}",
         "provider: pd\n    dispatch: {api: {url: 'https://a.io'}}",
         "needs with.account_id"),
        (f"pd: {{type: pipedream, project_id: {PROJECT}, environment: development, external_user_id: u}}",
         "provider: pd\n    dispatch: {id: a}\n    with: {account_id: apn_1}",
         "'account_id' does not apply to dispatch 'id'"),
    ],
)
def test_options_a_style_needs_are_validation_errors(write, tmp_path: Path, emulator: Emulator,
                                                     pd_env: dict[str, str], providers: str,
                                                     step: str, message: str) -> None:
    path = write(f"version: 1\nname: x\nproviders:\n  {providers}\nsteps:\n  - id: one\n    {step}\n")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=pd_env)
    assert result.code == 2, result.stdout + result.stderr
    assert message in result.stderr
    assert emulator.requests == []


def test_emulate_needs_no_credentials_and_keeps_the_end_user(write, tmp_path: Path) -> None:
    path = write(f"""
        version: 1
        name: emulated
        providers:
          pd: {{type: pipedream, project_id: {PROJECT}, environment: production,
                external_user_id: cus_9, client_id: "{{{{ secrets.PD_ID }}}}",
                client_secret: "{{{{ secrets.PD_SECRET }}}}"}}
        steps:
          - id: one
            provider: pd
            dispatch: {{id: a}}
            input: {{n: 1}}
          - id: bare
            provider: pipedream
            dispatch: {{id: b}}
            with: {{external_user_id: u2}}
    """)
    result = run_cli(["run", str(path), "--emulate"], cwd=tmp_path, env=base_env())
    assert result.code == 0, result.stdout + result.stderr
    assert result.step("one")["request"]["external_user_id"] == "cus_9"
    assert result.step("one")["output"]["n"] == 1
    assert result.step("bare")["request"]["external_user_id"] == "u2"


# -- the pieces, in process --------------------------------------------------------------------


def provider(emu: Emulator, redactor: Redactor | None = None, **config: Any) -> PipedreamProvider:
    base = {"type": "pipedream", "base_url": emu.url, "project_id": PROJECT,
            "environment": "development", "external_user_id": "u1",
            "client_id": "cid", "client_secret": SECRET}
    return PipedreamProvider("pd", {**base, **config}, env={},
                             redactor=Redactor() if redactor is None else redactor)


def call(style: str = "id", target: Any = "a", input: Any = None, **options: Any) -> ActionCall:
    return ActionCall(style, target, input, options)


def test_token_is_renewed_two_minutes_before_it_expires(emulator: Emulator,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(pipedream, "_clock", lambda: now[0])
    pd = provider(emulator)
    try:
        pd.send(call(), 5)
        now[0] += 3600 - 121
        pd.send(call(), 5)
        assert len(requests_to(emulator, TOKEN_PATH)) == 1
        now[0] += 2
        pd.send(call(), 5)
        assert len(requests_to(emulator, TOKEN_PATH)) == 2
    finally:
        pd.close()


def test_the_cache_is_keyed_by_credentials_and_scope(emulator: Emulator) -> None:
    instances = [provider(emulator), provider(emulator, environment="production"),
                 provider(emulator, scope="connect:actions:*"),
                 provider(emulator, client_secret="another-secret")]
    try:
        for pd in instances:
            pd.send(call(), 5)
            pd.send(call(), 5)
    finally:
        for pd in instances:
            pd.close()
    assert len(requests_to(emulator, TOKEN_PATH)) == 3
    assert len(set(issued_tokens(emulator))) == 3


def test_secret_and_tokens_are_known_to_the_redactor(emulator: Emulator) -> None:
    redactor = Redactor()
    pd = provider(emulator, redactor)
    try:
        pd.send(call(), 5)
    finally:
        pd.close()
    token = issued_tokens(emulator)[0]
    text = json.dumps({"secret": SECRET, "token": token, "b64": base64.b64encode(token.encode()).decode()})
    assert SECRET not in redactor.text(text) and token not in redactor.text(text)


def test_request_body_checks(emulator: Emulator) -> None:
    pd = provider(emulator, external_user_id=None)
    cases = [
        (call(), "no external user id: set with.external_user_id"),
        (call(input=[1], external_user_id="u"), "input must be a mapping"),
        (call(external_user_id="u", account_id="apn_1"), "with.account_id applies only to the proxy"),
        (call("api", {"url": "https://a.io"}, external_user_id="u"), "the proxy needs with.account_id"),
        (call("api", {"url": "https://a.io"}, external_user_id="u", account_id="a", stash_id="NEW"),
         "with.stash_id applies only to actions (dispatch id)"),
        (call("key", "k", external_user_id="u"), "pipedream does not support dispatch 'key'"),
    ]
    for bad, message in cases:
        with pytest.raises(ProviderError) as info:
            pd.request_body(bad)
        assert info.value.type == "configuration"
        assert message in info.value.message


def test_target_url_appends_the_query() -> None:
    assert target_url({"url": "https://a.io/x"}) == "https://a.io/x"
    assert target_url({"url": "https://a.io/x?a=1", "query": {"b": [1, 2], "c": False, "d": None}}) == (
        "https://a.io/x?a=1&b=1&b=2&c=false&d=")
    assert target_url({"url": "https://a.io/x#top", "query": {"q": "a b"}}) == "https://a.io/x?q=a+b#top"
    assert encode_target("https://slack.com/api/chat.postMessage") == (
        "aHR0cHM6Ly9zbGFjay5jb20vYXBpL2NoYXQucG9zdE1lc3NhZ2U=")


def test_config_precedence(emulator: Emulator) -> None:
    env = {"PIPEDREAM_CLIENT_ID": "env-id", "PIPEDREAM_CLIENT_SECRET": "env-secret",
           "PIPEDREAM_PROJECT_ID": "proj_env", "PIPEDREAM_PROJECT_ENVIRONMENT": "production",
           "PIPEDREAM_BASE_URL": "https://pd.example"}
    block_token = PipedreamProvider("a", {"token": "blk-token"}, env=env, redactor=Redactor())
    assert block_token._token == "blk-token" and block_token._client_secret is None
    assert (block_token.project_id, block_token.environment) == ("proj_env", "production")
    assert block_token.base_url == "https://pd.example"
    from_env = PipedreamProvider("b", {}, env={**env, "PIPEDREAM_ACCESS_TOKEN": "t"}, redactor=Redactor())
    assert from_env._client_secret == "env-secret", "client credentials win over a ready token"
    emulated = PipedreamProvider.emulated_config({"type": "pipedream", "client_secret": "s",
                                                  "external_user_id": "u"}, emulator.url)
    assert emulated["token"] == "emulator-token" and "client_secret" not in emulated
    pd = PipedreamProvider("c", emulated, env={}, redactor=Redactor())
    assert (pd.project_id, pd.environment, pd.external_user_id) == ("proj_emulator", "development", "u")
