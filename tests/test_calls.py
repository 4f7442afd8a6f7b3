"""Steps that call a runbook (`runbook:`, SPEC §12) end to end: the CLI against the emulator,
checked through the nested manifest, the console and the emulator's request log."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import act_bodies, check_manifest, run_cli

LEAF = """\
version: 1
name: leaf
inputs:
  email: {type: string, required: true}
  tier: {type: string, enum: [standard, vip], default: standard}
steps:
  - id: make
    provider: membrane
    dispatch: {key: create-contact}
    input: {email: "{{ vars.email }}", tier: "{{ vars.tier }}"}
finally:
  - id: note
    provider: membrane
    dispatch: {key: note}
    input: {status: "{{ run.status }}"}
outputs:
  contact: "{{ steps.make.output.email }}"
"""

MID = """\
version: 1
name: mid
inputs:
  who: {type: string, required: true}
steps:
  - id: leaf
    runbook: ./leaf.yml
    with: {email: "{{ vars.who }}", tier: vip}
outputs:
  got: "{{ steps.leaf.output.contact }}"
"""

TOP = """\
version: 1
name: top
steps:
  - id: mid
    runbook: ./lib/mid.yml
    with: {who: ann@example.com}
  - id: after
    provider: membrane
    dispatch: {key: after}
    input: {got: "{{ steps.mid.output.got }}"}
outputs:
  got: "{{ steps.mid.output.got }}"
