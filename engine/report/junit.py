"""The JUnit XML report (``run --junit PATH``), written from the final manifest.

One ``testcase`` per step (per item of a ``for_each`` step: ``invite[3]``): ``failure`` for a
failed step, ``error`` for an internal error or an interruption, ``skipped`` for a skipped or
not-run step. The document is valid against Jenkins xunit's ``junit-10.xsd`` (the strictest
reader: it refuses any attribute it does not declare), which GitHub, GitLab and Jenkins test
reporters read too.

Retries are shown as Maven Surefire shows reruns, which those reporters understand: a step that
succeeded after failed attempts has a ``flakyFailure`` per failed attempt (a *flaky* test), a
step that failed after retries a ``rerunFailure`` per earlier failed attempt; its ``system-out``
says how many attempts it took.

Where the step stands in the runbook: the XSD allows no ``file`` or ``line`` on a testcase, so
the suite's ``file`` is the runbook's path and every failure's text ends with ``at FILE:LINE``
lines (the step's line, then the field that failed), which is where reporters such as
mikepenz/action-junit-report look when a testcase has no ``file``. ``file_line=True``
(``--junit-file-line``) also puts ``file`` and ``line`` on each testcase, for readers that
only look there (EnricoMi/publish-unit-test-result-action, GitLab); junit-10.xsd refuses those.

It reads only the manifest's records, whose requests, outputs and errors are already
redacted by taint and scrubbed of known secret values: nothing here sees a raw value.
"""

from __future__ import annotations

import os
import socket
import xml.etree.ElementTree as ET
from typing import Any

from engine.report import Manifest
from engine.report.positions import line_of, split_location, step_lines
from engine.report.text import json_text, recorded_error_line, xml

__all__ = ["junit_xml", "test_cases", "write"]

_ERRORS = ("internal", "interrupted")
Record = dict[str, Any]


def write(path: str, manifest: Manifest, manifest_path: str | None, *, file_line: bool = False) -> None:
    """Replace ``path`` with the report (its folder created)."""
    from engine.files import atomic_write

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write(path, junit_xml(manifest, manifest_path, file_line=file_line))


def junit_xml(manifest: Manifest, manifest_path: str | None = None, *, file_line: bool = False) -> bytes:
    """The JUnit XML document of a run's manifest (``file_line``: see the module's note)."""
    run, runbook = manifest["run"], manifest["runbook"]
    steps = test_cases(manifest.get("steps") or [])
    counts = {k: str(v) for k, v in _counts(steps).items()}
    time = _seconds(run.get("duration_ms"))
    # junit-10.xsd's testsuites has no skipped attribute (the suite has)
    root = ET.Element("testsuites", {"name": "runbook", **{k: v for k, v in counts.items() if k != "skipped"},
                                     "time": time})
    suite = ET.SubElement(root, "testsuite", _suite_attributes(manifest, counts, time))
    props = ET.SubElement(suite, "properties")
    for name, value in _properties(manifest, manifest_path):
        if value is not None:
            ET.SubElement(props, "property", {"name": name, "value": xml(value)})
    lines = step_lines(manifest)
    where = _Where(runbook.get("path") or "", lines, file_line)
    for step in steps:
        _testcase(suite, step, runbook["name"], where)
    ET.SubElement(suite, "system-out").text = xml(_suite_out(manifest))
    ET.indent(root)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)  # bytes for an encoding
    return document + b"\n"


def test_cases(steps: list[Record], within: tuple[str, ...] = ()) -> list[Record]:
    """The steps as test cases: each item of a ``for_each`` step is one (``invite[3]``, with the
    step's provider and dispatch); a step with no items is one itself; the steps of a runbook a
    step called are cases too, after it, one classname level down (``within``: the calling
    steps' sections and ids, kept as ``_within``)."""
    cases: list[Record] = []
    for step in steps:
        items = step.get("items")
        identity: Record = {k: step[k] for k in ("name", "section", "provider", "provider_type", "dispatch")
                            if k in step}
        if not items:
            cases.append({**step, "_within": within})
        else:
            cases += [{**identity, **item, "id": f"{step['id']}[{item['index']}]", "_within": within}
                      for item in items]
            for item in items:
                cases += test_cases(item.get("children") or [],
                                    (*within, f"{step.get('section', 'steps')}.{step['id']}[{item['index']}]"))
        cases += test_cases(step.get("children") or [], (*within, f"{step.get('section', 'steps')}.{step['id']}"))
    return cases


