"""``runbook plan``: every step planned, placeholders for what only a run knows, nothing sent."""

from __future__ import annotations

import ast
import base64
import json
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from engine.emulator import Emulator
from tests.conftest import ROOT, base_env, run_cli

DEMO = str(ROOT / "runbooks" / "demo.yml")


def test_plan_of_the_demo_sends_nothing_and_shows_placeholders(tmp_path: Path, emulator: Emulator,
                                                               membrane_env: dict[str, str]) -> None:
    result = run_cli(["plan", DEMO], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    assert emulator.requests == []  # not even a connection attempt reached it
    out = result.stdout
    for number, step in enumerate(["company", "contact", "enrich", "score"], start=1):
        assert f"{number}. {step}" in out
    assert out.count(f"POST {emulator.url}/act") == 4  # MEMBRANE_BASE_URL, as a run would use it
    for placeholder in ("<steps.company.output.id>", "<steps.contact.output.id>",
                        "<steps.company.output.name>", "<steps.enrich.output.company>"):
        assert placeholder in out
    assert '"email": "jane@example.com"' in out  # vars are rendered
    assert "MEMBRANE_TOKEN (set)" in out and "test-token" not in out
    assert not (tmp_path / ".runbook").exists()  # a plan writes no manifest


def test_plan_request_is_the_body_a_run_sends(tmp_path: Path, emulator: Emulator,
                                               membrane_env: dict[str, str]) -> None:
    """The planned /act bodies match what the provider sends, placeholders aside."""
    planned = json.loads(run_cli(["plan", DEMO, "--json"], cwd=tmp_path, env=membrane_env).stdout)
    assert emulator.requests == []
    ran = run_cli(["run", DEMO], cwd=tmp_path, env=membrane_env)
    assert ran.code == 0, ran.stderr
    sent = {s["id"]: s["request"] for s in ran.manifest["steps"]}
    steps = {s["id"]: s for s in planned["steps"]}
    assert steps["company"]["request"] == sent["company"]  # nothing to wait for: identical
    company = ran.step("company")["output"]
    contact = ran.step("contact")["output"]

    def fill(value):  # the placeholders, replaced by what the run produced
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v) for v in value]
        return {"<steps.company.output.id>": company["id"], "<steps.company.output.name>": company["name"],
                "<steps.contact.output.id>": contact["id"]}.get(value, value)

    assert fill(steps["contact"]["request"]) == sent["contact"]
    assert fill(steps["enrich"]["request"]) == sent["enrich"]
    assert set(steps["score"]["request"]) == set(sent["score"])
    assert steps["contact"]["uses"] == ["steps.company"]
    assert planned["outputs"]["score_run_id"] == "<steps.score.run_id>"


PLANNED = """
version: 1
name: planned
vars: {channel: C0123, n: 3}
providers:
  crm: {type: membrane, token: "{{ secrets.PLAN_TOKEN }}"}
steps:
  - id: first
    provider: crm
    dispatch: {id: list-things}
    input:
      auth: "{{ ('user:' ~ secrets.PLAN_TOKEN) | b64encode }}"
      n: "{{ vars.n * 2 }}"
      home: "{{ env.PLAN_HOME }}"
  - id: second
    provider: crm
    when: "{{ vars.channel != '' }}"
    dispatch: {key: "{{ steps.first.output.next_action }}"}
    input:
      count: "{{ steps.first.output['items'] | length }}"
      text: "Found {{ steps.first.output.total }} things for {{ vars.channel }}"
      first: "{{ steps.first.output['items'][0].id }}"
      pair: ["{{ steps.first.run_id }}", "{{ vars.n }}"]
  - id: third
    provider: crm
    when: "steps.second.output.ok"
    dispatch: {id: x}
  - id: fourth
    provider: crm
    when: "{{ secrets.PLAN_TOKEN != '' }}"
    dispatch: {id: y}
finally:
  - id: notify
    provider: crm
    when: "{{ run.status == 'failed' }}"
    dispatch: {id: alert}
    input: {run: "{{ run.id }}", status: "{{ run.status }}"}
outputs:
  total: "{{ steps.first.output.total }}"
"""


