"""Reports for pipelines (JUnit XML, Markdown step summary) and the console's progress line."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.emulator import Emulator
from tests.conftest import base_env, run_cli

SECRET = "s3cr3t-report-value"

FAILING = """
version: 1
name: nightly
vars: {who: ops}
providers:
  crm: {type: membrane, token: "{{ secrets.MEMBRANE_TOKEN }}"}
steps:
  - id: first
    provider: crm
    dispatch: {id: lookup}
    input: {who: "{{ vars.who }}", key: "{{ secrets.REPORT_KEY }}"}
  - id: maybe
    provider: crm
    when: "{{ vars.who == 'nobody' }}"
    dispatch: {id: never-sent}
  - id: flaky
    provider: crm
    continue_on_error: true
    dispatch: {key: hostile}
  - id: broken
    provider: crm
    dispatch: {key: fail-422}
  - id: later
    provider: crm
    dispatch: {id: after}
finally:
  - id: report
    provider: crm
    dispatch: {id: post-report}
    input: {status: "{{ run.status }}"}
outputs:
  first_id: "{{ steps.first.output.id }}"
  key_echo: "{{ steps.first.output.key }}"
"""

# What the common JUnit XSD (Jenkins junit-10.xsd) allows, in this order.
_CASE_CHILDREN = ["skipped", "error", "failure", "system-out", "system-err"]


def _failed_run(write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str], *extra: str):
    emulator.add_fault({"action": "hostile"}, status=500,
                       body={"message": 'bad <xml> & "quotes" \x1b[31mred\x1b[0m \x00 ]]> end'})
    env = dict(membrane_env, REPORT_KEY=SECRET)
    return run_cli(["run", str(write(FAILING)), *extra], cwd=tmp_path, env=env)


def test_junit_report_of_a_failed_run(write, tmp_path: Path, emulator: Emulator,
                                      membrane_env: dict[str, str]) -> None:
    junit = tmp_path / "reports" / "junit.xml"
    result = _failed_run(write, tmp_path, emulator, membrane_env, "--junit", str(junit))
    assert result.code == 1, result.stderr
    assert "\x1b" not in result.stdout and "\\x1b[31mred" in result.stdout  # the console shows it escaped
    text = junit.read_text(encoding="utf-8")
    assert SECRET not in text
    root = ET.fromstring(junit.read_bytes())  # well-formed despite the escape codes and NUL
    assert root.tag == "testsuites"
    (suite,) = root
    assert suite.tag == "testsuite"
    assert suite.get("name") == "nightly"
    cases = suite.findall("testcase")
    assert [c.get("name") for c in cases] == ["first", "maybe", "flaky", "broken", "later", "report"]
    assert [c.get("classname") for c in cases] == ["nightly.steps"] * 5 + ["nightly.finally"]
    expected = {"tests": "6", "failures": "2", "errors": "0", "skipped": "2"}
    for element in (root, suite):
        assert {k: element.get(k) for k in expected} == expected
        float(element.get("time"))
    assert suite.get("timestamp") and "T" in suite.get("timestamp")
    for case in cases:
        float(case.get("time"))
        children = [child.tag for child in case]
        assert children == sorted(children, key=_CASE_CHILDREN.index), children
        assert set(children) <= set(_CASE_CHILDREN)
    by_id = {c.get("name"): c for c in cases}
    manifest = result.manifest
    records = {s["id"]: s for s in manifest["steps"]}

    assert by_id["first"].find("failure") is None and by_id["first"].find("skipped") is None
    assert f"provider run id: {records['first']['run_id']}" in by_id["first"].findtext("system-out")
    assert by_id["maybe"].find("skipped").get("message").startswith("skipped")
    assert by_id["later"].find("skipped").get("message").startswith("not run")

    broken = by_id["broken"].find("failure")
    assert broken.get("type") == "client_error"
    assert "HTTP 422" in broken.get("message")
    assert f"provider run id: {records['broken']['run_id']}" in broken.text

    flaky = by_id["flaky"].find("failure")
    assert flaky.get("type") == "server_error"
    assert 'bad <xml> & "quotes"' in flaky.get("message")  # escaped on the way in, intact on the way out
    assert "\\x1b[31mred" in flaky.get("message") and "\x1b" not in text

    properties = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert properties["run.id"] == manifest["run"]["id"]
    assert properties["run.status"] == "failed"
    assert properties["manifest"] == str(result.manifest_path)
    assert "first_id" in suite.findtext("system-out")


def test_summary_is_appended_with_steps_and_outputs(write, tmp_path: Path, emulator: Emulator,
                                                    membrane_env: dict[str, str]) -> None:
    summary = tmp_path / "step_summary.md"
    summary.write_text("## Earlier job output\n")
    result = _failed_run(write, tmp_path, emulator, membrane_env, "--summary", str(summary))
    assert result.code == 1, result.stderr
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## Earlier job output\n")  # appended, not replaced
    assert SECRET not in text
    assert "### ❌ runbook `nightly`: failed" in text
    manifest = result.manifest
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`" in line.split("|")[2]]
    step_rows = rows[:6]
    assert [row.split("|")[2].strip() for row in step_rows] == [
        "`first`", "`maybe`", "`flaky`", "`broken`", "`later`", "`report`"]
    assert [row.split("|")[3].strip() for row in step_rows] == [
        "succeeded", "skipped", "failed", "failed", "not run", "succeeded"]
    first = manifest["steps"][0]
    assert f"`{first['run_id']}`" in step_rows[0]
    assert "| `first_id` |" in text and f"`{manifest['outputs']['first_id']}`" in text
    assert "| `key_echo` | `***` |" in text  # an output that echoes a secret is scrubbed
    assert "**broken** failed: `client_error (HTTP 422)" in text
    for line in text.splitlines():
        if line.startswith("| "):
            assert line.endswith(" |") and "\n" not in line

    again = _failed_run(write, tmp_path, emulator, membrane_env, "--summary", str(summary))
    assert again.code == 1
    assert summary.read_text(encoding="utf-8").count("runbook `nightly`") == 2


def test_reports_when_nothing_ran(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: invalid
        steps:
          - id: a
            provider: membrane
            dispatch: {id: x}
            input: {key: "{{ secrets.UNSET_REPORT_SECRET }}"}
    """)
    junit, summary = tmp_path / "j.xml", tmp_path / "s.md"
    result = run_cli(["run", str(path), "--junit", str(junit), "--summary", str(summary)],
                     cwd=tmp_path, env=base_env(MEMBRANE_TOKEN="t"))
    assert result.code == 2
    assert "UNSET_REPORT_SECRET" in result.stderr
    root = ET.fromstring(junit.read_bytes())
    (case,) = root.iter("testcase")
    failure = case.find("failure")
    assert failure is not None and "secret 'UNSET_REPORT_SECRET' is not set" in failure.get("message")
    assert root.find("testsuite").get("failures") == "1"
    assert "UNSET_REPORT_SECRET" in summary.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("text", "name"),
    [
        # invalid, but YAML: its name: is known
        ("version: 1\nname: nightly-sync\nsteps:\n  - {id: a, provider: membrane, dispatch: {id: x}, tiemout: 3}\n",
         "nightly-sync"),
        # not even YAML further down: the name: line still says it
        ('version: 1\nname: "half done"  # wip\nsteps:\n  - id: a\n\tprovider: membrane\n', "half done"),
        # no name to be found: the path
        ("version: 1\nsteps: [{id: a, provider: membrane, dispatch: {id: x}}]\n", "broken.yml"),
        ("version: 1\nname: [a\n", "broken.yml"),
        (None, "broken.yml"),  # no such file
    ],
)
def test_reports_of_a_run_that_never_started_name_the_runbook(tmp_path: Path, text: str | None, name: str) -> None:
    if text is not None:
        (tmp_path / "broken.yml").write_text(text)
    junit, summary = tmp_path / "j.xml", tmp_path / "s.md"
    result = run_cli(["run", "broken.yml", "--junit", str(junit), "--summary", str(summary)], cwd=tmp_path)
    assert result.code == 2
    xml, markdown = junit.read_text(encoding="utf-8"), summary.read_text(encoding="utf-8")
    assert "None" not in xml and "None" not in markdown
    suite = ET.fromstring(xml.encode()).find("testsuite")
    assert suite.get("name") == name
    (case,) = suite.iter("testcase")
    assert case.get("classname") == f"{name}.steps"
    assert suite.find("failure") is None and case.find("failure") is not None
    assert suite.find("system-out").text == f"runbook {name}: not run (invalid)\n"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props == {"run.status": "invalid", "runbook.path": "broken.yml"}
    first, _, facts = markdown.splitlines()[:3]
    assert first == f"### ❌ runbook `{name}`: invalid"
    assert facts == "not run · 1 step · 0 ms" + (" · `broken.yml`" if name != "broken.yml" else "")
    assert "**validate** failed: `invalid: broken.yml:" in markdown


