"""The Markdown summary (``run --summary PATH``), appended to ``$GITHUB_STEP_SUMMARY``:
a title and the run's facts, the steps table, each failed step's error, the outputs.

It reads only the manifest's records, whose requests, outputs and errors are already
redacted by taint and scrubbed of known secret values: nothing here sees a raw value.
"""

from __future__ import annotations

import os
from typing import Any

from engine.report import Manifest
from engine.report.text import (
    duration,
    json_text,
    markdown_code,
    markdown_lines,
    markdown_prose,
    provider_label,
    recorded_error_line,
)

__all__ = ["summary_markdown", "write"]

_ICON = {"succeeded": "✅", "failed": "❌", "skipped": "⏭️", "not_run": "⏹️", "interrupted": "⚠️",
         "invalid": "❌"}
Record = dict[str, Any]


def write(path: str, manifest: Manifest, manifest_path: str | None) -> None:
    """Append the summary to ``path`` (created if need be, never through a symbolic link)."""
    # O_NOFOLLOW: a symbolic link planted at the path is refused, not followed
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(summary_markdown(manifest, manifest_path))


def summary_markdown(manifest: Manifest, manifest_path: str | None = None) -> str:
    """A Markdown section for ``$GITHUB_STEP_SUMMARY``: steps, then outputs."""
    steps = manifest.get("steps") or []
    lines = [_title(manifest), "", " · ".join(_facts(manifest, manifest_path)), ""]
    lines += _steps_table(steps)
    lines += _failures(steps)
    if manifest["run"].get("error"):
        lines += ["**run error**:", "", *_error_lines(str(manifest["run"]["error"])), ""]
    lines += _outputs_table(manifest.get("outputs") or {})
    return "\n".join(lines) + "\n"


def _cell(value: Any, limit: int = 300, *, table: bool = True) -> str:
    """Data as a Markdown code span on one line (in a table cell, pipes escaped too)."""
    return markdown_code(value if isinstance(value, str) else json_text(value), limit, table=table)


def _title(manifest: Manifest) -> str:
    status = manifest["run"].get("status")
    icon = _ICON.get(status or "")
    title = f"runbook {markdown_code(manifest['runbook']['name'], 200)}: {status}"
    return f"### {icon} {title}" if icon else f"### {title}"


def _facts(manifest: Manifest, manifest_path: str | None) -> list[str]:
    """The run id, the number of steps, the duration, then what else is known."""
    run, runbook = manifest["run"], manifest["runbook"]
    steps = manifest.get("steps") or []
    facts = [f"run {markdown_code(str(run['id']))}" if run.get("id") else "not run",
             f"{len(steps)} step{'s' if len(steps) != 1 else ''}", duration(run.get("duration_ms"))]
    if runbook.get("path") and runbook["path"] != runbook["name"]:
        facts.append(markdown_code(runbook["path"]))
    if run.get("resumed_from"):
        facts.append(f"resumed from {markdown_code(str(run['resumed_from']))}")
    if run.get("emulated"):
        facts.append("emulated")
    if manifest_path:
        facts.append(f"manifest {markdown_code(manifest_path)}")
    return facts


def _steps_table(steps: list[Record]) -> list[str]:
    if not steps:
        return []
    return ["| | step | status | provider | dispatch | duration | run id |",
            "|---|---|---|---|---|---|---|", *(_step_row(step) for step in steps), ""]


def _step_row(step: Record) -> str:
    status = step["status"].replace("_", " ")
    attempts = len(step.get("attempts") or [])
    if attempts > 1:
        status += f" ({attempts} attempts)"
    if step.get("items") is not None:
        status += f" ({_item_counts(step['items'])})"
    provider = provider_label(step["provider"], step["provider_type"])
    return (f"| {_ICON.get(step['status'], '')} | {_cell(step['id'])} | {status} | {markdown_prose(provider)} "
            f"| {step['dispatch']} | {duration(step.get('duration_ms'))} "
            f"| {_cell(step.get('run_id') or '')} |")


def _item_counts(items: list[Record]) -> str:
    """``500 items: 498 succeeded, 2 failed``."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item["status"]] = counts.get(item["status"], 0) + 1
    detail = ", ".join(f"{n} {status.replace('_', ' ')}" for status, n in counts.items())
    return f"{len(items)} item{'s' if len(items) != 1 else ''}" + (f": {detail}" if detail else "")


#: How many failed items of one step the summary lists.
FAILED_ITEMS_SHOWN = 20


def _failed_items(step: Record) -> list[str]:
    failed = [item for item in step.get("items") or [] if item["status"] in ("failed", "interrupted")]
    lines = [f"- item {item['index']}: {item['status']}: "
             f"{_cell(recorded_error_line(item.get('error') or {}, located=False), 300, table=False)}"
             for item in failed[:FAILED_ITEMS_SHOWN]]
    if len(failed) > FAILED_ITEMS_SHOWN:
        lines.append(f"- and {len(failed) - FAILED_ITEMS_SHOWN} more (see the manifest)")
    return lines


def _error_lines(text: str, limit: int = 1000) -> list[str]:
    """An error in a paragraph of its own: one line of code per line of the error (a refused
    run's problems are one a line), each ending in a hard line break but the last."""
    spans = markdown_lines(text, limit)[:50] or [markdown_code("(no message)", table=False)]
    return [span + "\\" for span in spans[:-1]] + spans[-1:]


def _failures(steps: list[Record]) -> list[str]:
    """A paragraph per failed or interrupted step: its error, where, its attribution."""
    lines: list[str] = []
    for step in steps:
        error = step.get("error")
        if not error or step["status"] not in ("failed", "interrupted"):
            continue
        where = f" at {markdown_code(error['location'], table=False)}" if error.get("location") else ""
        lines.append(f"**{markdown_prose(step['id'])}** {step['status']}{where}:\\")
        lines += _error_lines(recorded_error_line(error, located=False))
        if error.get("attribution"):
            lines[-1] += "\\"
            lines.append(f"attribution: {markdown_prose(str(error['attribution']))}")
        lines.append("")
        failed = _failed_items(step)
        if failed:
            lines += [*failed, ""]
    return lines


def _outputs_table(outputs: dict[str, Any]) -> list[str]:
    if not outputs:
        return []
    return ["| output | value |", "|---|---|", *(f"| {_cell(key)} | {_cell(value)} |"
                                                  for key, value in outputs.items()), ""]