def test_later_steps_get_a_plan_with_placeholders_and_secrets_hidden(write, tmp_path: Path) -> None:
    path = write(PLANNED)
    env = base_env(PLAN_TOKEN="s3cr3t-plan-token", PLAN_HOME="/home/plan")
    result = run_cli(["plan", str(path), "--json"], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert "s3cr3t-plan-token" not in result.stdout
    assert base64.b64encode(b"user:s3cr3t-plan-token").decode() not in result.stdout
    plan = json.loads(result.stdout)
    assert plan["secrets"] == [{"name": "PLAN_TOKEN", "set": True}]
    first, second, third, fourth = plan["steps"]
    assert first["request"]["input"] == {"auth": "***", "n": 6, "home": "/home/plan"}
    assert first["secrets"] == ["PLAN_TOKEN"]
    assert second["request"]["key"] == "<steps.first.output.next_action>"
    assert second["request"]["input"] == {
        "count": "<steps.first.output['items'] | length>",
        "text": "Found <steps.first.output.total> things for C0123",
        "first": "<steps.first.output.items[0].id>",  # written the plain way
        "pair": ["<steps.first.run_id>", 3],
    }
    assert second["when"] == {"decided": True, "runs": True, "expression": "vars.channel != ''"}
    assert third["when"]["decided"] is False and third["when"]["note"] == "at run time"
    assert fourth["when"]["decided"] is False and "secrets" in fourth["when"]["note"]
    (notify,) = plan["finally"]
    assert notify["when"]["decided"] is False
    assert notify["request"]["input"] == {"run": "<run.id>", "status": "<run.status>"}
    assert plan["outputs"] == {"total": "<steps.first.output.total>"}

    skipped = run_cli(["plan", str(path), "--var", "channel=''"], cwd=tmp_path, env=env)
    assert "skipped: vars.channel != '' is false" in skipped.stdout
    assert "at run time: steps.second.output.ok" in skipped.stdout
    assert "s3cr3t-plan-token" not in skipped.stdout + skipped.stderr


def test_unset_secret_and_failing_template_are_reported_not_fatal(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: gaps
        vars: {recipient: ops@example.com}
        steps:
          - id: a
            provider: membrane
            dispatch: {id: x}
            input: {to: "{{ vars.recipient }}", token: "{{ secrets.GAP_TOKEN }}", n: "{{ vars.n + 'x' }}"}
    """)
    result = run_cli(["plan", str(path), "--var", "n=1"], cwd=tmp_path, env=base_env())
    assert result.code == 0, result.stderr
    assert "GAP_TOKEN (NOT SET)" in result.stdout
    assert f"{path}:8:78: warning: steps[0] (a) input.n: fails at run time: TypeError" in result.stderr


def test_unset_var_is_an_error_for_plan(write, tmp_path: Path) -> None:
    """plan knows every variable of the run, as run does: a vars.X nothing sets is exit 2."""
    path = write("""
        version: 1
        name: gaps
        steps:
          - id: a
            provider: membrane
            dispatch: {id: x}
            input: {to: "{{ vars.recipient }}"}
    """)
    result = run_cli(["plan", str(path)], cwd=tmp_path, env=base_env())
    assert result.code == 2
    assert f"{path}:7:17: steps[0] (a) input.to: vars.recipient is not set" in result.stderr
    assert result.stdout == ""


def test_invalid_runbook_is_exit_2_with_every_problem(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: broken
        steps:
          - id: a
            provider: membrain
            dispatch: {id: x}
          - id: b
            provider: membrane
            dispatch: {id: "{{ steps.c.output }}"}
    """)
    result = run_cli(["plan", str(path)], cwd=tmp_path)
    assert result.code == 2
    assert f"{path}:5:15: steps[0] (a) provider: unknown provider 'membrain'" in result.stderr
    assert f"{path}:9:20: steps[1] (b) dispatch.id: unknown step 'c'" in result.stderr
    assert result.stdout == ""


def test_plan_imports_no_httpx(tmp_path: Path) -> None:
    """plan asks the provider modules for their requests, and sending is what imports httpx."""
    runbooks = [DEMO, str(ROOT / "runbooks" / "pipedream-stash.yml"), str(ROOT / "runbooks" / "http-api.yml")]
    code = (
        "import sys\n"
        "from engine.cli import main\n"
        f"codes = [main(['plan', path, '--json']) for path in {runbooks!r}]\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] == 'httpx' or m in "
        "('engine.providers._http', 'engine.emulator')]\n"
        "used = [m for m in ('engine.providers.membrane', 'engine.providers.pipedream', 'engine.providers.http') "
        "if m in sys.modules]\n"
        "sys.stderr.write(repr((loaded, used)))\n"
        "sys.exit(max(codes))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=base_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    loaded, used = ast.literal_eval(proc.stderr.strip())
    assert loaded == []
    assert len(used) == 3  # the requests shown are the providers' own


def test_plan_of_http_and_pipedream_steps(tmp_path: Path) -> None:
    http = run_cli(["plan", str(ROOT / "runbooks" / "http-api.yml")], cwd=tmp_path)
    assert http.code == 0, http.stderr
    assert "POST https://api.example.com/v1/items" in http.stdout
    assert "GET https://api.example.com/v1/items/<steps.create.output.body.name>?verbose=true" in http.stdout
    pd = run_cli(["plan", str(ROOT / "runbooks" / "pipedream-stash.yml"), "--json"], cwd=tmp_path)
    assert pd.code == 0, pd.stderr
    steps = json.loads(pd.stdout)["steps"]
    assert steps[0]["endpoint"].startswith("POST https://api.pipedream.com/v1/connect/")
    assert steps[0]["request"]["configured_props"]
    assert steps[1]["request"]["stash_id"] == "<steps.download.stash_id>"


PROXIED = """
version: 1
name: proxied
vars: {n: 3, channel: C0123}
providers:
  pd:
    type: pipedream
    project_id: proj_abc123
    environment: production
    external_user_id: cus_42
    token: "{{ secrets.PD_TOKEN }}"
steps:
  - id: post
    provider: pd
    with: {account_id: apn_kGhJ5Dd}
    dispatch:
      api:
        method: POST
        url: "https://slack.com/api/chat.postMessage?as_user=1#section"
        query: {tags: [a, "b c"], dry: true}
        headers: {Content-Type: application/json, X-Count: "{{ vars.n }}"}
        body: {channel: "{{ vars.channel }}", text: hello}
  - id: act
    provider: pd
    dispatch: {id: slack-send-message}
    with: {version: "1.0.0"}
    input: {channel: "{{ vars.channel }}"}
"""


def test_plan_shows_the_request_the_provider_sends(write, tmp_path: Path, emulator: Emulator) -> None:
    """For a Connect proxy call (a query, a #fragment) and an action, plan's endpoint, headers
    and request are what reaches the service: the provider built both."""
    path = write(PROXIED)
    env = base_env(PIPEDREAM_BASE_URL=emulator.url, PD_TOKEN="emulator-token")
    planned = json.loads(run_cli(["plan", str(path), "--json"], cwd=tmp_path, env=env).stdout)
    assert "emulator-token" not in json.dumps(planned)
    ran = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert ran.code == 0, ran.stderr
    connect = [r for r in emulator.requests if r["path"].startswith("/v1/connect/")]
    # run's remote input check: the action's definition (in its version), once, before step 1;
    # plan (without --remote) shows only the steps' own requests
    assert [(r["method"], r["path"], r["query"]) for r in connect[:1]] == [
        ("GET", "/v1/connect/proj_abc123/actions/slack-send-message", {"version": "1.0.0"})]
    received = connect[1:]
    assert len(received) == 2
    for step, got in zip(planned["steps"], received, strict=True):
        method, _, url = step["endpoint"].partition(" ")
        parts = urlsplit(url)
        query = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(parts.query).items()}
        assert (method, f"{parts.scheme}://{parts.netloc}", parts.path, query) == (
            got["method"], emulator.url, got["path"], got["query"])
        assert step["headers"]["Authorization"] == "***"
        assert got["headers"]["authorization"] == "Bearer emulator-token"
        for name, value in step["headers"].items():
            if name != "Authorization":
                assert got["headers"][name.lower()] == value
        assert step["request"] == ran.step(step["id"])["request"]  # the record, too
    post = planned["steps"][0]
    target = base64.urlsafe_b64decode(post["endpoint"].split("/proxy/")[1].split("?")[0] + "==").decode()
    assert target == post["request"]["url"] == \
        "https://slack.com/api/chat.postMessage?as_user=1&tags=a&tags=b+c&dry=true#section"
    assert received[0]["body"] == post["request"]["body"] == {"channel": "C0123", "text": "hello"}
    assert post["headers"]["x-pd-proxy-X-Count"] == "3"  # sent as a string, as shown
    act = planned["steps"][1]
    assert received[1]["body"] == act["request"]
    assert "with" not in act  # its options are in the request


def test_plan_shows_header_names_never_secrets_and_warns_of_a_refused_request(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: headers
        providers:
          api:
            type: http
            base_url: "https://api.example.com"
            headers: {Authorization: "Bearer {{ secrets.API_KEY }}", X-Key: "{{ secrets.API_KEY | upper }}",
                      Accept: application/json}
          bare: {type: http}
        steps:
          - id: get
            provider: api
            dispatch: {api: {path: /me, headers: {X-Trace: t1}}}
            with: {expect_status: [200, 404]}
          - {id: nowhere, provider: bare, dispatch: {api: {path: /x}}}
    """)
    env = base_env(API_KEY="s3cr3t-header-value")
    result = run_cli(["plan", str(path), "--json"], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert "s3cr3t" not in result.stdout.lower() + result.stderr.lower()
    get, nowhere = json.loads(result.stdout)["steps"]
    assert get["endpoint"] == "GET https://api.example.com/me"
    assert get["headers"] == {"Authorization": "***", "X-Key": "***", "Accept": "application/json", "X-Trace": "t1"}
    assert get["with"] == {"expect_status": [200, 404]}  # not in the request: shown apart
    assert nowhere["endpoint"] is None and nowhere["request"].startswith("<error: ")
    assert (f"{path}:15:45: warning: steps[1] (nowhere) dispatch: fails at run time: "
            "http provider 'bare' has no base_url") in result.stderr
    text = run_cli(["plan", str(path)], cwd=tmp_path, env=env)
    assert "   headers   Authorization: ***, X-Key: ***, Accept: application/json, X-Trace: t1\n" in text.stdout
    assert "s3cr3t" not in text.stdout.lower()
