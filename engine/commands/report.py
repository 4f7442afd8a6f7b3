"""``runbook report MANIFEST --html PATH``: the file reports of a past run, from its manifest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TextIO

__all__ = ["report"]


def report(ref: str, paths: Mapping[str, str | None], *, settings: Mapping[str, Mapping[str, Any]] | None = None,
           stdout: TextIO, stderr: TextIO) -> int:
    """Write each report of ``paths`` from the manifest ``ref`` names (a path, a run id, or
    ``latest``); 0, or 2 when the manifest cannot be read or a report cannot be written."""
    from engine.commands.runs import find_run
    from engine.errors import RunbookError
    from engine.manifest import read_manifest
    from engine.report import ReportOptions

    reports = ReportOptions("text", paths, settings=settings)
    if not reports.paths:
        raise RunbookError("runbook report: name a report to write: --html PATH, --junit PATH or --summary PATH")
    path = find_run(ref)
    manifest = read_manifest(path)
    problems = reports.write_files(manifest, path)
    for problem in problems:
        stderr.write(f"runbook: {problem}\n")
    if problems:
        return 2
    for name, written in reports.paths.items():
        stdout.write(f"{name}: {written}\n")
    return 0