def _counts(steps: list[Record]) -> dict[str, int]:
    counts = {"tests": len(steps), "failures": 0, "errors": 0, "skipped": 0}
    for step in steps:
        if step["status"] in ("skipped", "not_run"):
            counts["skipped"] += 1
        elif _is_error(step):
            counts["errors"] += 1
        elif step["status"] == "failed":
            counts["failures"] += 1
    return counts


def _is_error(step: Record) -> bool:
    """An interruption or an internal error: not the step's failure but the run's."""
    return step["status"] == "interrupted" or (
        step["status"] == "failed" and (step.get("error") or {}).get("type") in _ERRORS)


def _seconds(ms: Any) -> str:
    return f"{(ms or 0) / 1000:.3f}"


def _timestamp(rfc3339: str | None) -> str | None:
    # The XSD's timestamp is an ISO 8601 date-time without a zone (UTC here).
    return rfc3339[:19] if rfc3339 else None


def _suite_attributes(manifest: Manifest, counts: dict[str, str], time: str) -> dict[str, str]:
    attributes = {"name": xml(manifest["runbook"]["name"]), **counts, "time": time,
                  "hostname": xml(socket.gethostname()), "id": "0"}
    timestamp = _timestamp(manifest["run"].get("started_at"))
    if timestamp:
        attributes["timestamp"] = timestamp
    if manifest["runbook"].get("path"):
        attributes["file"] = xml(manifest["runbook"]["path"])
    return attributes


def _properties(manifest: Manifest, manifest_path: str | None) -> list[tuple[str, Any]]:
    """The run's facts, as ``property`` name and value (``None``: left out)."""
    run, runbook = manifest["run"], manifest["runbook"]
    git = runbook.get("git") or {}
    return [
        ("run.id", run.get("id")),
        ("run.status", run.get("status")),
        ("run.resumed_from", run.get("resumed_from")),
        ("runbook.path", runbook.get("path")),
        ("runbook.sha256", runbook.get("sha256")),
        ("git.commit", git.get("commit")),
        ("git.dirty", None if not git else str(bool(git.get("dirty"))).lower()),
        ("manifest", manifest_path),
    ]


class _Where:
    """Where each test case's step stands: the runbook's path and the steps' lines."""

    def __init__(self, file: str, lines: dict[tuple[str, str], int], on_testcase: bool) -> None:
        self.file, self.lines, self.on_testcase = file, lines, on_testcase

    def line(self, step: Record) -> int | None:
        return line_of(self.lines, step)

    def trail(self, step: Record) -> str:
        """``at FILE:LINE`` lines: the step's, then the failing field's (the last one a reporter
        that reads a failure's text takes)."""
        out = []
        line = self.line(step)
        if self.file and line:
            out.append(f"  at {self.file}:{line} (step {step['id']})")
        located = split_location((step.get("error") or {}).get("location"))
        if located:
            out.append(f"  at {located[0]}:{located[1]}:{located[2]}")
        return "\n".join(out) + "\n" if out else ""


def _testcase(suite: ET.Element, step: Record, runbook_name: str, where: _Where) -> None:
    # a called runbook's step: its caller's section and id, then its own section
    classname = ".".join((runbook_name, *step.get("_within", ()), step.get("section", "steps")))
    attributes = {"name": xml(step["id"]), "classname": xml(classname), "time": _seconds(step.get("duration_ms"))}
    line = where.line(step)
    if where.on_testcase and where.file:
        attributes["file"] = xml(where.file)
        if line:
            attributes["line"] = str(line)
    case = ET.SubElement(suite, "testcase", attributes)
    error = step.get("error") or {}
    status = step["status"]
    failed_attempts = [a for a in step.get("attempts") or [] if a.get("error")]
    if status == "skipped":
        ET.SubElement(case, "skipped", {"message": "skipped: its when condition was false"})
    elif status == "not_run":
        ET.SubElement(case, "skipped", {"message": "not run: an earlier step failed or the run stopped"})
    elif _is_error(step) or status == "failed":
        tag, default_type = ("error", status) if _is_error(step) else ("failure", "failed")
        node = ET.SubElement(case, tag, {"message": xml(recorded_error_line(error)),
                                         "type": xml(error.get("type", default_type))})
        node.text = xml(_failure_text(step) + where.trail(step))
        # the failed attempts before the one the failure is about, each a rerun that failed too
        attempts = step.get("attempts") or []
        earlier = failed_attempts[:-1] if attempts and attempts[-1].get("error") else failed_attempts
        for attempt in earlier:
            _rerun(case, "rerunFailure", attempt, step, where)
    elif status == "succeeded":
        for attempt in failed_attempts:  # it passed on a later attempt: flaky
            _rerun(case, "flakyFailure", attempt, step, where)
    ET.SubElement(case, "system-out").text = xml(_step_out(step, where))


