"""``runbook show [RUN_ID|latest]``: a past run printed as ``runbook run`` printed it."""

from __future__ import annotations

from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from engine.report.colour import Palette

__all__ = ["show"]


def show(ref: str = "latest", *, runs_dir: str | None = None, stdout: TextIO, palette: Palette | None = None) -> int:
    """Print the run ``ref`` names (see :func:`~engine.commands.runs.find_run`); its exit code
    as ``run`` exited (0 succeeded, 1 failed, 130 interrupted; 1 for a run that never finished).
    ``palette``: the lines' colours (none by default)."""
    from engine.commands.runs import find_run
    from engine.manifest import read_manifest
    from engine.report.colour import PLAIN
    from engine.report.console import recorded_run

    path = find_run(ref, runs_dir)
    manifest = read_manifest(path)
    for line in recorded_run(manifest, path, palette or PLAIN):
        stdout.write(line + "\n")
    return {"succeeded": 0, "failed": 1, "interrupted": 130}.get(manifest["run"]["status"], 1)
