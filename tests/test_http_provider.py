"""The http provider against the emulator's echo API, over loopback."""

from __future__ import annotations

from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import base_env, run_cli


def test_api_requests_headers_and_outputs(write, tmp_path: Path, emulator: Emulator) -> None:
    env = base_env(ECHO_URL=emulator.url, API_TOKEN="tok-abcdef")
    path = write("""
        version: 1
        name: http
        providers:
          api:
            type: http
            base_url: "{{ env.ECHO_URL }}/http/v1"
            headers: {Authorization: "Bearer {{ secrets.API_TOKEN }}", X-Team: platform}
        steps:
          - id: create
            provider: api
            dispatch:
              api:
                method: POST
                path: /items
                query: {dry: false, tags: [a, b]}
                headers: {X-Request: "one"}
                body: {name: widget, n: 2}
          - id: absolute
            provider: api
            dispatch:
              api: {method: DELETE, url: "{{ env.ECHO_URL }}/http/abs/{{ steps.create.output.body.n }}"}
            assert: ["steps.absolute.exports.status == 200"]
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 0, result.stdout + result.stderr
    first, second = emulator.requests
    assert (first["method"], first["path"]) == ("POST", "/http/v1/items")
    assert first["query"] == {"dry": "false", "tags": ["a", "b"]}
    assert first["headers"]["authorization"] == "Bearer tok-abcdef"
    assert first["headers"]["x-team"] == "platform" and first["headers"]["x-request"] == "one"
    assert first["body"] == {"name": "widget", "n": 2}
    assert (second["method"], second["path"]) == ("DELETE", "/http/abs/2")
    create = result.step("create")
    assert create["request"] == {
        "method": "POST", "url": f"{emulator.url}/http/v1/items",
        "query": {"dry": False, "tags": ["a", "b"]}, "headers": {"X-Request": "one"},
        "body": {"name": "widget", "n": 2}}
    assert create["output"]["body"] == {"name": "widget", "n": 2}
    assert create["exports"]["status"] == 200
    assert "tok-abcdef" not in result.manifest_path.read_text()


def test_non_2xx_is_a_typed_error_unless_expected(write, tmp_path: Path,
                                                  emulator: Emulator) -> None:
    emulator.add_fault({"path": "/http/missing"}, status=404, body={"message": "no such item"},
                       times=2)
    env = base_env(ECHO_URL=emulator.url)
    path = write("""
        version: 1
        name: http
        providers:
          api: {type: http, base_url: "{{ env.ECHO_URL }}/http"}
        steps:
          - id: tolerated
            provider: api
            with: {expect_status: [200, 404]}
            dispatch: {api: {path: /missing}}
          - id: strict
            provider: api
            dispatch: {api: {path: /missing}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 1
    assert result.step("tolerated")["status"] == "succeeded"
    strict = result.step("strict")
    assert strict["error"]["type"] == "client_error"
    assert strict["error"]["http_status"] == 404
    assert "no such item" in strict["error"]["message"]
