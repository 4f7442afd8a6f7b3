"""for_each (SPEC §9) end to end: the CLI as a subprocess against the emulator on loopback,
checked through the manifest, the reports and the emulator's request log."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from engine.emulator import Emulator
from tests.conftest import act_bodies, base_env, check_manifest, run_cli, run_on_terminal

USERS = [{"email": f"u{i}@example.com", "active": i != 1} for i in range(5)]

FAN_OUT = """\
version: 1
name: fan-out
vars:
  users: {users}
providers:
  crm: {{type: membrane}}
steps:
  - id: invite
    provider: crm
    for_each: "{{{{ vars.users }}}}"
    as: user
    concurrency: {concurrency}
    fail_fast: {fail_fast}
    dispatch: {{key: invite-user}}
    input: {{email: "{{{{ user.email }}}}", position: "{{{{ loop.index }}}}", of: "{{{{ loop.length }}}}"}}
{extra}
  - id: report
    provider: crm
    dispatch: {{key: report}}
    input:
      outputs: "{{{{ steps.invite.output | length }}}}"
      first: "{{{{ steps.invite.items[0].output.email }}}}"
      second_status: "{{{{ steps.invite.items[1].status }}}}"
finally:
  - id: notify
    provider: crm
    dispatch: {{key: notify}}
    input: {{status: "{{{{ run.status }}}}"}}
