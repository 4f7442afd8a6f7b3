"""Reports for pipelines, written from the final (already redacted) manifest.

- :func:`junit_xml`: JUnit XML, one ``testcase`` per step (``failure`` for a failed
  step, ``error`` for an internal error or an interruption, ``skipped`` for a
  skipped or not-run step), in the shape of the common JUnit XSD (Jenkins'
  ``junit-10.xsd``, read by GitHub, GitLab and Jenkins test reporters).
- :func:`summary_markdown`: a Markdown section (steps table, then outputs) to
  append to ``$GITHUB_STEP_SUMMARY``.

Both read only the manifest's records, whose requests, outputs and errors are
already redacted by taint and scrubbed of known secret values; nothing here
sees a raw value. :func:`reporting_errors` writes the same reports when a run
stops before its first step (an invalid runbook, a missing secret: exit 2), so
a pipeline that always publishes them finds them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["junit_xml", "summary_markdown", "write_reports", "reporting_errors"]

# Characters XML 1.0 cannot carry, even escaped (ANSI escapes in provider logs, NUL, ...).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_ERRORS = ("internal", "interrupted")
_ICON = {"succeeded": "✅", "failed": "❌", "skipped": "⏭️", "not_run": "⏹️", "interrupted": "⚠️",
         "invalid": "❌"}


def _xml_text(value: Any) -> str:
    """Text XML 1.0 can hold: characters it cannot are written as ``\\x1b``-style escapes."""
    return _NOT_XML.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), str(value))


def _seconds(ms: Any) -> str:
    return f"{(ms or 0) / 1000:.3f}"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _counts(steps: list[dict[str, Any]]) -> dict[str, int]:
    counts = {"tests": len(steps), "failures": 0, "errors": 0, "skipped": 0}
    for step in steps:
        if step["status"] in ("skipped", "not_run"):
            counts["skipped"] += 1
        elif step["status"] == "interrupted" or (
            step["status"] == "failed" and (step.get("error") or {}).get("type") in _ERRORS
        ):
            counts["errors"] += 1
        elif step["status"] == "failed":
            counts["failures"] += 1
    return counts


def _error_text(error: dict[str, Any], *, located: bool = True) -> str:
    """``FILE:LINE:COL: type (HTTP n): message``, as the console prints a step's error."""
    status = f" (HTTP {error['http_status']})" if error.get("http_status") else ""
    where = f"{error['location']}: " if located and error.get("location") else ""
    return f"{where}{error.get('type', 'error')}{status}: {error.get('message', '')}"


def _clip(text: str, limit: int = 20_000) -> str:
    return text if len(text) <= limit else text[:limit] + f"... ({len(text) - limit} more characters)"


def _failure_text(step: dict[str, Any]) -> str:
    """What a test reporter shows for a failed step: the error, its attribution, the logs."""
    error = step.get("error") or {}
    lines = [_error_text(error)]
    if error.get("attribution"):
        lines.append(f"attribution: {error['attribution']}")
    if error.get("provider_error"):
        lines.append(f"provider error: {_json(error['provider_error'])}")
    if step.get("run_id"):
        lines.append(f"provider run id: {step['run_id']}")
    for entry in (step.get("logs") or [])[:50]:
        lines.append(f"log: {_clip(entry if isinstance(entry, str) else _json(entry), 2000)}")
    return "\n".join(lines) + "\n"


def _step_out(step: dict[str, Any]) -> str:
    """The step's record in words: provider, run id, attempts, request and output."""
    lines = [
        f"step: {step['id']}" + (f" ({step['name']})" if step.get("name") else ""),
        f"status: {step['status']}",
        f"provider: {step['provider']} ({step['provider_type']}), dispatch {step['dispatch']}",
    ]
    if step.get("run_id"):
        lines.append(f"provider run id: {step['run_id']}")
    if step.get("reused_from"):
        lines.append(f"reused from run: {step['reused_from']}")
    attempts = step.get("attempts") or []
    if len(attempts) > 1:
        lines.append(f"attempts: {len(attempts)}")
        for attempt in attempts:
            lines.append(f"  {attempt['number']}: {attempt.get('error') or 'ok'} ({attempt['duration_ms']} ms)")
    if step.get("error"):
        lines.append(f"error: {_error_text(step['error'])}")
    if step.get("request") is not None:
        lines.append(f"request: {_clip(_json(step['request']))}")
    if step["status"] == "succeeded" and step.get("output") is not None:
        lines.append(f"output: {_clip(_json(step['output']))}")
    return "\n".join(lines) + "\n"


def _timestamp(rfc3339: str | None) -> str | None:
    # The XSD's timestamp is an ISO 8601 date-time without a zone (UTC here).
    return rfc3339[:19] if rfc3339 else None