def _rerun(case: ET.Element, tag: str, attempt: Record, step: Record, where: _Where) -> None:
    """A failed attempt as Surefire records a rerun: ``flakyFailure`` (the step passed later) or
    ``rerunFailure`` (it failed in the end too)."""
    text = str(attempt.get("error") or "")
    status = f" (HTTP {attempt['http_status']})" if attempt.get("http_status") else ""
    node = ET.SubElement(case, tag, {"message": xml(f"attempt {attempt.get('number')}: {text}"),
                                     "type": xml(text.split(":", 1)[0] or "failed")})
    trail = where.trail({**step, "error": None})
    node.text = xml(f"attempt {attempt.get('number')} of step {step['id']}{status}, "
                    f"{attempt.get('duration_ms', 0)} ms: {text}\n{trail}")


def _clip(text: str, limit: int = 20_000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _failure_text(step: Record) -> str:
    """What a test reporter shows for a failed step: the error, its attribution, the logs."""
    error = step.get("error") or {}
    lines = [recorded_error_line(error)]
    if error.get("attribution"):
        lines.append(f"attribution: {error['attribution']}")
    if error.get("provider_error"):
        lines.append(f"provider error: {json_text(error['provider_error'])}")
    if step.get("run_id"):
        lines.append(f"provider run id: {step['run_id']}")
    for entry in (step.get("logs") or [])[:50]:
        lines.append(f"log: {_clip(entry if isinstance(entry, str) else json_text(entry), 2000)}")
    return "\n".join(lines) + "\n"


def _step_out(step: Record, where: _Where) -> str:
    """The step's record in words: where it is, provider, run id, attempts, request and output."""
    line = where.line(step)
    lines = [
        f"step: {step['id']}" + (f" ({step['name']})" if step.get("name") else ""),
        f"status: {step['status']}" + _attempts_note(step),
        f"provider: {step['provider']} ({step['provider_type']}), dispatch {step['dispatch']}",
    ]
    if where.file and line:
        lines.insert(1, f"location: {where.file}:{line}")
    if step.get("run_id"):
        lines.append(f"provider run id: {step['run_id']}")
    if step.get("reused_from"):
        lines.append(f"reused from run: {step['reused_from']}")
    lines += _attempt_lines(step.get("attempts") or [])
    if step.get("error"):
        lines.append(f"error: {recorded_error_line(step['error'])}")
    if step.get("request") is not None:
        lines.append(f"request: {_clip(json_text(step['request']))}")
    if step["status"] == "succeeded" and step.get("output") is not None:
        lines.append(f"output: {_clip(json_text(step['output']))}")
    return "\n".join(lines) + "\n"


def _attempts_note(step: Record) -> str:
    """`` after 3 attempts (flaky)`` for a step that passed after failed attempts."""
    attempts = step.get("attempts") or []
    if len(attempts) <= 1:
        return ""
    flaky = step["status"] == "succeeded" and any(a.get("error") for a in attempts)
    return f" after {len(attempts)} attempts" + (" (flaky: it passed on a retry)" if flaky else "")


def _attempt_lines(attempts: list[Record]) -> list[str]:
    """Retried attempts, one line each (nothing for a single attempt)."""
    if len(attempts) <= 1:
        return []
    return [f"attempts: {len(attempts)}"] + [
        f"  {attempt['number']}: {attempt.get('error') or 'ok'} ({attempt['duration_ms']} ms)"
        for attempt in attempts]


def _suite_out(manifest: Manifest) -> str:
    """The run's verdict, its error and its outputs."""
    run, runbook = manifest["run"], manifest["runbook"]
    out = [f"run {run['id']}: {run.get('status')}" if run.get("id")
           else f"runbook {runbook['name']}: not run ({run.get('status')})"]
    if run.get("error"):
        out.append(f"error: {run['error']}")
    if manifest.get("outputs"):
        out.append(f"outputs: {json_text(manifest['outputs'])}")
    return "\n".join(out) + "\n"