def test_reports_of_a_run_stopped_at_pre_flight_do_not_quote_secrets(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: leaky
        providers:
          pd: {type: pipedream, project_id: "{{ secrets.PD_PROJECT }}", environment: development}
        steps:
          - id: a
            provider: pd
            dispatch: {id: x}
            with: {external_user_id: u}
    """)
    junit, summary = tmp_path / "j.xml", tmp_path / "s.md"
    env = base_env(PD_PROJECT="not-a-project-s3cr3t", PIPEDREAM_ACCESS_TOKEN="t")
    result = run_cli(["run", str(path), "--junit", str(junit), "--summary", str(summary)], cwd=tmp_path, env=env)
    assert result.code == 2
    for report in (junit, summary):
        text = report.read_text(encoding="utf-8")
        assert "project_id" in text and "not-a-project-s3cr3t" not in text


SLOW = """
version: 1
name: slow
steps:
  - id: wait
    provider: membrane
    dispatch: {id: slow-action}
  - id: after
    provider: membrane
    dispatch: {id: quick}
"""


def test_without_a_terminal_output_has_no_control_characters(write, tmp_path: Path, emulator: Emulator,
                                                              membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slow-action"}, delay=0.5)
    result = run_cli(["run", str(write(SLOW))], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stderr
    for stream in (result.stdout, result.stderr):
        assert "\r" not in stream and "\x1b" not in stream
    assert result.stdout.splitlines()[0].startswith("ok    wait ")


def test_on_a_terminal_the_step_in_flight_shows_its_elapsed_time(write, tmp_path: Path, emulator: Emulator,
                                                                 membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "slow-action"}, delay=0.6)
    path = write(SLOW)
    main, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine", "run", str(path), "--manifest", str(tmp_path / "m.json")],
        cwd=tmp_path, env=dict(membrane_env, TERM="xterm"), stdin=subprocess.DEVNULL,
        stdout=secondary, stderr=secondary,
    )
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert proc.wait(timeout=60) == 0
    out = b"".join(chunks).decode()
    assert "\x1b" not in out  # rewritten with a carriage return, no escape sequences
    frames = [f for f in out.split("\r") if f.strip().startswith(("|", "/", "-", "\\")) and " wait " in f]
    assert len(frames) >= 3, out
    assert frames[-1].rstrip().endswith(" s")  # elapsed time, e.g. "0.5 s"
    lines = [line.strip() for line in out.replace("\r\n", "\n").split("\n")]
    result_line = next(line for line in lines if "ok    wait" in line)
    # the progress line was cleared (blanked, then a carriage return) before the result line
    assert result_line.split("\r")[-1].startswith("ok    wait")
    assert any(line.startswith("manifest: ") for line in lines)