def junit_xml(manifest: dict[str, Any], manifest_path: str | None = None) -> bytes:
    """The JUnit XML document of a run's manifest."""
    run, runbook = manifest["run"], manifest["runbook"]
    steps = manifest.get("steps") or []
    counts = {k: str(v) for k, v in _counts(steps).items()}
    time = _seconds(run.get("duration_ms"))
    root = ET.Element("testsuites", {"name": "runbook", **counts, "time": time})
    suite_attrs = {"name": _xml_text(runbook["name"]), **counts, "time": time,
                   "hostname": _xml_text(socket.gethostname()), "id": "0"}
    if _timestamp(run.get("started_at")):
        suite_attrs["timestamp"] = _timestamp(run.get("started_at")) or ""
    suite = ET.SubElement(root, "testsuite", suite_attrs)
    props = ET.SubElement(suite, "properties")
    git = runbook.get("git") or {}
    for name, value in (
        ("run.id", run.get("id")),
        ("run.status", run.get("status")),
        ("run.resumed_from", run.get("resumed_from")),
        ("runbook.path", runbook.get("path")),
        ("runbook.sha256", runbook.get("sha256")),
        ("git.commit", git.get("commit")),
        ("git.dirty", None if not git else str(bool(git.get("dirty"))).lower()),
        ("manifest", manifest_path),
    ):
        if value is not None:
            ET.SubElement(props, "property", {"name": name, "value": _xml_text(value)})
    for step in steps:
        classname = f"{runbook['name']}.{step.get('section', 'steps')}"
        case = ET.SubElement(suite, "testcase", {
            "name": _xml_text(step["id"]), "classname": _xml_text(classname),
            "time": _seconds(step.get("duration_ms")),
        })
        error = step.get("error") or {}
        status = step["status"]
        if status == "skipped":
            ET.SubElement(case, "skipped", {"message": "skipped: its when condition was false"})
        elif status == "not_run":
            ET.SubElement(case, "skipped", {"message": "not run: an earlier step failed or the run stopped"})
        elif status == "interrupted" or (status == "failed" and error.get("type") in _ERRORS):
            node = ET.SubElement(case, "error", {"message": _xml_text(_error_text(error)),
                                                 "type": _xml_text(error.get("type", status))})
            node.text = _xml_text(_failure_text(step))
        elif status == "failed":
            node = ET.SubElement(case, "failure", {"message": _xml_text(_error_text(error)),
                                                   "type": _xml_text(error.get("type", "failed"))})
            node.text = _xml_text(_failure_text(step))
        ET.SubElement(case, "system-out").text = _xml_text(_step_out(step))
    out = [f"run {run['id']}: {run.get('status')}" if run.get("id")
           else f"runbook {runbook['name']}: not run ({run.get('status')})"]
    if run.get("error"):
        out.append(f"error: {run['error']}")
    if manifest.get("outputs"):
        out.append(f"outputs: {_json(manifest['outputs'])}")
    ET.SubElement(suite, "system-out").text = _xml_text("\n".join(out) + "\n")
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _cell(value: Any, limit: int = 300, *, table: bool = True) -> str:
    """Data as a Markdown code span on one line (in a table cell, pipes escaped too)."""
    text = value if isinstance(value, str) else _json(value)
    text = _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("\r", "").replace("\n", " ")
    if table:
        text = text.replace("|", "\\|")
    fence = "``" if "`" in text else "`"
    return f"{fence}{text}{fence}" if text else ""


def _plain(text: str) -> str:
    """Prose in a cell: no raw HTML, no table breaks."""
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("|", "\\|").replace("\r", "").replace("\n", " "))


