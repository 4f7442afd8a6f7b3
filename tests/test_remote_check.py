"""Inputs checked against the actions' own schemas (engine/remote_check.py), end to end: the CLI
as a subprocess, the emulator's catalog actions over loopback HTTP."""

from __future__ import annotations

import json
import re
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
    result = run_cli(["run", str(path), "--remote-check"], cwd=tmp_path, env=_env(emulator), manifest=False)
    assert result.code == 2, result.stdout + result.stderr
    assert re.search(rf"{re.escape(str(path))}:11:\d+: .*7 is not of type 'string'", result.stderr), result.stderr
    assert "Create contact" in result.stderr and "hubspot-create-contact" in result.stderr
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact"]  # the definition, and nothing else


def test_a_missing_required_key_is_found_though_other_values_are_templated(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", '{name: "{{ vars.n }}"}'))
    result = run_cli(["run", str(path), "--remote-check"], cwd=tmp_path, env=_env(emulator), manifest=False)
    assert result.code == 2
    assert "'email' is a required property" in result.stderr
    assert not any(p.endswith("/act") for p in _paths(emulator))


def test_a_rendered_input_is_checked_just_before_its_step_is_sent(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", '{email: "{{ vars.n }}"}'))  # renders to the integer 5
    result = run_cli(["run", str(path), "--remote-check"], cwd=tmp_path, env=_env(emulator))
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
    assert run_cli(["run", str(path)], cwd=tmp_path, env=_env(emulator)).code == 1  # off: the default for now
    assert _paths(emulator) == ["POST /act"]


def test_definitions_are_cached_without_secrets_and_refreshed_on_demand(
        write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(MEMBRANE.replace("INPUT", "{email: jane@example.com}"))
    assert run_cli(["run", str(path), "--remote-check"], cwd=tmp_path, env=_env(emulator)).code == 0
    cached = list((tmp_path / ".runbook" / "cache" / "remote" / "membrane").glob("*.json"))
    assert len(cached) == 1
    text = cached[0].read_text()
    assert "pat-test" not in text and json.loads(text)["definition"]["name"] == "Create contact"
    emulator.clear_requests()
    assert run_cli(["run", str(path), "--remote-check"], cwd=tmp_path, env=_env(emulator)).code == 0
    assert _paths(emulator) == ["POST /act"]  # from the cache
    emulator.clear_requests()
    assert run_cli(["run", str(path), "--remote-check", "--refresh"], cwd=tmp_path, env=_env(emulator)).code == 0
    assert _paths(emulator) == ["GET /actions/hubspot-create-contact", "POST /act"]


def test_pipedream_props_required_and_typed(write, tmp_path: Path, emulator: Emulator) -> None:
    path = write(PIPEDREAM.replace("INPUT", "{github: {authProvisionId: apn_1}, repo: 5}"))
    result = run_cli(["run", str(path), "--remote-check"], cwd=tmp_path, env=_env(emulator), manifest=False)
    assert result.code == 2, result.stdout + result.stderr
    assert "'title' is a required prop (string)" in result.stderr
    assert "5 is not of type string" in result.stderr
    assert _paths(emulator) == ["GET /v1/connect/proj_rc1/actions/github-create-issue"]
    good = write(PIPEDREAM.replace("INPUT", "{github: {authProvisionId: apn_1}, repo: a/b, title: t}"))
    assert run_cli(["run", str(good), "--remote-check"], cwd=tmp_path, env=_env(emulator)).code == 0
