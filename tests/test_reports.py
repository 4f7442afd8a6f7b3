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


# --- the registry (engine.report) and the escaping every output shares (engine.report.text) ---------


def _manifest() -> dict:
    return {
        "run": {"id": "20260101T000000Z-abcdef", "status": "failed", "started_at": "2026-01-01T00:00:00Z",
                "duration_ms": 12},
        "runbook": {"name": "nightly", "path": "nightly.yml"},
        "steps": [{"id": "a", "provider": "crm", "provider_type": "membrane", "dispatch": "id",
                   "status": "failed", "duration_ms": 3,
                   "error": {"type": "client_error", "message": "no \x1b[31m|`x`|", "http_status": 422}}],
        "outputs": {"k": "v"},
    }


def test_report_options_keep_the_reports_asked_for_in_the_registry_order() -> None:
    from engine.report import REPORTS, ReportOptions

    options = ReportOptions("json", {"summary": "s.md", "junit": None})
    assert options.paths == {"summary": "s.md"}
    assert options.json and options.needs_manifest
    both = ReportOptions("text", {"summary": "s.md", "junit": "j.xml"})
    assert list(both.paths) == [name for name in REPORTS if name in both.paths] == ["junit", "summary"]
    plain = ReportOptions()
    assert plain.paths == {} and not plain.json and not plain.needs_manifest
    out, err = object(), object()
    assert plain.console(out, err) is out and options.console(out, err) is err  # JSON owns stdout
    with pytest.raises(ValueError, match="html"):
        ReportOptions(paths={"html": "r.html"})
    with pytest.raises(ValueError, match="xml"):
        ReportOptions("xml")


def test_every_registered_report_has_a_writer_and_an_option_of_run() -> None:
    from engine.cli import cli
    from engine.report import REPORTS

    run_options = {opt for param in cli.commands["run"].params for opt in getattr(param, "opts", ())}
    for name, report in REPORTS.items():
        assert report.option == f"--{name}" and report.option in run_options
        assert callable(report.writer())
        assert "{path}" in report.failure


def test_the_registry_imports_no_report_until_one_is_written(tmp_path: Path) -> None:
    code = ("import sys, engine.report; "
            "print(sorted(m for m in sys.modules if m.startswith('engine.report.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=base_env(), check=True)
    assert proc.stdout.strip() == "[]"


def test_write_files_writes_each_report_and_says_which_could_not_be(tmp_path: Path) -> None:
    from engine.report import ReportOptions

    junit, summary = tmp_path / "out" / "j.xml", tmp_path / "s.md"
    assert ReportOptions(paths={"junit": str(junit), "summary": str(summary)}).write_files(_manifest(), "m.json") == []
    assert ET.fromstring(junit.read_bytes()).find("testsuite").get("failures") == "1"
    assert summary.read_text(encoding="utf-8").startswith("### ❌ runbook `nightly`: failed")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    problems = ReportOptions(paths={"junit": str(folder), "summary": str(folder)}).write_files(_manifest(), None)
    assert problems == [f"cannot write the JUnit report {folder}: Is a directory",
                        f"cannot append the summary to {folder}: Is a directory"]


def test_a_report_added_to_the_registry_is_written_like_the_others(tmp_path: Path, monkeypatch) -> None:
    import io
    import types

    import engine.report as report

    written = []
    module = types.ModuleType("engine.report.fake")
    module.write = lambda path, manifest, manifest_path: written.append((path, manifest["run"]["id"], manifest_path))
    monkeypatch.setitem(sys.modules, "engine.report.fake", module)
    monkeypatch.setitem(report.REPORTS, "fake", report.Report("--fake", "engine.report.fake", "cannot {path}"))
    options = report.ReportOptions("json", {"fake": "f.out"})
    stdout, stderr = io.StringIO(), io.StringIO()
    options.publish(_manifest(), "m.json", stdout=stdout, stderr=stderr)
    assert written == [("f.out", "20260101T000000Z-abcdef", "m.json")]
    assert '"nightly"' in stdout.getvalue() and stderr.getvalue() == ""


def test_on_refusal_writes_the_not_run_reports_and_re_raises(tmp_path: Path) -> None:
    from engine.errors import RunbookError
    from engine.report import ReportOptions

    (tmp_path / "rb.yml").write_text("version: 1\nname: refused\nsteps: []\n")
    junit = tmp_path / "j.xml"
    with pytest.raises(RunbookError, match="nope"), ReportOptions(paths={"junit": str(junit)}).on_refusal(
            str(tmp_path / "rb.yml")):
        raise RunbookError("nope")
    suite = ET.fromstring(junit.read_bytes()).find("testsuite")
    assert suite.get("name") == "refused" and suite.find("testcase/failure").get("message") == "invalid: nope"
    with pytest.raises(RunbookError), ReportOptions().on_refusal("rb.yml"):  # nothing asked for: nothing written
        raise RunbookError("nope")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain", "plain"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("a\rb\x00c\x7fd\x9fe", "a\\rb\\x00c\\x7fd\\x9fe"),
        ("tab\tkept", "tab\tkept"),
        ("two\nlines", "two\n        lines"),  # continuation lines indented under the step's line
    ],
)
def test_visible_escapes_what_a_terminal_would_obey(raw: str, shown: str) -> None:
    from engine.report.text import visible

    assert visible(raw) == shown


def test_xml_text_escapes_what_xml_cannot_carry_and_keeps_the_rest() -> None:
    from engine.report.text import xml

    raw = "ok\t\n\r é 😀 \x00 \x1b[1m \ud800 \ufffe <&>"
    text = xml(raw)
    assert text == "ok\t\n\r é 😀 \\x00 \\x1b[1m \\ud800 \\ufffe <&>"
    element = ET.Element("e", {"a": text})
    element.text = text
    parsed = ET.fromstring(ET.tostring(element))  # well-formed: nothing XML 1.0 refuses is left
    assert parsed.get("a") == text and "\\x1b[1m" in parsed.text
    assert xml(3) == "3"


def test_workflow_command_escaping() -> None:
    from engine.report.github import annotation
    from engine.report.text import workflow_message, workflow_property

    assert workflow_message("100% done\r\nnext: a,b") == "100%25 done%0D%0Anext: a,b"
    assert workflow_property("dir:a,b%\n.yml") == "dir%3Aa%2Cb%25%0A.yml"
    from engine.errors import Problem

    assert annotation(Problem("a:b.yml", 3, 4, "bad,\nvery", "warning")) == \
        "::warning file=a%3Ab.yml,line=3,col=4::bad,%0Avery"


def test_markdown_escaping() -> None:
    from engine.report.text import markdown_code, markdown_prose

    assert markdown_prose("<b>a|b</b> & \r\nc") == "&lt;b&gt;a\\|b&lt;/b&gt; &amp;  c"
    assert markdown_code("a|b") == "`a\\|b`"
    assert markdown_code("a|b", table=False) == "`a|b`"
    assert markdown_code("has `tick`") == "``has `tick```"
    assert markdown_code("x\ny\x1b") == "`x y\\x1b`"
    assert markdown_code("abcdef", 4) == "`abc…`"
    assert markdown_code("") == ""
