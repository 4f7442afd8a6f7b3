"""Reports for pipelines (JUnit XML, Markdown step summary) and the console's progress line."""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from engine.emulator import Emulator
from tests.conftest import base_env, run_cli, run_on_terminal

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

# What Jenkins xunit's junit-10.xsd allows in a testcase (tests/data/junit-10.xsd), in our order.
_CASE_CHILDREN = ["skipped", "error", "failure", "rerunFailure", "rerunError", "flakyFailure", "flakyError",
                  "system-out", "system-err"]
JUNIT_XSD = Path(__file__).parent / "data" / "junit-10.xsd"


def junit_schema():
    xmlschema = pytest.importorskip("xmlschema")
    return xmlschema.XMLSchema(str(JUNIT_XSD))


def assert_valid_junit(path: Path) -> None:
    """Valid against Jenkins xunit's junit-10.xsd, the strictest reader of JUnit XML."""
    errors = [str(e.reason) + " at " + str(e.path) for e in junit_schema().iter_errors(str(path))]
    assert errors == [], errors


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
    assert {k: suite.get(k) for k in expected} == expected
    assert {k: root.get(k) for k in expected} == {**expected, "skipped": None}  # junit-10.xsd has none there
    for element in (root, suite):
        float(element.get("time"))
    assert_valid_junit(junit)
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
    assert "**broken** failed at `" in text and "`client_error (HTTP 422)" in text
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
    assert "**validate** failed:\\\n`invalid: broken.yml:" in markdown
    assert_valid_junit(junit)


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
    code, out = run_on_terminal(["run", str(path), "--manifest", str(tmp_path / "m.json"), "--color", "never"],
                                cwd=tmp_path, env=membrane_env)  # colours: tests/test_colour.py
    assert code == 0
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
    with pytest.raises(ValueError, match="pdf"):
        ReportOptions(paths={"pdf": "r.pdf"})
    assert list(ReportOptions(paths={"html": "r.html", "junit": "j.xml"}).paths) == ["junit", "html"]
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
    assert markdown_prose("*x* `y` [z]") == "\\*x\\* \\`y\\` \\[z\\]"
    assert markdown_code("a|b") == "`a\\|b`"
    assert markdown_code("a|b", table=False) == "`a|b`"
    assert markdown_code("has `tick`") == "`` has `tick` ``"
    assert markdown_code("a ``b`` c") == "```a ``b`` c```"
    assert markdown_code("<&>") == "`<&>`"  # a code span shows its text as it is: no entities
    assert markdown_code("x\ny\x1b") == "`x y\\x1b`"
    assert markdown_code("abcdef", 4) == "`abc…`"
    assert markdown_code("") == ""


# --- JUnit: junit-10.xsd, where each step is, retries -----------------------------------------------

RETRIES = """
version: 1
name: retries
steps:
  - id: flaky
    provider: membrane
    retry: {attempts: 3, backoff: fixed, initial_delay: 10ms, on: [429]}
    dispatch: {id: busy}
  - id: stubborn
    provider: membrane
    continue_on_error: true
    retry: {attempts: 2, backoff: fixed, initial_delay: 10ms, on: [5xx]}
    dispatch: {id: fail-503}
  - id: fan
    provider: membrane
    for_each: [ok, fail-500, ok]
    fail_fast: false
    dispatch: {id: "{{ item }}"}
finally:
  - id: notify
    provider: membrane
    dispatch: {id: post-report}
"""


def _line_of(text: str, step_id: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if line.strip() == f"- id: {step_id}")


def action_junit_report_position(case: ET.Element, suite: ET.Element) -> tuple[str, int]:
    """Where mikepenz/action-junit-report (the README's reporter) annotates a testcase: its
    resolveFileAndLine (src/testParser.ts), in Python: the testcase's file and line, else the
    issue's, else the suite's; without a line, the last `` FILE…:N`` in the failure's text."""
    import re

    issue = case.find("failure") if case.find("failure") is not None else case.find("error")
    issue_attrs = issue.attrib if issue is not None else {}
    file = case.get("file") or issue_attrs.get("file") or suite.get("file")
    line = case.get("line") or issue_attrs.get("line") or suite.get("line")
    file_name = file or case.get("classname", case.get("name")).split(".")[-1]
    if file_name and line:
        return file_name, int(line)
    stack = ((issue.text if issue is not None else "") or "").strip()
    matches = re.findall(" [^ ]*" + re.escape(file_name) + ".*?:\\d+", stack)
    if not matches:
        return file_name, 1
    return file_name, int(matches[-1].split(":")[-1])


