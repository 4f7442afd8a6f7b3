"""Inputs checked against the actions' own schemas (engine/remote_check.py), end to end: the CLI
as a subprocess, the emulator's catalog actions over loopback HTTP. ``run`` makes the check by
default (``--no-remote-check`` skips it); ``validate --remote`` and ``plan --remote`` on demand."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import base_env, run_cli

MEMBRANE = """
version: 1
name: remote
vars: {n: 5}
providers:
  crm: {type: membrane, token: "{{ secrets.MEMBRANE_TOKEN }}"}
steps:
  - id: contact
    provider: crm
    dispatch: {key: hubspot-create-contact}
    with: {connection_key: crm}
    input: INPUT
"""

PIPEDREAM = """
version: 1
name: remote-pd
providers:
  gh: {type: pipedream, project_id: proj_rc1, environment: development, external_user_id: u1,
       token: "{{ secrets.PD_TOKEN }}"}
steps:
  - id: issue
    provider: gh
    dispatch: {id: github-create-issue}
    input: INPUT
"""


def _env(emulator: Emulator) -> dict[str, str]:
    return base_env(MEMBRANE_BASE_URL=emulator.url, MEMBRANE_TOKEN="pat-test", PIPEDREAM_BASE_URL=emulator.url,
                    PD_TOKEN="emulator-token")


def _paths(emulator: Emulator) -> list[str]:
    return [f"{r['method']} {r['path']}" for r in emulator.requests]


def test_a_literal_input_that_does_not_match_is_refused_before_anything_is_sent(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", "{name: Jane, email: 7}"))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator), manifest=False)
    assert result.code == 2, result.stdout + result.stderr
    assert re.search(rf"{re.escape(str(path))}:11:\d+: .*7 is not of type 'string'", result.stderr), result.stderr
    assert "Create contact" in result.stderr and "hubspot-create-contact" in result.stderr
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"]  # the definition, and nothing else


def test_a_missing_required_key_is_found_though_other_values_are_templated(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", '{name: "{{ vars.n }}"}'))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator), manifest=False)
    assert result.code == 2
    assert "'email' is a required property" in result.stderr
    assert not any(p.endswith("/act") for p in _paths(emulator))


def test_a_rendered_input_is_checked_just_before_its_step_is_sent(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", '{email: "{{ vars.n }}"}'))  # renders to the integer 5
    result = run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator))
    assert result.code == 1, result.stdout + result.stderr
    step = result.step("contact")
    assert step["error"]["type"] == "configuration"
    assert re.search(r"runbook\.yml:11:\d+: the rendered input does not match", step["error"]["message"])
    assert not any(p.endswith("/act") for p in _paths(emulator))  # not sent


def test_no_remote_check_sends_it_and_the_service_refuses(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", "{email: 7}"))
    result = run_cli(["run", str(path), "--no-remote-check"], cwd=tmp_path, env=_env(emulator))
    assert result.code == 1
    assert result.step("contact")["error"]["provider_error"] == {"type": "bad_request"}
    assert _paths(emulator) == ["POST /act"]
    emulator.clear_requests()
    refused = run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator), manifest=False)  # on: the default
    assert refused.code == 2 and "7 is not of type 'string'" in refused.stderr
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"]
    emulator.clear_requests()
    assert run_cli(["run", str(path), "--remote-check"], cwd=tmp_path, env=_env(emulator), manifest=False).code == 2
    assert _paths(emulator) == []  # from the cache the refused run left


def test_definitions_are_cached_without_secrets_and_refreshed_on_demand(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", "{email: jane@example.com}"))
    assert run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator)).code == 0
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact", "POST /act"]
    cached = list((tmp_path / ".runbook" / "cache" / "remote" / "membrane").glob("*.json"))
    assert len(cached) == 1
    text = cached[0].read_text()
    assert "pat-test" not in text and json.loads(text)["definition"]["name"] == "Create contact"
    emulator.clear_requests()
    assert run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator)).code == 0
    assert _paths(emulator) == ["POST /act"]  # from the cache
    emulator.clear_requests()
    assert run_cli(["run", str(path), "--refresh"], cwd=tmp_path, env=_env(emulator)).code == 0
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact", "POST /act"]


def test_pipedream_props_required_and_typed(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(PIPEDREAM.replace("INPUT", "{github: {authProvisionId: apn_1}, repo: 5}"))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator), manifest=False)
    assert result.code == 2, result.stdout + result.stderr
    assert "'title' is a required prop (string)" in result.stderr
    assert "5 is not of type string" in result.stderr
    assert _paths(emulator) == ["GET /v1/connect/proj_rc1/actions/github-create-issue"]
    good = write(PIPEDREAM.replace("INPUT", "{github: {authProvisionId: apn_1}, repo: a/b, title: t}"))
    assert run_cli(["run", str(good)], cwd=tmp_path, env=_env(emulator)).code == 0


# -- validate --remote -------------------------------------------------------------------------


def test_validate_remote_reports_literal_mismatches_like_other_errors(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", "{name: Jane, email: 7}"))
    offline = run_cli(["validate", str(path)], cwd=tmp_path, env=_env(emulator))
    assert offline.code == 0, offline.stdout + offline.stderr
    assert _paths(emulator) == []  # without --remote: nothing sent
    result = run_cli(["validate", str(path), "--remote"], cwd=tmp_path, env=_env(emulator))
    assert result.code == 2, result.stdout + result.stderr
    assert re.search(rf"{re.escape(str(path))}:11:\d+: .*7 is not of type 'string'", result.stdout + result.stderr)
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"]
    as_json = json.loads(run_cli(["validate", str(path), "--remote", "--format", "json"], cwd=tmp_path,
                                 env=_env(emulator)).stdout)
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"]  # the second from the cache
    assert [p["line"] for p in as_json["problems"] if "not of type" in p["message"]] == [11]
    assert run_cli(["validate", str(path), "--remote", "--refresh"], cwd=tmp_path, env=_env(emulator)).code == 2
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"] * 2


def test_validate_remote_pipedream_and_a_valid_input(write, tmp_path: Path, emulator: Emulator) -> None:
    bad = write(PIPEDREAM.replace("INPUT", "{github: {authProvisionId: apn_1}, repo: 5}"), "bad.yml")
    good = write(PIPEDREAM.replace("INPUT", "{github: {authProvisionId: apn_1}, repo: a/b, title: t}"), "good.yml")
    result = run_cli(["validate", str(bad), str(good), "--remote"], cwd=tmp_path, env=_env(emulator))
    assert result.code == 2, result.stdout + result.stderr
    assert "'title' is a required prop (string)" in result.stdout + result.stderr
    assert f"{good}: valid" in result.stdout + result.stderr
    assert not any(line.startswith(f"{good}:") and "valid" not in line for line in result.stderr.splitlines())
    assert _paths(emulator).count("GET /v1/connect/proj_rc1/actions/github-create-issue") == 1  # then cached
    assert not any("/actions/run" in p for p in _paths(emulator))
    assert run_cli(["validate", str(good), "--remote"], cwd=tmp_path, env=_env(emulator)).code == 0


def test_validate_remote_needs_the_secrets_the_providers_name(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", "{email: jane@example.com}"))
    env = {k: v for k, v in _env(emulator).items() if k != "MEMBRANE_TOKEN"}
    assert run_cli(["validate", str(path)], cwd=tmp_path, env=env).code == 0
    result = run_cli(["validate", str(path), "--remote"], cwd=tmp_path, env=env)
    assert result.code == 2 and "secret 'MEMBRANE_TOKEN' is not set" in result.stdout + result.stderr
    assert _paths(emulator) == []


def test_validate_without_remote_imports_no_http_code(write, tmp_path: Path) -> None:
    path = write(MEMBRANE.replace("INPUT", "{email: jane@example.com}"))
    code = ("import sys\n"
            "from engine.cli import main\n"
            f"code = main(['validate', {str(path)!r}])\n"
            "sys.stderr.write(repr(sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'httpcore') or m in "
            "('engine.remote_check', 'engine.preflight', 'engine.providers._http'))))\n"
            "sys.exit(code)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=base_env(), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert ast.literal_eval(proc.stderr.strip().splitlines()[-1]) == []


# -- plan --remote -----------------------------------------------------------------------------


def test_plan_remote_shows_the_action_the_check_resolved(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", "{email: jane@example.com}"))
    offline = json.loads(run_cli(["plan", str(path), "--json"], cwd=tmp_path, env=_env(emulator)).stdout)
    assert offline["steps"][0]["action"] is None
    assert _paths(emulator) == []  # without --remote plan sends nothing
    fetched = json.loads(run_cli(["plan", str(path), "--json", "--remote"], cwd=tmp_path, env=_env(emulator)).stdout)
    action = fetched["steps"][0]["action"]
    assert action["name"] == "Create contact" and action["version"] and action["cached"] is False
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"]  # the check's, and no step
    text = run_cli(["plan", str(path), "--remote"], cwd=tmp_path, env=_env(emulator))
    assert text.code == 0, text.stderr
    assert f"   action    Create contact v {action['version']} (from cache)" in text.stdout.splitlines()
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"]
    assert "action " not in run_cli(["plan", str(path)], cwd=tmp_path, env=_env(emulator)).stdout
    refreshed = json.loads(run_cli(["plan", str(path), "--json", "--remote", "--refresh"], cwd=tmp_path,
                                   env=_env(emulator)).stdout)
    assert refreshed["steps"][0]["action"] == action
    assert "pat-test" not in json.dumps(refreshed)


def test_plan_remote_refuses_what_run_refuses(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(PIPEDREAM.replace("INPUT", "{github: {authProvisionId: apn_1}, repo: 5}"))
    assert run_cli(["plan", str(path)], cwd=tmp_path, env=_env(emulator)).code == 0
    result = run_cli(["plan", str(path), "--remote"], cwd=tmp_path, env=_env(emulator))
    assert result.code == 2
    assert re.search(rf"{re.escape(str(path))}:\d+:\d+: .*'title' is a required prop", result.stderr), result.stderr
    assert _paths(emulator) == ["GET /v1/connect/proj_rc1/actions/github-create-issue"]


def test_under_emulate_the_check_runs_and_caches_nothing(write, tmp_path: Path) -> None:
    """The emulator is on another port each run: a cache entry of it would never be read again."""
    bad = write(MEMBRANE.replace("INPUT", "{name: Jane, email: 7}"), "bad.yml")
    result = run_cli(["run", str(bad), "--emulate"], cwd=tmp_path, env=base_env(), manifest=False)
    assert result.code == 2 and "7 is not of type 'string'" in result.stderr, result.stderr
    good = write(MEMBRANE.replace("INPUT", "{email: jane@example.com}"), "good.yml")
    assert run_cli(["run", str(good), "--emulate"], cwd=tmp_path, env=base_env()).code == 0
    assert not (tmp_path / ".runbook" / "cache").exists()
