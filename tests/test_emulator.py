"""The local emulator over real HTTP on loopback: Membrane /act, run logs, faults, control API."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.emulator import Emulator, membrane, start

ROOT = Path(__file__).resolve().parents[1]
AUTH = {"Authorization": "Bearer pat-test-token"}
# Membrane's error body (the SDK's ErrorData): key is there when the error has one.
ERROR_KEYS = {"type", "message", "data", "actionRunId"}


@pytest.fixture(autouse=True)
def _clean(emu: Emulator) -> None:
    emu.reset()


@pytest.fixture
def client(emu: Emulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=emu.url, headers=AUTH, timeout=5) as c:
        yield c


def jwt(claims: dict[str, Any], secret: str = "s3cret", alg: str = "HS256") -> str:
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def assert_error(response: httpx.Response, status: int, type_: str | None = None) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert ERROR_KEYS <= set(body) <= ERROR_KEYS | {"key"}
    assert body["type"] in membrane.ERROR_TYPES
    assert body["data"]["actionRunId"] == body["actionRunId"]
    assert body["actionRunId"].startswith("run_")
    if type_ is not None:
        assert body["type"] == type_
    return body


# -- dispatch styles ---------------------------------------------------------------------------


def test_id_with_object_input_echoes_input_and_adds_a_stable_id(client: httpx.Client) -> None:
    sent = {"id": "act_123", "connectionKey": "hubspot", "input": {"email": "j@x.io"}}
    first = client.post("/act", json=sent)
    second = client.post("/act", json=sent)
    assert first.status_code == 200
    out = first.json()
    assert set(out) == {"output", "actionRunId"}
    assert out["output"]["email"] == "j@x.io"
    assert re.fullmatch(r"[0-9a-f]{12}", out["output"]["id"])
    assert second.json()["output"] == out["output"]  # same request, same id
    assert second.json()["actionRunId"] != out["actionRunId"]  # but a new run


def test_key_with_non_object_input_wraps_it(client: httpx.Client) -> None:
    out = client.post("/act", json={"key": "list-things", "input": [1, 2]}).json()["output"]
    assert out["input"] == [1, 2] and set(out) == {"input", "id"}
    other = client.post("/act", json={"key": "list-things", "input": [2, 1]}).json()["output"]
    assert other["id"] != out["id"]


def test_api_echoes_method_path_query_and_body(client: httpx.Client) -> None:
    api = {
        "method": "POST",
        "path": "/crm/v3/objects/contacts",
        "query": {"limit": "10"},
        "headers": {"X-Trace": "1"},
        "body": {"properties": {"email": "jane@example.com"}},
    }
    response = client.post("/act", json={"connectionKey": "hubspot-prod", "api": api})
    assert response.status_code == 200
    out = response.json()["output"]
    assert {k: out[k] for k in ("method", "path", "query", "body")} == {
        k: api[k] for k in ("method", "path", "query", "body")
    }
    assert set(out) == {"method", "path", "query", "body", "id"}


def test_api_without_query_or_body_echoes_defaults(client: httpx.Client) -> None:
    body = {"integrationKey": "slack", "api": {"method": "GET", "path": "/users"}}
    out = client.post("/act", json=body).json()["output"]
    assert out["query"] == {} and out["body"] is None


def test_code_returns_its_input(client: httpx.Client) -> None:
    body = {"code": "export default async ({input}) => input", "connectionId": "c1", "input": {}}
    response = client.post("/act", json=body)
    assert response.status_code == 200
    assert response.json()["output"]["input"] == {}


# -- request checks ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        {"input": {}},
        {"id": "a", "key": "b"},
        {"api": {"method": "GET", "path": "/"}, "code": "x", "connectionKey": "c"},
    ],
)
def test_exactly_one_dispatch_style(client: httpx.Client, body: dict) -> None:
    error = assert_error(client.post("/act", json=body), 400, "bad_request")
    assert "exactly one of id, key, api, code" in error["message"]


@pytest.mark.parametrize("style", ["api", "code"])
def test_inline_styles_need_a_connection(client: httpx.Client, style: str) -> None:
    value: Any = {"method": "GET", "path": "/x"} if style == "api" else "return 1"
    error = assert_error(client.post("/act", json={style: value}), 400, "bad_request")
    assert "key" not in error and "needs a connection" in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"id": 5},
        {"key": ""},
        {"code": None, "connectionKey": "c"},
        {"api": "GET /x", "connectionKey": "c"},
        {"api": {"method": "GET"}, "connectionKey": "c"},
        {"api": {"method": "FETCH", "path": "/x"}, "connectionKey": "c"},
        {"api": {"method": "GET", "path": "/x", "query": "a=1"}, "connectionKey": "c"},
        {"api": {"method": "GET", "path": "/x", "url": "y"}, "connectionKey": "c"},
        {"key": "k", "connectionId": 7},
        {"key": "k", "meta": "m"},
        {"key": "k", "inputs": {}},
    ],
)
def test_wrong_fields_are_400(client: httpx.Client, body: dict) -> None:
    assert_error(client.post("/act", json=body), 400, "bad_request")


@pytest.mark.parametrize("content", [b"not json", b"[1, 2]", b""])
def test_body_must_be_a_json_object(client: httpx.Client, content: bytes) -> None:
    response = client.post("/act", content=content, headers={"Content-Type": "application/json"})
    assert_error(response, 400, "bad_request")


def assert_refused(response: httpx.Response, status: int, key: str | None) -> dict:
    """A refusal before anything ran: no run, so no actionRunId."""
    assert response.status_code == status, response.text
    body = response.json()
    assert {"type", "message", "data"} <= set(body) <= {"type", "key", "message", "data"}
    assert body["type"] == "bad_request" and body.get("key") == key
    return body


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Basic dXNlcjpwYXNz", "pat-test-token"]
)
def test_missing_or_wrong_auth_is_401_and_runs_nothing(emu: Emulator, header: str | None) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = httpx.post(f"{emu.url}/act", json={"key": "k"}, headers=headers)
    assert_refused(response, 401, "not_authenticated")
    listed = httpx.get(f"{emu.url}/action-run-logs", headers=AUTH).json()
    assert listed == {"items": []}  # a refused request creates no run log


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "ws", "exp": time.time() - 5},
        {"iss": "ws"},
        {"exp": time.time() + 600},
        {"iss": "ws", "exp": "tomorrow"},
    ],
)
def test_expired_or_incomplete_jwt_is_401(emu: Emulator, claims: dict) -> None:
    headers = {"Authorization": f"Bearer {jwt(claims)}"}
    response = httpx.post(f"{emu.url}/act", json={"key": "k"}, headers=headers)
    assert_refused(response, 401, "not_authenticated")


def test_current_jwt_is_accepted(emu: Emulator) -> None:
    token = jwt({"iss": "ws", "id": "tenant", "exp": int(time.time()) + 600})
    response = httpx.post(
        f"{emu.url}/act", json={"key": "k"}, headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


def test_opaque_dotted_token_is_not_taken_for_a_jwt(emu: Emulator) -> None:
    headers = {"Authorization": "Bearer dummy.token.here"}
    assert httpx.post(f"{emu.url}/act", json={"key": "k"}, headers=headers).status_code == 200
    broken = jwt({"iss": "ws", "exp": time.time() + 60}).split(".")
    headers = {"Authorization": f"Bearer {broken[0]}.bm90LWpzb24.{broken[2]}"}
    response = httpx.post(f"{emu.url}/act", json={"key": "k"}, headers=headers)
    assert_refused(response, 401, "not_authenticated")
    headers = {"Authorization": "Bearer pat-0123abcd"}
    assert httpx.post(f"{emu.url}/act", json={"key": "k"}, headers=headers).status_code == 200


def test_workspace_secret_makes_the_signature_count() -> None:
    claims = {"iss": "ws", "exp": int(time.time()) + 600}
    with start(membrane_workspace_secret="s3cret") as emu:
        for token, status in [
            (jwt(claims, "s3cret"), 200),
            (jwt(claims, "wrong"), 401),
            (jwt(claims, "s3cret", alg="HS512"), 401),
            ("pat-opaque-api-token", 200),
            ("opaque-api-token", 200),
        ]:
            headers = {"Authorization": f"Bearer {token}"}
            response = httpx.post(f"{emu.url}/act", json={"key": "k"}, headers=headers)
            assert response.status_code == status, token


# -- failing actions and run logs ---------------------------------------------------------------


@pytest.mark.parametrize(("style", "status"), [("id", 404), ("key", 429), ("key", 503)])
def test_fail_nnn_answers_that_status(client: httpx.Client, style: str, status: int) -> None:
    error = assert_error(client.post("/act", json={style: f"fail-{status}"}), status)
    assert error["type"] == "action_run"
    log = client.get(f"/action-run-logs/{error['actionRunId']}").json()
    assert log["status"] == "error" and log["error"]["type"] == "action_run"


def test_run_log_round_trip_and_replay(client: httpx.Client) -> None:
    sent = {"key": "create-contact", "connectionKey": "crm", "input": {"n": 1}, "meta": {"a": 1}}
    answer = client.post("/act", json=sent).json()
    log = client.get(f"/action-run-logs/{answer['actionRunId']}")
    assert log.status_code == 200
    log_body = log.json()
    assert log_body["action"] == sent
    assert log_body["status"] == "success" and log_body["output"] == answer["output"]
    assert log_body["id"] == answer["actionRunId"] and log_body["createdAt"].endswith("Z")
    replayed = client.post("/act", json=log_body["action"]).json()
    assert replayed["output"] == answer["output"]


def test_failed_call_has_a_run_log_too(client: httpx.Client) -> None:
    error = client.post("/act", json={"id": "a", "key": "b"}).json()
    log = client.get(f"/action-run-logs/{error['actionRunId']}").json()
    assert log["status"] == "error" and log["action"] == {"id": "a", "key": "b"}


def test_run_log_errors(emu: Emulator, client: httpx.Client) -> None:
    missing = client.get("/action-run-logs/run_nope")
    assert missing.status_code == 404
    assert_refused(missing, 404, "not_found")
    run_id = client.post("/act", json={"key": "k"}).json()["actionRunId"]
    assert_refused(httpx.get(f"{emu.url}/action-run-logs/{run_id}"), 401, "not_authenticated")


def test_run_ids_are_deterministic_after_reset(emu: Emulator, client: httpx.Client) -> None:
    first = [client.post("/act", json={"key": "k"}).json()["actionRunId"] for _ in range(3)]
    emu.reset()
    again = [client.post("/act", json={"key": "k"}).json()["actionRunId"] for _ in range(3)]
    assert first == again and len(set(first)) == 3


# -- faults ------------------------------------------------------------------------------------


def test_status_fault_with_default_body_then_times_run_out(
    emu: Emulator, client: httpx.Client
) -> None:
    emu.add_fault({"action": "flaky"}, status=503, times=2)
    for _ in range(2):
        assert_error(client.post("/act", json={"key": "flaky"}), 503, "internal")
    assert client.post("/act", json={"key": "flaky"}).status_code == 200
    assert len(emu.requests) == 3  # faulted requests are logged too


def test_fault_only_hits_its_action(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"action": "flaky"}, status=500)
    assert client.post("/act", json={"key": "steady"}).status_code == 200
    assert client.post("/act", json={"id": "flaky"}).status_code == 500


def test_fault_with_custom_body_and_retry_after(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"action": "k"}, status=429, body={"slow": "down"}, retry_after=7)
    date = "Wed, 21 Oct 2015 07:28:00 GMT"
    emu.add_fault({"action": "k"}, status=429, retry_after=date)
    first = client.post("/act", json={"key": "k"})
    assert first.status_code == 429 and first.json() == {"slow": "down"}
    assert first.headers["retry-after"] == "7"
    second = client.post("/act", json={"key": "k"})
    assert second.headers["retry-after"] == date
    assert assert_error(second, 429, "bad_request")["key"] == "rate_limit_exceeded"


def test_retry_after_alone_decorates_the_normal_answer(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"path": "/act"}, retry_after=3)
    response = client.post("/act", json={"key": "k"})
    assert response.status_code == 200 and response.headers["retry-after"] == "3"


def test_delay_fault(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"action": "slow"}, delay=0.3)
    began = time.perf_counter()
    response = client.post("/act", json={"key": "slow"})
    assert time.perf_counter() - began >= 0.3
    assert response.status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        emu.add_fault({"action": "slow"}, delay=0.5)
        client.post("/act", json={"key": "slow"}, timeout=0.1)


def test_malformed_fault(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"action": "api"}, malformed=True)
    body = {"connectionKey": "c", "api": {"method": "GET", "path": "/"}}
    response = client.post("/act", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert client.post("/act", json=body).json()["output"]["path"] == "/"


def test_drop_fault_closes_the_connection(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"action": "code"}, drop=True)
    body = {"connectionKey": "c", "code": "return 1"}
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/act", json=body)
    assert client.post("/act", json=body).status_code == 200
    assert [r["path"] for r in emu.requests] == ["/act", "/act"]


def test_fault_rules_match_method_and_path_in_order(emu: Emulator, client: httpx.Client) -> None:
    emu.add_fault({"method": "get", "path": "/action-run-logs/run_x"}, status=502)
    emu.add_fault({"path": "/act"}, status=500)
    emu.add_fault({"path": "/act"}, status=501)
    assert client.get("/action-run-logs/run_x").status_code == 502
    assert client.post("/act", json={"key": "k"}).status_code == 500
    assert client.post("/act", json={"key": "k"}).status_code == 501
    assert client.post("/act", json={"key": "k"}).status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [{"times": 0}, {"status": 42}, {"delay": -1}, {"retry_after": 1.5}, {"malformed": "yes"}],
)
def test_bad_fault_is_refused(emu: Emulator, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        emu.add_fault({"path": "/act"}, **kwargs)
    with pytest.raises(ValueError):
        emu.add_fault({"route": "/act"})


# -- control API and the request log -------------------------------------------------------------


def test_request_log_records_provider_requests_only(emu: Emulator, client: httpx.Client) -> None:
    client.post("/act?trace=1", json={"key": "k"}, headers={"X-Extra": "yes"})
    client.get("/_emulator/requests")
    client.get("/nowhere")
    log = emu.requests
    assert [(r["method"], r["path"]) for r in log] == [("POST", "/act"), ("GET", "/nowhere")]
    first = log[0]
    assert set(first) == {"method", "path", "query", "headers", "body", "in_flight", "received_at"}
    assert first["in_flight"] >= 1 and isinstance(first["received_at"], float)  # (an earlier test's may linger)
    assert first["query"] == {"trace": "1"} and first["body"] == {"key": "k"}
    assert first["headers"]["x-extra"] == "yes"
    assert first["headers"]["authorization"] == "Bearer pat-test-token"
    log[0]["path"] = "changed"
    assert emu.requests[0]["path"] == "/act"  # a copy
    emu.clear_requests()
    assert emu.requests == []


def test_control_api_drives_the_emulator(client: httpx.Client) -> None:
    client.post("/act", json={"key": "k"})
    log = client.get("/_emulator/requests")
    assert log.status_code == 200 and log.json()[0]["body"] == {"key": "k"}
    assert client.delete("/_emulator/requests").status_code == 204
    assert client.get("/_emulator/requests").json() == []

    rule = {"match": {"action": "k"}, "status": 429, "retry_after": 1, "times": 2}
    created = client.post("/_emulator/faults", json=rule)
    assert created.status_code == 201 and created.json()["times"] == 2
    assert client.get("/_emulator/faults").json()[0]["match"] == {"action": "k"}
    assert client.post("/act", json={"key": "k"}).status_code == 429
    assert client.post("/_emulator/reset").status_code == 204
    assert client.get("/_emulator/faults").json() == []
    assert client.post("/act", json={"key": "k"}).status_code == 200

    for bad in [{"match": {"nope": "x"}}, {"status": "500"}, {"colour": 1}, [1]]:
        answer = client.post("/_emulator/faults", json=bad)
        assert answer.status_code == 400, bad
    assert client.get("/_emulator/elsewhere").status_code == 404
    assert client.get("/_emulator/health").json() == {"status": "ok"}


def test_unknown_route_and_method(client: httpx.Client) -> None:
    assert client.get("/v2/act").status_code == 404
    assert client.get("/act").status_code == 405


# -- HTTP plumbing -----------------------------------------------------------------------------


def test_keep_alive_reuses_one_connection(client: httpx.Client) -> None:
    addresses = set()
    for i in range(10):
        response = client.post("/act", json={"key": "k", "input": {"i": i}})
        assert response.status_code == 200
        addresses.add(response.extensions["network_stream"].get_extra_info("client_addr"))
    assert len(addresses) == 1


def test_keep_alive_on_a_raw_socket(emu: Emulator) -> None:
    host, port = emu.url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        stream = sock.makefile("rb")
        for _ in range(3):
            body = b'{"key": "k"}'
            sock.sendall(
                b"POST /act HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer pat-t\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
            )
            assert stream.readline().startswith(b"HTTP/1.1 200")
            length = 0
            while (line := stream.readline()) != b"\r\n":
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            assert json.loads(stream.read(length))["output"]["id"]


def test_concurrent_clients(emu: Emulator) -> None:
    def work(n: int) -> list[str]:
        with httpx.Client(base_url=emu.url, headers=AUTH, timeout=5) as c:
            answers = [c.post("/act", json={"key": "k", "input": {"n": n}}) for _ in range(25)]
        assert all(a.status_code == 200 for a in answers)
        return [a.json()["actionRunId"] for a in answers]

    with ThreadPoolExecutor(8) as pool:
        run_ids = [run_id for ids in pool.map(work, range(8)) for run_id in ids]
    assert len(set(run_ids)) == 200 and len(emu.requests) == 200


def test_chunked_request_body(client: httpx.Client) -> None:
    chunks = iter([b'{"key": "k", ', b'"input": {"a": 1}}'])
    response = client.post("/act", content=chunks)
    assert response.status_code == 200 and response.json()["output"]["a"] == 1


def test_stop_closes_kept_alive_connections() -> None:
    emu = start()
    with httpx.Client(base_url=emu.url, headers=AUTH, timeout=2) as c:
        assert c.post("/act", json={"key": "k"}).status_code == 200
        emu.stop()
        emu.stop()  # twice is fine
        with pytest.raises(httpx.TransportError):
            c.post("/act", json={"key": "k"})


def test_import_is_stdlib_only() -> None:
    code = (
        "import sys, engine.emulator; "
        "heavy = {'httpx', 'yaml', 'jinja2', 'jsonschema', 'click'} & set(sys.modules); "
        "print(sorted(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"


def test_serve_forever_in_another_process() -> None:
    code = (
        "from engine.emulator import serve_forever\n"
        "serve_forever('127.0.0.1', 0, on_ready=lambda url: print(url, flush=True))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, headers=AUTH, timeout=5) as c:
            c.post("/_emulator/faults", json={"match": {"action": "x"}, "status": 500})
            assert c.post("/act", json={"key": "x"}).status_code == 500
            assert [r["body"] for r in c.get("/_emulator/requests").json()] == [{"key": "x"}]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=5) != 0  # KeyboardInterrupt reached the caller
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_three_hundred_connections_opened_at_once_are_all_answered(emulator: Emulator) -> None:
    """A fan-out opens its connections together; the listen backlog must hold them (socketserver's
    default of 5 reset most of these)."""
    import http.client
    import threading

    host, port = emulator.url.removeprefix("http://").split(":")
    together = threading.Barrier(300)
    statuses: list[int] = []
    errors: list[str] = []

    def one() -> None:
        try:
            together.wait(timeout=30)
            connection = http.client.HTTPConnection(host, int(port), timeout=30)
            connection.request("POST", "/act", body=json.dumps({"id": "say-hello"}),
                               headers={"Authorization": "Bearer t", "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            statuses.append(response.status)
            connection.close()
        except Exception as exc:  # the failure the test looks for
            errors.append(repr(exc))

    threads = [threading.Thread(target=one) for _ in range(300)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and statuses == [200] * 300