def _duration(ms: Any) -> str:
    ms = ms or 0
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def summary_markdown(manifest: dict[str, Any], manifest_path: str | None = None) -> str:
    """A Markdown section for ``$GITHUB_STEP_SUMMARY``: steps, then outputs."""
    run, runbook = manifest["run"], manifest["runbook"]
    steps = manifest.get("steps") or []
    icon = _ICON.get(run.get("status", ""))
    title = f"runbook `{_plain(runbook['name'])}`: {run.get('status')}"
    lines = [f"### {icon} {title}" if icon else f"### {title}", ""]
    facts = [f"run `{run['id']}`" if run.get("id") else "not run",
             f"{len(steps)} step{'s' if len(steps) != 1 else ''}", _duration(run.get("duration_ms"))]
    if runbook.get("path") and runbook["path"] != runbook["name"]:
        facts.append(f"`{_plain(runbook['path'])}`")
    if run.get("resumed_from"):
        facts.append(f"resumed from `{run['resumed_from']}`")
    if run.get("emulated"):
        facts.append("emulated")
    if manifest_path:
        facts.append(f"manifest `{_plain(manifest_path)}`")
    lines += [" · ".join(facts), ""]
    if steps:
        lines += ["| | step | status | provider | dispatch | duration | run id |",
                  "|---|---|---|---|---|---|---|"]
        for step in steps:
            provider = step["provider"] if step["provider"] == step["provider_type"] \
                else f"{step['provider']} ({step['provider_type']})"
            status = step["status"].replace("_", " ")
            attempts = len(step.get("attempts") or [])
            if attempts > 1:
                status += f" ({attempts} attempts)"
            lines.append(
                f"| {_ICON.get(step['status'], '')} | {_cell(step['id'])} | {status} | {_plain(provider)} "
                f"| {step['dispatch']} | {_duration(step.get('duration_ms'))} "
                f"| {_cell(step.get('run_id') or '')} |"
            )
        lines.append("")
    failed = [s for s in steps if s.get("error") and s["status"] in ("failed", "interrupted")]
    for step in failed:
        message = _cell(_error_text(step["error"], located=False), 1000, table=False)
        where = f" at `{_plain(step['error']['location'])}`" if step["error"].get("location") else ""
        lines.append(f"**{_plain(step['id'])}** {step['status']}: {message}{where}")
        if step["error"].get("attribution"):
            lines.append(f"attribution: {_plain(str(step['error']['attribution']))}")
        lines.append("")
    if run.get("error"):
        lines += [f"**run error**: {_cell(run['error'], 1000, table=False)}", ""]
    outputs = manifest.get("outputs") or {}
    if outputs:
        lines += ["| output | value |", "|---|---|"]
        for key, value in outputs.items():
            lines.append(f"| {_cell(key)} | {_cell(value)} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def write_reports(manifest: dict[str, Any], *, junit_path: str | None = None,
                  summary_path: str | None = None, manifest_path: str | None = None) -> list[str]:
    """Write the reports asked for; return a message per report that could not be written."""
    problems: list[str] = []
    if junit_path:
        try:
            from engine.files import atomic_write

            os.makedirs(os.path.dirname(os.path.abspath(junit_path)), exist_ok=True)
            atomic_write(junit_path, junit_xml(manifest, manifest_path))
        except OSError as exc:
            problems.append(f"cannot write the JUnit report {junit_path}: {exc.strerror or exc}")
    if summary_path:
        try:
            # O_NOFOLLOW: a symbolic link planted at the path is refused, not followed
            fd = os.open(summary_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(summary_markdown(manifest, manifest_path))
        except OSError as exc:
            problems.append(f"cannot append the summary to {summary_path}: {exc.strerror or exc}")
    return problems


@contextmanager
def reporting_errors(file: str, junit_path: str | None, summary_path: str | None) -> Iterator[None]:
    """Write the reports of a run that stopped before its first step (exit 2), then re-raise."""
    from engine.errors import RunbookError

    try:
        yield
    except RunbookError as exc:
        if junit_path or summary_path:
            _write_not_run(file, str(exc), junit_path, summary_path)
        raise


def _scrub_secrets(file: str, message: str) -> str:
    """``message`` without the value of any secret the runbook names (a provider block rendered
    from a secret can be quoted in a configuration error)."""
    from engine.redaction import Redactor

    try:
        with open(file, encoding="utf-8") as fh:
            names = set(re.findall(r"secrets\s*(?:\.\s*|\[\s*['\"])([A-Za-z_][A-Za-z0-9_]*)", fh.read()))
    except (OSError, UnicodeDecodeError):
        return message
    redactor = Redactor()
    for name in names:
        redactor.add(os.environ.get(name))
    return redactor.text(message)


def _runbook_name(file: str) -> str:
    """The runbook's ``name:`` if the file can be read far enough to know it, else its path.

    A file that is not valid YAML further down still names itself on a top-level
    ``name:`` line holding a one-line plain or quoted value.
    """
    from engine.errors import LocatedErrors
    from engine.loader import load_file

    try:
        data = load_file(file).data
    except LocatedErrors:
        try:
            with open(file, encoding="utf-8") as fh:
                found = re.search(r"(?m)^name[ \t]*:[ \t]+(\S.*?)(?:[ \t]+#.*)?[ \t]*$", fh.read())
        except (OSError, UnicodeDecodeError):
            return file
        value = found.group(1) if found else ""
        if len(value) > 1 and value[0] in "\"'" and value[-1] == value[0]:
            value = value[1:-1]
        elif value[:1] in ("", *"\"'&*!|>{[%@`"):
            return file  # not a one-line plain value: nothing to trust
        return value.strip() or file
    name = data.get("name") if isinstance(data, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else file


def _write_not_run(file: str, message: str, junit_path: str | None, summary_path: str | None) -> None:
    """Reports saying nothing ran, and why (the located problems, secrets scrubbed)."""
    from engine.manifest import now_rfc3339

    message = _scrub_secrets(file, message)
    manifest = {
        "run": {"id": None, "status": "invalid", "started_at": now_rfc3339(), "duration_ms": 0},
        "runbook": {"name": _runbook_name(file), "path": file},
        "steps": [{
            "id": "validate", "name": "validate, check vars and secrets", "section": "steps",
            "provider": "runbook", "provider_type": "runbook", "dispatch": "none",
            "status": "failed", "duration_ms": 0,
            "error": {"type": "invalid", "message": message},
        }],
        "outputs": {},
    }
    for problem in write_reports(manifest, junit_path=junit_path, summary_path=summary_path):
        sys.stderr.write(f"runbook: {problem}\n")