"""


def tree(write) -> Path:
    write(LEAF, name="lib/leaf.yml")
    write(MID, name="lib/mid.yml")
    return write(TOP, name="top.yml")


def test_a_chain_of_three_runbooks_runs_as_nested_steps_and_outputs_flow_up(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    (tmp_path / "lib").mkdir()
    path = tree(write)
    junit = tmp_path / "junit.xml"
    result = run_cli(["run", str(path), "--junit", str(junit)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stdout + result.stderr
    assert [b["key"] for b in act_bodies(emulator)] == ["create-contact", "note", "after"]
    import xml.etree.ElementTree as ET

    cases = [(c.get("classname"), c.get("name")) for c in ET.parse(junit).getroot().iter("testcase")]
    assert cases == [("top.steps", "mid"), ("top.steps.mid.steps", "leaf"), ("top.steps.mid.steps.leaf.steps", "make"),
                     ("top.steps.mid.steps.leaf.finally", "note"), ("top.steps", "after")]
    assert next(b for b in act_bodies(emulator) if b["key"] == "create-contact")["input"] == {
        "email": "ann@example.com", "tier": "vip"}
    manifest = result.manifest
    assert manifest["outputs"] == {"got": "ann@example.com"}
    mid = manifest["steps"][0]
    assert mid["status"] == "succeeded" and mid["output"] == {"got": "ann@example.com"}
    assert mid["called"]["path"] == str(tmp_path / "lib" / "mid.yml") and len(mid["called"]["sha256"]) == 64
    leaf = mid["children"][0]
    assert leaf["id"] == "leaf" and leaf["called"]["name"] == "leaf"
    assert [(c["id"], c["status"]) for c in leaf["children"]] == [("make", "succeeded"), ("note", "succeeded")]
    names = [line[6:].split("  ")[0] for line in result.stdout.splitlines()[:5]]
    assert names == ["mid › leaf › make", "mid › leaf › note", "mid › leaf", "mid", "after"]
    assert "mid › leaf  runbook ./leaf.yml" in result.stdout and "succeeded: 2 succeeded" in result.stdout


def test_calls_are_checked_with_the_caller_before_anything_is_sent(write, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    write(LEAF, name="lib/leaf.yml")
    write("version: 1\nname: loop\nsteps:\n  - {id: again, runbook: ./top.yml}\n", name="lib/loop.yml")
    path = write("""\
        version: 1
        name: top
        steps:
          - id: missing
            runbook: ./lib/nothing.yml
          - id: typo
            runbook: ./leaf.yml
            with: {emial: a@b.c, tier: gold}
          - id: retried
            runbook: ./leaf.yml
            with: {email: a@b.c}
            retry: {attempts: 3}
          - id: cycle
            runbook: ./loop.yml
        """, name="lib/top.yml")
    result = run_cli(["validate", str(path)], cwd=tmp_path)
    assert result.code == 2
    errors = result.stderr.splitlines()[:-1]
    lib = tmp_path / "lib"
    assert errors == [
        f"{lib}/loop.yml:4:26: steps[0] (again) runbook: './top.yml' is a cycle: lib/top.yml -> lib/loop.yml -> "
        "lib/top.yml",
        f"{path}:5:14: steps[0] (missing) runbook: no runbook at {lib}/lib/nothing.yml (a path relative to {lib})",
        f"{path}:8:11: steps[1] (typo) with: the called runbook's input 'email' is required: give it in with:",
        f"{path}:8:19: steps[1] (typo) with.emial: the called runbook has no input 'emial' (did you mean "
        "'email'?); its inputs: email, tier",
        f"{path}:8:32: steps[1] (typo) with.tier: input 'tier': 'gold' is not one of standard, vip",
        f"{path}:12:5: steps[2] (retried) retry: a called runbook is not retried as a whole (it could repeat "
        "steps that succeeded); give its steps their own retry",
        f"{path}:14:14: steps[3] (cycle) runbook: the called runbook {lib}/loop.yml is not valid (see its errors)",
    ]


def test_a_chain_deeper_than_eight_is_refused(write, tmp_path: Path) -> None:
    for depth in range(10):
        call = f"  - {{id: deeper, runbook: ./d{depth + 1}.yml}}\n" if depth < 9 else \
            "  - {id: leaf, provider: membrane, dispatch: {key: k}}\n"
        write(f"version: 1\nname: d{depth}\nsteps:\n{call}", name=f"d{depth}.yml")
    result = run_cli(["validate", str(tmp_path / "d0.yml")], cwd=tmp_path)
    assert result.code == 2
    assert "d7.yml:4:27: steps[0] (deeper) runbook: './d8.yml' would be the 9th runbook in one chain of " \
           "calls; at most 8 may call each other" in result.stderr


def test_each_item_of_a_fan_out_calls_the_runbook_with_its_own_nested_record(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    (tmp_path / "lib").mkdir()
    write(LEAF, name="lib/leaf.yml")
    path = write("""\
        version: 1
        name: many
        vars:
          customers: [{email: a@x.io}, {email: b@x.io}, {email: c@x.io}]
        steps:
          - id: onboard
            runbook: ./lib/leaf.yml
            for_each: "{{ vars.customers }}"
            concurrency: 3
            with: {email: "{{ item.email }}"}
          - id: after
            provider: membrane
            dispatch: {key: after}
            input: {got: "{{ steps.onboard.output | map(attribute='contact') | list }}"}
        """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stdout + result.stderr
    made = sorted(b["input"]["email"] for b in act_bodies(emulator) if b["key"] == "create-contact")
    assert made == ["a@x.io", "b@x.io", "c@x.io"]
    step = result.step("onboard")
    assert [[c["id"] for c in item["children"]] for item in step["items"]] == [["make", "note"]] * 3
    lines = LEAF.splitlines()
    where = [lines.index("  - id: make") + 1, lines.index("  - id: note") + 1]
    assert [[c["line"] for c in item["children"]] for item in step["items"]] == [where] * 3  # as Recording's
    assert next(b for b in act_bodies(emulator) if b["key"] == "after")["input"] == {
        "got": ["a@x.io", "b@x.io", "c@x.io"]}


def test_an_item_s_call_that_calls_again_records_what_it_called(write, tmp_path: Path,
                                                                membrane_env: dict[str, str]) -> None:
    (tmp_path / "lib").mkdir()
    write(LEAF, name="lib/leaf.yml")
    write(MID, name="lib/mid.yml")
    path = write("""\
        version: 1
        name: twice
        steps:
          - id: each
            runbook: ./lib/mid.yml
            for_each: [ann@x.io, bob@x.io]
            with: {who: "{{ item }}"}
        """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stdout + result.stderr
    for item in result.step("each")["items"]:
        (leaf,) = item["children"]
        assert leaf["called"] == {"path": str(tmp_path / "lib" / "leaf.yml"), "name": "leaf",
                                  "sha256": hashlib.sha256(LEAF.encode()).hexdigest()}
        assert leaf["line"] == MID.splitlines().index("  - id: leaf") + 1
        assert [c["id"] for c in leaf["children"]] == ["make", "note"]


def test_an_input_refused_once_rendered_fails_the_call_before_any_of_it_is_sent(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    (tmp_path / "lib").mkdir()
    write(LEAF, name="lib/leaf.yml")
    path = write("""\
        version: 1
        name: bad-tier
        vars: {tier: gold}
        steps:
          - id: onboard
            runbook: ./lib/leaf.yml
            with: {email: a@b.c, tier: "{{ vars.tier }}"}
        """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    assert act_bodies(emulator) == []
    error = result.step("onboard")["error"]
    assert error["type"] == "configuration" and error["message"] == "input 'tier': 'gold' is not one of standard, vip"
    assert error["location"] == f"{path}:7:32"


def test_a_called_runbooks_missing_secret_stops_the_run_before_step_1(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    (tmp_path / "lib").mkdir()
    leaf = write(LEAF.replace('{key: note}', '{key: note}\n    with: {meta: {k: "{{ secrets.NOTE_KEY }}"}}'),
                 name="lib/leaf.yml")
    path = write(TOP.replace("./lib/mid.yml", "./lib/leaf.yml").replace("{who: ann@example.com}",
                                                                        "{email: ann@example.com}"))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 2
    assert f"{leaf}:15:22: secret 'NOTE_KEY' is not set (this runbook is called by {path})" in result.stderr
    assert act_bodies(emulator) == []


def test_resume_after_a_kill_inside_a_called_runbook_sends_only_its_unfinished_steps(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    (tmp_path / "lib").mkdir()
    write("""\
        version: 1
        name: slow
        steps:
          - {id: s1, provider: membrane, dispatch: {key: s1}}
          - {id: s2, provider: membrane, dispatch: {key: s2}}
          - {id: s3, provider: membrane, dispatch: {key: s3}}
          - {id: s4, provider: membrane, dispatch: {key: s4}}
        """, name="lib/slow.yml")
    emulator.add_fault({"action": "s3"}, delay=30, times=1)  # the run is killed while s3 is in flight
    path = write("""\
        version: 1
        name: outer
        steps:
          - {id: first, provider: membrane, dispatch: {key: first}}
          - {id: inner, runbook: ./lib/slow.yml}
          - {id: last, provider: membrane, dispatch: {key: last}}
        """)
    manifest = tmp_path / "killed.json"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "run", str(path), "--manifest", str(manifest)],
                            cwd=tmp_path, env=membrane_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while "s3" not in [b["key"] for b in act_bodies(emulator)] and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed = check_manifest(json.loads(manifest.read_text()))
    inner = killed["steps"][1]
    assert inner["status"] == "running" and [c["id"] for c in inner["children"]] == ["s1", "s2"]
    emulator.clear_requests()
    result = run_cli(["run", str(path), "--resume", str(manifest)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stdout + result.stderr
    assert [b["key"] for b in act_bodies(emulator)] == ["s3", "s4", "last"]
    children = result.step("inner")["children"]
    assert [(c["id"], c.get("reused_from")) for c in children] == [
        ("s1", killed["run"]["id"]), ("s2", killed["run"]["id"]), ("s3", None), ("s4", None)]


def test_plan_plans_the_called_runbook_with_its_inputs(write, tmp_path: Path) -> None:
    (tmp_path / "lib").mkdir()
    path = tree(write)
    result = run_cli(["plan", str(path), "--json"], cwd=tmp_path)
    assert result.code == 0, result.stderr
    mid = json.loads(result.stdout)["steps"][0]
    assert mid["runbook"] == "./lib/mid.yml" and mid["with"] == {"who": "ann@example.com"}
    leaf = mid["calls"][0]
    assert leaf["with"] == {"email": "ann@example.com", "tier": "vip"}
    assert leaf["calls"][0]["request"] == {"key": "create-contact",
                                           "input": {"email": "ann@example.com", "tier": "vip"}}
    assert [s["id"] for s in leaf["finally"]] == ["note"]
    text = run_cli(["plan", str(path)], cwd=tmp_path).stdout
    assert "   runbook   ./lib/mid.yml (mid), its steps below" in text
    assert "\n      1.1.1 make\n" in text and "\n      1.1.2 note\n" in text


def test_replay_reaches_into_a_called_runbook(write, tmp_path: Path, emulator: Emulator,
                                              membrane_env: dict[str, str]) -> None:
    (tmp_path / "lib").mkdir()
    path = tree(write)
    assert run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env).code == 0
    manifest = tmp_path / "manifest.json"
    mid = check_manifest(json.loads(manifest.read_text()))["steps"][0]
    assert mid["request"] == {"runbook": str(tmp_path / "lib" / "mid.yml"), "with": {"who": "ann@example.com"}}
    emulator.clear_requests()
    out = tmp_path / "replay.json"
    result = run_cli(["replay", str(manifest), "--step", "mid.leaf.make", "--manifest", str(out)], cwd=tmp_path,
                     env=membrane_env, manifest=False)
    assert result.code == 0, result.stdout + result.stderr
    assert [(b["key"], b["input"]) for b in act_bodies(emulator)] == [
        ("create-contact", {"email": "ann@example.com", "tier": "vip"})]
    assert [s["id"] for s in check_manifest(json.loads(out.read_text()))["steps"]] == ["make"]
    refused = run_cli(["replay", str(manifest), "--step", "mid"], cwd=tmp_path, env=membrane_env, manifest=False)
    assert refused.code == 2 and "name the steps of it to send again (--step mid.STEP)" in refused.stderr
    emulator.clear_requests()
    everything = run_cli(["replay", str(manifest), "--manifest", str(out)], cwd=tmp_path, env=membrane_env,
                         manifest=False)
    assert everything.code == 0 and [b["key"] for b in act_bodies(emulator)] == ["after"]  # calls: not by default