"""


def fan_out(users: list[Any] = USERS, *, concurrency: int = 2, fail_fast: bool = True, extra: str = "") -> str:
    return FAN_OUT.format(users=json.dumps(users), concurrency=concurrency,
                          fail_fast=str(fail_fast).lower(), extra=extra)


def invites(emu: Emulator) -> list[dict[str, Any]]:
    return [b for b in act_bodies(emu) if b.get("key") == "invite-user"]


def test_each_item_is_sent_with_its_item_and_loop_and_later_steps_read_the_items(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = write(fan_out(extra='    when: "{{ user.active }}"'))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    sent = sorted((b["input"]["email"], b["input"]["position"], b["input"]["of"]) for b in invites(emulator))
    assert sent == [(f"u{i}@example.com", i + 1, 5) for i in (0, 2, 3, 4)]  # u1 is not active: skipped
    step = result.step("invite")
    assert step["status"] == "succeeded"
    assert [item["index"] for item in step["items"]] == [0, 1, 2, 3, 4]
    assert [item["status"] for item in step["items"]] == ["succeeded", "skipped", "succeeded", "succeeded",
                                                          "succeeded"]
    assert step["output"][1] is None and step["output"][0]["email"] == "u0@example.com"
    assert [item["request"]["input"]["email"] for item in step["items"] if item["request"]] == [
        "u0@example.com", "u2@example.com", "u3@example.com", "u4@example.com"]
    assert all(len(item["request_sha256"]) == 64 for item in step["items"] if item["request"])
    report = next(b for b in act_bodies(emulator) if b.get("key") == "report")
    assert report["input"] == {"outputs": 5, "first": "u0@example.com", "second_status": "skipped"}
    assert "ok    invite" in result.stdout and "5 items: 4 succeeded, 1 skipped" in result.stdout


def test_a_mapping_gives_key_value_items_and_an_empty_list_succeeds_with_no_items(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = write("""\
        version: 1
        name: shapes
        providers:
          crm: {type: membrane}
        steps:
          - id: teams
            provider: crm
            for_each: {red: 1, blue: 2}
            dispatch: {key: team}
            input: {name: "{{ item.key }}", size: "{{ item.value }}"}
          - id: nobody
            provider: crm
            for_each: []
            dispatch: {key: nobody}
          - id: after
            provider: crm
            dispatch: {key: after}
            input: {n: "{{ steps.nobody.output | length }}"}
        """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    assert [b["input"] for b in act_bodies(emulator) if b.get("key") == "team"] == [
        {"name": "red", "size": 1}, {"name": "blue", "size": 2}]
    assert result.step("nobody")["status"] == "succeeded" and result.step("nobody")["output"] == []
    assert result.step("nobody")["items"] == []
    assert next(b for b in act_bodies(emulator) if b.get("key") == "after")["input"] == {"n": 0}


def test_for_each_that_renders_to_something_else_fails_located_before_any_item_is_sent(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = write(fan_out())
    result = run_cli(["run", str(path), "--var", "users=nobody"], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    assert invites(emulator) == []
    step = result.step("invite")
    assert step["status"] == "failed" and step["items"] == []
    assert step["error"]["type"] == "template"
    assert step["error"]["message"] == "for_each renders to a string, not a list (or a mapping)"
    assert step["error"]["location"] == f"{path}:10:15"
    assert f"{path}:10:15" in result.stdout
    assert result.step("report")["status"] == "not_run" and result.step("notify")["status"] == "succeeded"


def test_validation_refuses_fan_out_mistakes_before_anything_is_sent(write, tmp_path: Path) -> None:
    path = write("""\
        version: 1
        name: slips
        providers:
          crm: {type: membrane, rate_limit: {requests: 0, per: 1s}}
        steps:
          - id: a
            provider: crm
            concurrency: 3
            dispatch: {key: k}
            input: {x: "{{ item.x }}"}
          - id: b
            provider: crm
            for_each: "vars.users"
            dispatch: {key: k}
          - id: c
            provider: crm
            for_each: "{{ loop }}"
            as: steps
            dispatch: {key: k}
            input: {x: "{{ steps.a.items }}", y: "{{ usr }}"}
        """)
    result = run_cli(["validate", str(path)], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.splitlines()[:-1] == [
        f"{path}:4:48: providers.crm.rate_limit.requests: 0 is less than the minimum of 1",
        f"{path}:8:5: steps[0] (a) concurrency: concurrency applies only to a step with for_each",
        f"{path}:10:16: steps[0] (a) input.x: 'item' is defined only in the templates of a for_each step, "
        "not in a step without for_each",
        f"{path}:13:15: steps[1] (b) for_each: 'vars.users' is a string, not a list: write a template of a "
        "list (for_each: \"{{ vars.users }}\") or the list itself",
        f"{path}:17:15: steps[2] (c) for_each: 'loop' is defined only in the templates of a for_each step, "
        "not in for_each itself (it is rendered before any item)",
        f"{path}:18:9: steps[2] (c) as: 'steps' is taken (the templates' own names are env, loop, run, "
        "secrets, steps, vars): choose another name",
        f"{path}:20:16: steps[2] (c) input.x: steps.a has no items: it is not a for_each step",
        f"{path}:20:42: steps[2] (c) input.y: unknown name 'usr' in template; available: vars, steps, "
        "secrets, env, run, item, loop",
    ]


def test_items_in_flight_overlap_up_to_the_concurrency_and_never_beyond(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "invite-user"}, delay=0.4, times=100)
    users = [{"email": f"u{i}@example.com"} for i in range(9)]
    path = write(fan_out(users, concurrency=3))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    in_flight = [r["in_flight"] for r in emulator.requests if r["path"] == "/act"
                 and r["body"].get("key") == "invite-user"]
    assert len(in_flight) == 9 and max(in_flight) == 3


def test_fail_fast_starts_no_more_items_after_a_failure(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "invite-user"}, status=500, times=1)
    path = write(fan_out(concurrency=1))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    assert len(invites(emulator)) == 1
    step = result.step("invite")
    assert [item["status"] for item in step["items"]] == ["failed"] + ["not_run"] * 4
    assert step["status"] == "failed" and step["error"]["type"] == "server_error"
    assert step["error"]["message"].startswith("1 of 5 items failed; item 0: ")
    assert result.step("report")["status"] == "not_run"
    assert result.step("notify")["status"] == "succeeded"


def test_without_fail_fast_every_item_runs_and_the_step_fails_if_any_did(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "invite-user"}, status=422, body={"error": "bad email"}, times=2)
    path = write(fan_out(concurrency=1, fail_fast=False))
    junit, summary = tmp_path / "junit.xml", tmp_path / "summary.md"
    result = run_cli(["run", str(path), "--junit", str(junit), "--summary", str(summary)],
                     cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    assert len(invites(emulator)) == 5
    step = result.step("invite")
    assert [item["status"] for item in step["items"]] == ["failed", "failed", "succeeded", "succeeded",
                                                          "succeeded"]
    assert step["output"][:2] == [None, None] and step["output"][2]["email"] == "u2@example.com"
    assert step["error"]["message"].startswith("2 of 5 items failed; item 0: ")
    # off a terminal: a line per failed item, then one for the step
    lines = result.stdout.splitlines()
    failed = [line for line in lines if line.startswith("FAIL")]
    assert [line.split()[1] for line in failed] == ["invite[0]", "invite[1]", "invite"]
    assert "5 items: 2 failed, 3 succeeded" in failed[-1]
    # JUnit: one testcase per item
    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert [c.get("name") for c in cases] == [f"invite[{i}]" for i in range(5)] + ["report", "notify"]
    assert [c.find("failure") is not None for c in cases[:5]] == [True, True, False, False, False]
    assert root.get("tests") == "7" and root.get("failures") == "2"
    text = summary.read_text()
    assert "failed (5 items: 2 failed, 3 succeeded)" in text
    assert "- item 0: failed: " in text and "- item 1: failed: " in text


def test_a_429_with_retry_after_pauses_every_item_of_the_provider(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    """Backpressure: after one item is told to come back in 1 s, no item of that provider
    instance is sent before then, not only the one that got the 429."""
    emulator.add_fault({"action": "invite-user"}, status=429, retry_after=1, times=1)
    emulator.add_fault({"action": "invite-user"}, delay=0.3, times=100)  # the others answer slowly
    users = [{"email": f"u{i}@example.com"} for i in range(6)]
    path = write(fan_out(users, concurrency=2, extra="    retry: {attempts: 2, on: ['429']}"))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    sent = [r for r in emulator.requests if r["path"] == "/act" and r["body"].get("key") == "invite-user"]
    assert len(sent) == 7  # six items, one of them twice
    told_at = sent[0]["received_at"]  # the first request to arrive took the 429
    assert [r["received_at"] - told_at >= 1.0 for r in sent[2:]] == [True] * 5
    assert [len(item["attempts"]) for item in result.step("invite")["items"]].count(2) == 1


def test_resume_after_a_kill_in_the_middle_of_a_fan_out_sends_each_remaining_item_once(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "invite-user"}, delay=0.25, times=1000)
    users = [{"email": f"u{i}@example.com"} for i in range(12)]
    path = write(fan_out(users, concurrency=2))
    manifest = tmp_path / "killed.json"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(path), "--manifest", str(manifest)],
                            cwd=tmp_path, env=membrane_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while len(invites(emulator)) < 6 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed = check_manifest(json.loads(manifest.read_text()))
    step = killed["steps"][0]
    assert step["id"] == "invite" and step["status"] == "running"
    done = {item["index"] for item in step["items"] if item["status"] == "succeeded"}
    assert 3 <= len(done) < 12
    emulator.clear_requests()
    result = run_cli(["run", str(path), "--resume", str(manifest)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    again = sorted(b["input"]["email"] for b in invites(emulator))
    assert again == sorted(f"u{i}@example.com" for i in range(12) if i not in done)  # each once
    items = result.step("invite")["items"]
    assert [item["index"] for item in items] == list(range(12))
    assert {item["index"] for item in items if item.get("reused_from") == killed["run"]["id"]} == done
    assert all(item["status"] == "succeeded" for item in items)


def test_sigterm_during_a_fan_out_records_items_in_flight_as_interrupted_and_runs_finally(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "invite-user"}, delay=3, times=100)
    path = write(fan_out(concurrency=2))
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(path), "--manifest",
                             str(tmp_path / "manifest.json")], cwd=tmp_path, env=membrane_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while len(invites(emulator)) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    manifest = check_manifest(json.loads((tmp_path / "manifest.json").read_text()))
    assert manifest["run"]["status"] == "interrupted"
    step = manifest["steps"][0]
    assert step["status"] == "interrupted"
    assert [item["status"] for item in step["items"]] == ["interrupted"] * 2 + ["not_run"] * 3
    for item in step["items"][:2]:
        assert item["attempts"][-1]["error"] == "interrupted: in flight, no answer awaited"
    assert [s["status"] for s in manifest["steps"][1:]] == ["not_run", "succeeded"]
    notify = next(b for b in act_bodies(emulator) if b.get("key") == "notify")
    assert notify["input"] == {"status": "failed"}
    assert len(invites(emulator)) == 2  # nothing more was started


def test_replay_resends_a_fan_outs_items_or_only_the_ones_named(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = write(fan_out(extra='    when: "{{ user.active }}"'))
    assert run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env).code == 0
    manifest = tmp_path / "manifest.json"
    emulator.clear_requests()
    out = tmp_path / "replay.json"
    result = run_cli(["replay", str(manifest), "--step", "invite", "--manifest", str(out)],
                     cwd=tmp_path, env=membrane_env, manifest=False)
    assert result.code == 0, result.stderr
    assert sorted(b["input"]["email"] for b in invites(emulator)) == [
        "u0@example.com", "u2@example.com", "u3@example.com", "u4@example.com"]  # the skipped one sent nothing
    replayed = check_manifest(json.loads(out.read_text()))
    assert [item["index"] for item in replayed["steps"][0]["items"]] == [0, 2, 3, 4]
    emulator.clear_requests()
    result = run_cli(["replay", str(manifest), "--step", "invite", "--item", "3", "--manifest", str(out)],
                     cwd=tmp_path, env=membrane_env, manifest=False)
    assert result.code == 0, result.stderr
    assert [b["input"]["email"] for b in invites(emulator)] == ["u3@example.com"]
    result = run_cli(["replay", str(manifest), "--step", "invite", "--item", "9"], cwd=tmp_path,
                     env=membrane_env, manifest=False)
    assert result.code == 2 and "records no item 9 of step 'invite' (it has 5)" in result.stderr


def test_plan_shows_the_item_count_and_the_first_items_request(write, tmp_path: Path) -> None:
    path = write(fan_out())
    result = run_cli(["plan", str(path), "--json"], cwd=tmp_path, env=base_env())
    assert result.code == 0, result.stderr
    step = json.loads(result.stdout)["steps"][0]
    assert step["for_each"] == {"expression": "vars.users", "items": 5, "as": "user", "concurrency": 2,
                                "fail_fast": True}
    assert step["request"]["input"] == {"email": "u0@example.com", "position": 1, "of": 5}
    text = run_cli(["plan", str(path)], cwd=tmp_path, env=base_env()).stdout
    assert "   for each  5 items as user, concurrency 2, fail fast; the request shown is the first item's" in text


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_provider_rate_limit_spaces_every_items_attempts(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str], concurrency: int) -> None:
    """rate_limit: {requests: 10, per: 1s}: the attempts go out 0.1 s apart, however many items
    are in flight. (The first request's arrival is later by its connection's set-up, so the span
    of the eight arrivals is at least 0.7 s less that; unlimited, it is a few milliseconds.)"""
    users = [{"email": f"u{i}@example.com"} for i in range(6)]
    path = write(fan_out(users, concurrency=concurrency).replace(
        "crm: {type: membrane}", "crm: {type: membrane, rate_limit: {requests: 10, per: 1s}}"))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    times = sorted(r["received_at"] for r in emulator.requests if r["path"] == "/act")
    assert len(times) == 8  # 6 items, report and notify: all through the gate
    assert times[-1] - times[0] >= 0.6


def test_on_a_terminal_a_fan_out_shows_one_progress_line_with_its_counts(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "invite-user"}, status=500, times=1)
    emulator.add_fault({"action": "invite-user"}, delay=0.3, times=100)
    users = [{"email": f"u{i}@example.com"} for i in range(6)]
    path = write(fan_out(users, concurrency=2, fail_fast=False))
    code, out = run_on_terminal(["run", str(path), "--manifest", str(tmp_path / "m.json"), "--color", "never"],
                                cwd=tmp_path, env=membrane_env)  # colours: tests/test_colour.py
    assert code == 1
    frames = [f.strip() for f in out.split("\r") if " in flight" in f]
    assert frames, out
    assert any("/6 done, 1 failed, 2 in flight" in f for f in frames), frames
    assert frames[0].split("invite", 1)[1].split()[2] == "0/6"  # counted up from nothing
    lines = [line.split("\r")[-1].strip() for line in out.replace("\r\n", "\n").split("\n")]
    assert sum(line.startswith("FAIL  invite[") for line in lines) == 1  # the failed item's own line
    assert any(line.startswith("FAIL  invite ") and "6 items: " in line for line in lines)