def test_junit_is_valid_against_junit_10_xsd_and_shows_where_and_how_often(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = write(RETRIES)
    text = path.read_text()
    emulator.add_fault({"action": "busy"}, status=429, retry_after=0, times=2)
    junit = tmp_path / "j.xml"
    result = run_cli(["run", "runbook.yml", "--junit", str(junit)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1, result.stderr
    assert_valid_junit(junit)
    root = ET.fromstring(junit.read_bytes())
    suite = root.find("testsuite")
    assert suite.get("file") == "runbook.yml"
    cases = {c.get("name"): c for c in suite.iter("testcase")}
    assert list(cases) == ["flaky", "stubborn", "fan[0]", "fan[1]", "fan[2]", "notify"]
    records = {s["id"]: s for s in result.manifest["steps"]}
    for step_id in ("flaky", "stubborn", "fan", "notify"):
        assert records[step_id]["line"] == _line_of(text, step_id)  # recorded in the manifest

    # passed on its third attempt: two flakyFailures, as Surefire reports a rerun that passed
    flaky = cases["flaky"]
    assert flaky.find("failure") is None
    assert [(f.get("type"), f.get("message").split(":")[0]) for f in flaky.findall("flakyFailure")] == [
        ("rate_limited", "attempt 1"), ("rate_limited", "attempt 2")]
    assert "status: succeeded after 3 attempts (flaky" in flaky.findtext("system-out")
    assert f"location: runbook.yml:{_line_of(text, 'flaky')}" in flaky.findtext("system-out")
    # failed twice: the failure, and the earlier attempt as a rerunFailure
    stubborn = cases["stubborn"]
    assert stubborn.find("failure").get("type") == "server_error"
    assert len(stubborn.findall("rerunFailure")) == 1 and not stubborn.findall("flakyFailure")
    assert "status: failed after 2 attempts" in stubborn.findtext("system-out")
    assert cases["fan[1]"].find("failure") is not None and cases["fan[0]"].find("failure") is None

    # the README's reporter finds each failure's line: the dispatch that failed, in the step
    for name in ("stubborn", "fan[1]"):
        location = records[name.split("[")[0]]["error"]["location"]
        file, line = action_junit_report_position(cases[name], suite)
        assert (file, line) == ("runbook.yml", int(location.split(":")[1])), cases[name].find("failure").text
        assert _line_of(text, name.split("[")[0]) <= line


def test_junit_file_line_puts_them_on_each_testcase_which_junit_10_xsd_refuses(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    text = write(RETRIES).read_text()
    junit = tmp_path / "j.xml"
    result = run_cli(["run", "runbook.yml", "--junit", str(junit), "--junit-file-line"], cwd=tmp_path,
                     env=membrane_env)
    assert result.code == 1, result.stderr
    suite = ET.fromstring(junit.read_bytes()).find("testsuite")
    for case in suite.iter("testcase"):
        step_id = case.get("name").split("[")[0]
        assert (case.get("file"), case.get("line")) == ("runbook.yml", str(_line_of(text, step_id)))
        assert action_junit_report_position(case, suite) == ("runbook.yml", _line_of(text, step_id))
    errors = [str(e.reason) for e in junit_schema().iter_errors(str(junit))]
    assert errors and all("'file'" in e or "'line'" in e for e in errors), errors


def test_report_lines_come_from_the_runbook_when_the_manifest_has_none(write, tmp_path: Path) -> None:
    from engine.report.positions import step_lines

    text = write(RETRIES).read_text()
    import hashlib

    manifest = {"runbook": {"path": str(tmp_path / "runbook.yml"),
                            "sha256": hashlib.sha256(text.encode()).hexdigest()},
                "steps": [{"id": "fan", "section": "steps"}, {"id": "notify", "section": "finally"}]}
    assert step_lines(manifest) == {("steps", "flaky"): _line_of(text, "flaky"),
                                    ("steps", "stubborn"): _line_of(text, "stubborn"),
                                    ("steps", "fan"): _line_of(text, "fan"),
                                    ("finally", "notify"): _line_of(text, "notify")}
    (tmp_path / "runbook.yml").write_text(text + "# changed\n")  # another text: no line is guessed
    assert step_lines(manifest) == {}


# --- the Markdown summary as GitHub renders it --------------------------------------------------


def _gfm(markdown: str) -> str:
    cmarkgfm = pytest.importorskip("cmarkgfm")
    options = cmarkgfm.cmark.Options
    html: str = cmarkgfm.github_flavored_markdown_to_html(markdown, options=options.CMARK_OPT_UNSAFE)
    return html


def _text(html_fragment: str) -> str:
    import html
    import re

    return html.unescape(re.sub(r"<[^>]+>", "", html_fragment))


def test_the_summary_renders_as_written_on_github() -> None:
    import re

    from engine.report.summary import summary_markdown

    manifest = _manifest()
    manifest["runbook"] = {"name": "sync <b>bold</b> & `tick` ``x`` *em*", "path": "ops/a&b.yml"}
    manifest["run"]["error"] = "ops/a&b.yml:3:1: first <problem>\nops/a&b.yml:9:5: second `one`"
    manifest["steps"][0]["error"]["message"] = "line one <x>\nline two & `three`"
    rendered = _gfm(summary_markdown(manifest, "m.json"))
    (heading,) = re.findall(r"<h3>(.*?)</h3>", rendered)
    assert _text(heading) == "❌ runbook sync <b>bold</b> & `tick` ``x`` *em*: failed"
    assert "<b>" not in heading and "<em>" not in heading
    paragraphs = re.findall(r"<p>(.*?)</p>", rendered, re.S)
    run_error = next(p for p in paragraphs if "first" in p)
    assert [_text(line) for line in run_error.split("<br />")] == [
        "ops/a&b.yml:3:1: first <problem>", "\nops/a&b.yml:9:5: second `one`"]
    step_error = next(p for p in paragraphs if "line one" in p)
    assert [_text(part).strip() for part in step_error.split("<br />")] == [
        "a failed:", "client_error (HTTP 422): line one <x>", "line two & `three`"]
    assert "None" not in rendered


def test_the_summary_of_a_run_that_never_started_says_not_run() -> None:
    from engine.report.not_run import not_run_manifest
    from engine.report.summary import summary_markdown

    markdown = summary_markdown(not_run_manifest("x.yml", "x.yml:1:1: bad\nx.yml:2:3: worse"))
    assert "None" not in markdown and "run `" not in markdown and "not run ·" in markdown
    rendered = _gfm(markdown)
    assert rendered.count("<code>") >= 3 and "x.yml:2:3: worse</code>" in rendered


# --- under GitHub Actions: annotations and the step summary by default ------------------------------


def _actions_env(env: dict[str, str], summary: Path, **extra: str) -> dict[str, str]:
    return dict(env, GITHUB_ACTIONS="true", GITHUB_STEP_SUMMARY=str(summary), **extra)


def test_under_github_actions_run_annotates_failures_and_appends_the_step_summary(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    text = write(RETRIES).read_text()
    emulator.add_fault({"action": "busy"}, status=429, retry_after=0, times=1)
    summary = tmp_path / "summary.md"
    result = run_cli(["run", "runbook.yml"], cwd=tmp_path, env=_actions_env(membrane_env, summary))
    assert result.code == 1, result.stderr
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    records = {s["id"]: s for s in result.manifest["steps"]}
    _, line, col = records["stubborn"]["error"]["location"].rsplit(":", 2)
    assert annotations[0] == (f"::notice file=runbook.yml,line={_line_of(text, 'flaky')},title=step flaky is flaky"
                              "::passed on attempt 2 after 1 failed attempt; the first: rate_limited: "
                              + records["flaky"]["attempts"][0]["error"].split(": ", 1)[1])
    assert annotations[1].startswith(f"::error file=runbook.yml,line={line},col={col},"
                                     "title=step stubborn failed after 2 attempts::server_error (HTTP 503)")
    assert any(a.startswith("::error file=runbook.yml") and "title=step fan[1] failed" in a for a in annotations)
    assert summary.read_text().startswith("### ❌ runbook `retries`: failed")

    # --summary naming the same file: appended once; the flags turn both off
    again = run_cli(["run", "runbook.yml", "--summary", str(summary)], cwd=tmp_path,
                    env=_actions_env(membrane_env, summary))
    assert again.code == 1 and summary.read_text().count("### ❌") == 2
    off = run_cli(["run", "runbook.yml", "--no-annotations", "--no-step-summary"], cwd=tmp_path,
                  env=_actions_env(membrane_env, summary))
    assert off.code == 1 and "::" not in off.stdout and summary.read_text().count("### ❌") == 2
    # outside GitHub Actions: neither
    plain = run_cli(["run", "runbook.yml"], cwd=tmp_path, env=dict(membrane_env, GITHUB_STEP_SUMMARY=str(summary)))
    assert plain.code == 1 and "::" not in plain.stdout and summary.read_text().count("### ❌") == 2
    # with --json the annotations go to stderr, and stdout stays JSON
    as_json = run_cli(["run", "runbook.yml", "--json", "--no-step-summary"], cwd=tmp_path,
                      env=_actions_env(membrane_env, summary))
    import json

    assert json.loads(as_json.stdout)["run"]["status"] == "failed"
    assert "::error file=runbook.yml" in as_json.stderr


def test_under_github_actions_a_refused_run_annotates_its_problems(write, tmp_path: Path) -> None:
    write("version: 1\nname: bad\nsteps:\n  - {id: a, provider: membrane, dispatch: {id: x}, tiemout: 3}\n")
    summary = tmp_path / "summary.md"
    result = run_cli(["run", "runbook.yml"], cwd=tmp_path, env=_actions_env(base_env(), summary))
    assert result.code == 2
    assert result.stdout.startswith("::error file=runbook.yml,line=4,col=")
    assert "tiemout" in result.stdout and "tiemout" in result.stderr
    assert "### ❌ runbook `bad`: invalid" in summary.read_text()


def test_under_github_actions_validate_annotates_and_appends_its_verdict(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("version: 1\nname: bad\nsteps:\n  - {id: a, provider: membrane, "
                                      "dispatch: {id: x}, tiemout: 3}\n")
    (tmp_path / "warn.yml").write_text("version: 1\nname: warn\nsteps:\n  - id: a\n    provider: membrane\n"
                                       "    dispatch: {id: x}\n    input: {who: \"{{ vars.who }}\"}\n")
    summary = tmp_path / "summary.md"
    env = _actions_env(base_env(), summary)
    result = run_cli(["validate", "bad.yml", "warn.yml"], cwd=tmp_path, env=env)
    assert result.code == 2
    annotations = [line for line in result.stdout.splitlines() if line.startswith("::")]
    assert [a.split(" ", 1)[0] for a in annotations] == ["::error", "::warning"]
    assert annotations[0].startswith("::error file=bad.yml,line=4,")
    assert "bad.yml:4:" in result.stderr  # the text as well
    verdict = summary.read_text()
    assert verdict.startswith("### ❌ runbook validate: 1 error, 1 warning in 2 files")
    assert "`bad.yml:4:" in verdict and "vars.who" in verdict
    github = run_cli(["validate", "bad.yml", "--format", "github", "--no-step-summary"], cwd=tmp_path, env=env)
    assert len([line for line in github.stdout.splitlines() if line.startswith("::error")]) == 1  # not twice
    off = run_cli(["validate", "bad.yml", "--no-annotations"], cwd=tmp_path, env=env)
    assert "::" not in off.stdout
