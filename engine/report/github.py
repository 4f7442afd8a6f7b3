"""GitHub workflow-command annotations: validate's problems (``--format github``, and by default
under GitHub Actions) as ``::error file=…,line=…,col=…::message`` lines, which GitHub shows on
the line; a run's failed steps as ``::error`` at the field that failed (else at the step), a
step that passed only on a retry as ``::notice``.

Under GitHub Actions ``validate`` also appends a Markdown verdict to ``$GITHUB_STEP_SUMMARY``
(:func:`validate_summary`); a run appends :mod:`~engine.report.summary`'s.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from engine.report.text import markdown_code, markdown_prose, plural, workflow_message, workflow_property

if TYPE_CHECKING:
    from engine.errors import Problem, RunbookError
    from engine.report import Manifest

__all__ = ["annotation", "problems", "command", "run_annotations", "refusal", "validate_summary",
           "append_validate_summary"]

#: How many failed items of one for_each step get an annotation of their own (GitHub shows at
#: most 10 errors per step of a job; the step's own annotation counts them all).
ITEMS_ANNOTATED = 5


def command(kind: str, message: str, *, file: str | None = None, line: int | None = None,
            col: int | None = None, title: str | None = None) -> str:
    """``::kind file=F,line=L,col=C,title=T::message``, each part escaped, absent ones left out."""
    props = [f"{name}={workflow_property(str(value))}" for name, value in
             (("file", file), ("line", line), ("col", col), ("title", title)) if value not in (None, "")]
    return f"::{kind}{' ' + ','.join(props) if props else ''}::{workflow_message(message)}"


def annotation(problem: Problem) -> str:
    """``::warning file=F,line=L,col=C::message`` (``::error`` for an error), escaped."""
    return (f"::{problem.severity} file={workflow_property(problem.file)},line={problem.line},"
            f"col={problem.col}::{workflow_message(problem.message)}")


def problems(found: Sequence[Problem], stdout: TextIO) -> None:
    for problem in found:
        stdout.write(annotation(problem) + "\n")


def refusal(exc: RunbookError, file: str, stream: TextIO) -> None:
    """A run refused before its first step (exit 2): each located problem on its line; any
    other reason once, on the runbook."""
    from engine.errors import LocatedErrors

    if isinstance(exc, LocatedErrors) and exc.problems:
        problems([p for p in exc.problems if p.line > 0] or exc.problems, stream)
        return
    stream.write(command("error", str(exc), file=file if os.path.isfile(file) else None,
                         title="runbook: nothing was run") + "\n")


def run_annotations(manifest: Manifest, stream: TextIO) -> None:
    """A finished run's annotations: an ``::error`` per failed or interrupted step (and per
    failed item, the first few), a ``::notice`` per step that passed only on a retry, an
    ``::error`` for the run's own error."""
    from engine.report.positions import line_of, step_lines

    lines = step_lines(manifest)
    path = manifest["runbook"].get("path") or None
    out: list[str] = []
    for step in manifest.get("steps") or []:
        line = line_of(lines, step)
        out += _step_annotations(step, path, line)
        failed = [item for item in step.get("items") or [] if item["status"] in ("failed", "interrupted")]
        for item in failed[:ITEMS_ANNOTATED]:
            out += _step_annotations({**item, "id": f"{step['id']}[{item['index']}]"}, path, line)
    run = manifest.get("run") or {}
    if run.get("error"):
        out.append(command("error", str(run["error"]), file=path, title=f"runbook {manifest['runbook']['name']}"))
    for text in out:
        stream.write(text + "\n")


def _step_annotations(step: dict[str, Any], path: str | None, line: int | None) -> list[str]:
    from engine.report.positions import split_location
    from engine.report.text import recorded_error_line

    status = step["status"]
    attempts = step.get("attempts") or []
    if status in ("failed", "interrupted") and step.get("error"):
        error = step["error"]
        where = split_location(error.get("location"))
        file, at, col = where if where else (path, line, None)
        retried = f" after {len(attempts)} attempts" if len(attempts) > 1 else ""
        return [command("error", recorded_error_line(error, located=False), file=file, line=at, col=col,
                        title=f"step {step['id']} {status}{retried}")]
    failed = [a for a in attempts if a.get("error")]
    if status == "succeeded" and failed:
        return [command("notice", f"passed on attempt {len(attempts)} after {plural(len(failed), 'failed attempt')}; "
                                  f"the first: {failed[0]['error']}",
                        file=path, line=line, title=f"step {step['id']} is flaky")]
    return []


def validate_summary(found: Sequence[Problem], files: Sequence[str], skipped: Sequence[str]) -> str:
    """validate's verdict in Markdown: a title with the counts, a table of every problem."""
    errors = [p for p in found if p.severity == "error"]
    warnings = [p for p in found if p.severity == "warning"]
    icon = "❌" if errors else "✅"
    title = (f"### {icon} runbook validate: {plural(len(errors), 'error')}, {plural(len(warnings), 'warning')} "
             f"in {plural(len(files), 'file')}")
    lines = [title, ""]
    if skipped:
        lines += [f"{plural(len(skipped), 'YAML file')} skipped (not runbooks)", ""]
    if found:
        lines += ["| | where | problem |", "|---|---|---|"]
        for p in found[:500]:
            mark = "❌" if p.severity == "error" else "⚠️"
            lines.append(f"| {mark} | {markdown_code(f'{p.file}:{p.line}:{p.col}')} | {markdown_prose(p.message)} |")
        if len(found) > 500:
            lines.append(f"| | | and {len(found) - 500} more |")
        lines.append("")
    return "\n".join(lines) + "\n"


def append_validate_summary(path: str, found: Sequence[Problem], files: Sequence[str],
                            skipped: Sequence[str]) -> None:
    """Append :func:`validate_summary` to ``path`` (never through a symbolic link)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(validate_summary(found, files, skipped))
