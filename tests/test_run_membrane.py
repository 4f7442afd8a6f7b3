"""End to end: the CLI as a subprocess, Membrane on the emulator over loopback HTTP."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import act_bodies, base_env, run_cli

CHAIN = """
version: 1
name: chain
vars: {email: jane@example.com}
providers:
  crm: {type: membrane, token: "{{ secrets.MEMBRANE_TOKEN }}"}
steps:
  - id: contact
    provider: crm
    dispatch: {id: create-contact}
    with: {connection_key: hubspot-prod}
    input: {email: "{{ vars.email }}"}
  - id: count
    provider: crm
    dispatch: {key: count-deals}
    with: {integration_key: hubspot}
    input: {n: 3}
  - id: note
    provider: crm
    with: {connection_id: conn_1, meta: {origin: test}}
    dispatch:
      api:
        method: POST
        path: /crm/v3/objects/notes
        query: {limit: "{{ steps.count.output.n }}"}
        body: {contact: "{{ steps.contact.output.id }}", deals: "{{ steps.count.output.n }}"}
outputs:
  note_path: "{{ steps.note.output.path }}"
"""


def test_three_step_chain_sends_the_seed_bodies(write, tmp_path: Path, emulator: Emulator,
                                                membrane_env: dict[str, str]) -> None:
    result = run_cli(["run", str(write(CHAIN))], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    first, second, third = act_bodies(emulator)
    assert first == {"id": "create-contact", "connectionKey": "hubspot-prod",
                     "input": {"email": "jane@example.com"}}
    assert second == {"key": "count-deals", "integrationKey": "hubspot", "input": {"n": 3}}
    contact_id = result.step("contact")["output"]["id"]
    assert third == {
        "api": {"method": "POST", "path": "/crm/v3/objects/notes", "query": {"limit": 3},
                "body": {"contact": contact_id, "deals": 3}},
        "connectionId": "conn_1",
        "meta": {"origin": "test"},
    }
    assert isinstance(third["api"]["body"]["deals"], int)  # a lone expression keeps its type
    # run's remote input check first: the definition of each catalog action, once, before step 1
    # (the api step has none); then the three steps, each a POST /act
    assert [(r["method"], r["path"]) for r in emulator.requests] == [
        ("GET", "/actions/create-contact"), ("GET", "/actions/count-deals"),
        ("POST", "/act"), ("POST", "/act"), ("POST", "/act")]
    for request in emulator.requests:
        assert request["headers"]["authorization"] == "Bearer test-token"
    manifest = result.manifest
    assert manifest["run"]["status"] == "succeeded"
    assert [s["request"] for s in manifest["steps"]] == [first, second, third]
    assert all(len(s["request_sha256"]) == 64 for s in manifest["steps"])
    assert all(s["run_id"] and s["run_id"].startswith("run_") for s in manifest["steps"])
    assert manifest["outputs"] == {"note_path": "/crm/v3/objects/notes"}
    assert "test-token" not in result.manifest_path.read_text()
    lines = result.stdout.splitlines()
    assert lines[0].split()[:5] == ["ok", "contact", "crm", "(membrane)", "id"]
    assert lines[-1] == f"manifest: {result.manifest_path}"


def test_code_style_and_implicit_provider(write, tmp_path: Path, emulator: Emulator,
                                          membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: code
        steps:
          - id: calc
            provider: membrane
            with: {connection_key: k}
            dispatch: {code: "export default async ({input}) => input.a + 1"}
            input: {a: 1}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    assert act_bodies(emulator) == [{"code": "export default async ({input}) => input.a + 1",
                                     "connectionKey": "k", "input": {"a": 1}}]


def test_error_body_keeps_type_key_and_run_id(write, tmp_path: Path, emulator: Emulator,
                                              membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: fails
        steps:
          - id: broken
            provider: membrane
            dispatch: {key: fail-422}
          - id: never
            provider: membrane
            dispatch: {id: x}
        finally:
          - id: report
            provider: membrane
            dispatch: {id: report}
            input: {status: "{{ run.status }}", broken: "{{ steps.broken.error.http_status }}"}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    broken = result.step("broken")
    assert broken["status"] == "failed"
    assert broken["error"]["type"] == "client_error"
    assert broken["error"]["http_status"] == 422
    # Membrane's own error type, kept as given (the SDK's ErrorType: an action run that failed)
    assert broken["error"]["provider_error"] == {"type": "action_run"}
    assert broken["run_id"], "actionRunId is kept on failure too"
    assert result.step("never")["status"] == "not_run"
    assert result.step("report")["status"] == "succeeded"
    assert act_bodies(emulator)[-1]["input"] == {"status": "failed", "broken": 422}
    assert result.manifest["run"]["status"] == "failed"
    assert "FAIL  broken" in result.stdout and "client_error (HTTP 422)" in result.stdout


def test_garbage_answers_become_typed_step_errors(write, tmp_path: Path, emulator: Emulator,
                                                  membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "html"}, malformed=True)
    emulator.add_fault({"action": "slow"}, delay=3)
    emulator.add_fault({"action": "dropped"}, drop=True)
    path = write("""
        version: 1
        name: garbage
        steps:
          - {id: html, provider: membrane, dispatch: {id: html}, continue_on_error: true}
          - id: slow
            provider: membrane
            dispatch: {id: slow}
            timeout: 300ms
            continue_on_error: true
          - {id: dropped, provider: membrane, dispatch: {id: dropped}, continue_on_error: true}
          - {id: fine, provider: membrane, dispatch: {id: fine}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    assert result.step("html")["error"]["type"] == "malformed_response"
    assert result.step("slow")["error"]["type"] == "timeout"
    assert "0.3s" in result.step("slow")["error"]["message"]
    assert result.step("dropped")["error"]["type"] == "connection"
    assert result.step("fine")["status"] == "succeeded"
    assert "Traceback" not in result.stderr + result.stdout


def test_connection_refused_is_a_connection_error(write, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = base_env(MEMBRANE_BASE_URL=f"http://127.0.0.1:{port}", MEMBRANE_TOKEN="t0ken")
    path = write("""
        version: 1
        name: refused
        steps: [{id: a, provider: membrane, dispatch: {id: x}}]
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 1
    assert result.step("a")["error"]["type"] == "connection"


def test_retry_honours_the_policy_and_records_attempts(write, tmp_path: Path, emulator: Emulator,
                                                       membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "limited"}, status=429, retry_after=0, times=2)
    emulator.add_fault({"action": "once-500"}, status=500, times=1)
    emulator.add_fault({"action": "twice-503"}, status=503, times=1)
    path = write("""
        version: 1
        name: retries
        defaults:
          retry: {attempts: 3, backoff: exponential, initial_delay: 10ms, max_delay: 50ms}
        steps:
          - {id: limited, provider: membrane, dispatch: {id: limited}}
          - id: not_by_default
            provider: membrane
            dispatch: {id: once-500}
            continue_on_error: true
          - id: asked_for
            provider: membrane
            dispatch: {id: twice-503}
            retry: {attempts: 2, backoff: fixed, initial_delay: 10ms, on: [5xx]}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1  # not_by_default failed, with continue_on_error
    limited = result.step("limited")
    assert limited["status"] == "succeeded"
    assert [a["http_status"] for a in limited["attempts"]] == [429, 429, 200]
    not_retried = result.step("not_by_default")
    assert [a["http_status"] for a in not_retried["attempts"]] == [500]
    assert not_retried["error"]["type"] == "server_error"
    asked = result.step("asked_for")
    assert asked["status"] == "succeeded"
    assert [a["http_status"] for a in asked["attempts"]] == [503, 200]


def test_when_assert_outputs_and_finally(write, tmp_path: Path, emulator: Emulator,
                                         membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: flow
        vars: {tier: standard, n: 1}
        steps:
          - id: lookup
            provider: membrane
            dispatch: {id: lookup}
            input: {tier: "{{ vars.tier }}", n: "{{ vars.n }}"}
          - id: vip_only
            provider: membrane
            when: "steps.lookup.output.tier == 'vip'"
            dispatch: {id: gift}
          - id: checked
            provider: membrane
            dispatch: {id: check}
            input: {n: "{{ steps.lookup.output.n }}"}
            assert:
              - "{{ steps.checked.output.n == 1 }}"
              - "steps.checked.output.n > 5"
        finally:
          - id: notify
            provider: membrane
            dispatch: {id: notify}
            input: {status: "{{ run.status }}", vip: "{{ steps.vip_only.status }}"}
        outputs:
          tier: "{{ steps.lookup.output.tier }}"
    """)
    result = run_cli(["run", str(path), "--var", "n=1"], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    assert result.step("vip_only")["status"] == "skipped"
    checked = result.step("checked")
    assert checked["status"] == "failed"
    assert checked["error"] == {"type": "assertion", "message":
                                "assertion failed: steps.checked.output.n > 5",
                                "http_status": None, "attribution": None,
                                "location": _where(path, '"steps.checked.output.n > 5"')}
    assert act_bodies(emulator)[-1]["input"] == {"status": "failed", "vip": "skipped"}
    assert result.manifest["outputs"] == {"tier": "standard"}
    assert [s["id"] for s in result.manifest["steps"]] == ["lookup", "vip_only", "checked", "notify"]


def test_secrets_are_redacted_by_taint(write, tmp_path: Path, emulator: Emulator,
                                       membrane_env: dict[str, str]) -> None:
    secret = "s3cr3t-value-42"
    env = dict(membrane_env, API_KEY=secret)
    path = write("""
        version: 1
        name: secrets
        steps:
          - id: send
            provider: membrane
            dispatch: {id: echo}
            input:
              plain: "{{ secrets.API_KEY }}"
              basic: "{{ ('user:' ~ secrets.API_KEY) | b64encode }}"
              upper: "{% for c in secrets.API_KEY %}{{ c | upper }}{% endfor %}"
              visible: "{{ vars.x | default('shown') }}"
    """)
    result = run_cli(["run", str(path), "--json"], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    sent = act_bodies(emulator)[0]["input"]
    assert sent["plain"] == secret
    assert sent["basic"] == base64.b64encode(f"user:{secret}".encode()).decode()
    step = result.step("send")
    assert step["request"]["input"] == {"plain": "***", "basic": "***", "upper": "***",
                                        "visible": "shown"}
    text = result.manifest_path.read_text() + result.stdout + result.stderr
    for leaked in (secret, sent["basic"], secret.upper()):
        assert leaked not in text, f"{leaked} leaked"
    assert step["output"]["plain"] == "***"  # the emulator echoed it; the echo is scrubbed
    assert json.loads(result.stdout)["steps"][0]["request"]["input"]["plain"] == "***"


def test_missing_secrets_are_all_named_and_nothing_is_sent(write, tmp_path: Path,
                                                           emulator: Emulator) -> None:
    env = base_env(MEMBRANE_BASE_URL=emulator.url)
    path = write("""
        version: 1
        name: missing
        providers:
          crm: {type: membrane, token: "{{ secrets.CRM_TOKEN }}"}
        steps:
          - id: a
            provider: crm
            dispatch: {id: x}
            input: {key: "{{ secrets.OTHER_KEY }}"}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 2
    assert f"{path}:4:32: secret 'CRM_TOKEN' is not set" in result.stderr
    assert f"{path}:9:18: secret 'OTHER_KEY' is not set" in result.stderr
    assert emulator.requests == []
    assert not result.manifest_path.exists()


def test_missing_credentials_name_the_variable(write, tmp_path: Path, emulator: Emulator) -> None:
    env = base_env(MEMBRANE_BASE_URL=emulator.url)
    path = write("""
        version: 1
        name: nocreds
        steps: [{id: a, provider: membrane, dispatch: {id: x}}]
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 2
    assert "has no credentials: set MEMBRANE_TOKEN" in result.stderr
    assert f"{path}:3:27:" in result.stderr
    assert emulator.requests == []


def test_invalid_runbook_or_vars_send_nothing(write, tmp_path: Path, emulator: Emulator,
                                              membrane_env: dict[str, str]) -> None:
    bad = write("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x},"
                " bogus: 1}]\n")
    result = run_cli(["run", str(bad)], cwd=tmp_path, env=membrane_env)
    assert result.code == 2 and f"{bad}:3:56: steps[0] (a): unknown key 'bogus'" in result.stderr
    good = write("version: 1\nname: x\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n",
                 "good.yml")
    bad_var = run_cli(["run", str(good), "--var", "no-equals"], cwd=tmp_path, env=membrane_env)
    assert bad_var.code == 2 and "expected KEY=VALUE" in bad_var.stderr
    vars_file = write("- not\n- a mapping\n", "vars.yml")
    bad_file = run_cli(["run", str(good), "--vars-file", str(vars_file)], cwd=tmp_path,
                       env=membrane_env)
    assert bad_file.code == 2 and f"{vars_file}:1:1: a vars file is a mapping" in bad_file.stderr
    dup_file = write("a: 1\na: 2\n", "dup.yml")
    dup = run_cli(["run", str(good), "--vars-file", str(dup_file)], cwd=tmp_path, env=membrane_env)
    assert dup.code == 2 and f"{dup_file}:2:1: duplicate key 'a'" in dup.stderr
    usage = run_cli(["run"], cwd=tmp_path, env=membrane_env)
    assert usage.code == 2
    assert emulator.requests == []


def test_vars_precedence_defaults_file_then_flags(write, tmp_path: Path, emulator: Emulator,
                                                  membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: vars
        vars: {a: default, b: default, c: default}
        steps:
          - id: s
            provider: membrane
            dispatch: {id: x}
            input: {a: "{{ vars.a }}", b: "{{ vars.b }}", c: "{{ vars.c }}", n: "{{ vars.n }}"}
    """)
    vars_file = write("b: from-file\nc: from-file\nn: 1\n", "vars.yml")
    result = run_cli(["run", str(path), "--vars-file", str(vars_file), "--var", "c=flag",
                      "--var", "n=3"], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    assert act_bodies(emulator)[0]["input"] == {"a": "default", "b": "from-file", "c": "flag",
                                                "n": 3}
    assert result.manifest["vars"] == {"a": "default", "b": "from-file", "c": "flag", "n": 3}


def test_json_prints_the_manifest_and_lines_go_to_stderr(write, tmp_path: Path,
                                                         membrane_env: dict[str, str],
                                                         emulator: Emulator) -> None:
    path = write("version: 1\nname: j\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n")
    result = run_cli(["run", str(path), "--json"], cwd=tmp_path, env=membrane_env)
    assert result.code == 0
    assert json.loads(result.stdout) == result.manifest
    assert "ok    a" in result.stderr or "ok  a" in result.stderr.replace("  ", " ")


def test_default_manifest_path_is_under_dot_runbook(write, tmp_path: Path,
                                                    membrane_env: dict[str, str],
                                                    emulator: Emulator) -> None:
    path = write("version: 1\nname: d\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n")
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env, manifest=False)
    assert result.code == 0
    written = list((tmp_path / ".runbook" / "runs").glob("*.json"))
    assert len(written) == 1
    assert result.stdout.splitlines()[-1] == f"manifest: .runbook/runs/{written[0].name}"
    assert written[0].stem == json.loads(written[0].read_text())["run"]["id"]


def test_workspace_credentials_mint_a_signed_jwt(write, tmp_path: Path) -> None:
    from engine import emulator as emulator_module

    path = write("""
        version: 1
        name: jwt
        steps:
          - {id: a, provider: membrane, dispatch: {id: x}}
          - {id: b, provider: membrane, dispatch: {id: y}}
    """)
    with emulator_module.start(membrane_workspace_secret="ws-secret-1") as emu:
        env = base_env(MEMBRANE_BASE_URL=emu.url, MEMBRANE_WORKSPACE_KEY="ws-key",
                       MEMBRANE_WORKSPACE_SECRET="ws-secret-1", MEMBRANE_TENANT_KEY="tenant-7")
        result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
        assert result.code == 0, result.stdout + result.stderr
        tokens = {r["headers"]["authorization"] for r in emu.requests}
        assert len(tokens) == 1, "one token per run, not one per step"
        payload = tokens.pop().split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        assert claims["iss"] == "ws-key" and claims["id"] == "tenant-7"
        assert claims["exp"] > 0
        wrong = run_cli(["run", str(path)], cwd=tmp_path,
                        env=dict(env, MEMBRANE_WORKSPACE_SECRET="not-the-secret"))
        assert wrong.code == 1
        assert wrong.step("a")["error"]["type"] == "authentication"
        assert "not-the-secret" not in wrong.manifest_path.read_text() + wrong.stdout


def test_a_secret_in_a_bad_config_value_is_not_printed(write, tmp_path: Path,
                                                       emulator: Emulator) -> None:
    env = base_env(PIPEDREAM_ACCESS_TOKEN="t", PROJECT="not-a-project-id-42")
    path = write("""
        version: 1
        name: leak
        providers:
          pd: {type: pipedream, project_id: "{{ secrets.PROJECT }}", environment: development,
               external_user_id: u1}
        steps: [{id: a, provider: pd, dispatch: {id: x}}]
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 2
    assert "project_id" in result.stderr
    assert "not-a-project-id-42" not in result.stderr + result.stdout


def _where(path: Path, text: str) -> str:
    """``FILE:LINE:COL`` of the first place ``text`` stands in ``path``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return f"{path}:{number}:{line.index(text) + 1}"
    raise AssertionError(text)
