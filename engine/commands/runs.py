"""``runbook runs``: the past runs whose manifests are under ``.runbook/runs``, newest first.

Listing reads only the head of each manifest (the run and the runbook come before the steps),
so a folder of long runs lists as fast as one of short ones. :func:`find_run` is how ``show``
and ``report`` name a run: ``latest``, a run id (or the start of one), or a manifest's path.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple, TextIO

from engine.errors import RunbookError

__all__ = ["RUNS_DIR", "RunEntry", "list_runs", "find_run", "runs"]

#: Where ``runbook run`` writes its manifests unless ``--manifest`` says otherwise.
RUNS_DIR = os.path.join(".runbook", "runs")

_STEPS = b',\n  "steps": ['
_HEAD_LIMIT = 4 << 20  # read at most this much looking for the steps (a huge vars: mapping)


class RunEntry(NamedTuple):
    """A past run as ``runbook runs`` lists it."""

    id: str
    runbook: str
    status: str
    started_at: str
    duration_ms: int | None
    path: str


def _head(path: str) -> dict[str, Any] | None:
    """The manifest's run and runbook, reading no further than its steps; None if it is not a
    manifest of ours."""
    try:
        with open(path, "rb") as fh:
            data = b""
            while len(data) < _HEAD_LIMIT:
                chunk = fh.read(64 << 10)
                data += chunk
                at = data.find(_STEPS)
                if at >= 0:
                    head = json.loads(data[:at] + b"\n}")
                    break
                if not chunk:
                    head = json.loads(data)
                    break
            else:  # no steps near the top: not written by ManifestWriter; read it whole
                fh.seek(0)
                head = json.load(fh)
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(head, dict) or (head.get("engine") or {}).get("name") != "runbook":
        return None
    run, runbook = head.get("run"), head.get("runbook")
    if not isinstance(run, dict) or not isinstance(runbook, dict) or not isinstance(run.get("id"), str):
        return None
    return head


def list_runs(runs_dir: str | None = None) -> list[RunEntry]:
    """Every manifest of ours in ``runs_dir``, newest first (files that are not are left out)."""
    folder = runs_dir or RUNS_DIR
    try:
        names = [n for n in os.listdir(folder) if n.endswith(".json") and not n.startswith(".")]
    except OSError:
        return []
    entries: list[RunEntry] = []
    for name in names:
        path = os.path.join(folder, name)
        head = _head(path)
        if head is None:
            continue
        run, runbook = head["run"], head["runbook"]
        duration = run.get("duration_ms")
        entries.append(RunEntry(run["id"], str(runbook.get("name") or runbook.get("path") or "?"),
                                str(run.get("status") or "?"), str(run.get("started_at") or ""),
                                duration if isinstance(duration, int) else None, path))
    entries.sort(key=lambda e: (e.started_at, e.id), reverse=True)
    return entries


def find_run(ref: str, runs_dir: str | None = None) -> str:
    """The manifest ``ref`` names: ``latest``, a manifest's path, a run id or a unique start of
    one; else :class:`RunbookError` (exit 2) saying what there is."""
    folder = runs_dir or RUNS_DIR
    if ref != "latest" and os.path.isfile(ref):
        return ref
    entries = list_runs(folder)
    if not entries:
        raise RunbookError(f"no runs under {folder} (runbook run writes its manifests there)")
    if ref == "latest":
        return entries[0].path
    exact = [e for e in entries if e.id == ref]
    matches = exact or [e for e in entries if e.id.startswith(ref)]
    if len(matches) == 1:
        return matches[0].path
    if matches:
        raise RunbookError(f"run {ref!r} is ambiguous under {folder}: "
                           + ", ".join(e.id for e in matches[:5]) + (" …" if len(matches) > 5 else ""))
    raise RunbookError(f"no run {ref!r} under {folder} (`runbook runs` lists them)")


def _started(stamp: str) -> str:
    """``2026-12-01 13:52:32`` (UTC) from an RFC 3339 stamp."""
    return stamp[:19].replace("T", " ") if len(stamp) >= 19 else stamp


def runs(*, limit: int = 20, runs_dir: str | None = None, stdout: TextIO) -> int:
    """Print the newest ``limit`` runs as a table; 0 (an empty folder is no error)."""
    from engine.report.text import duration, escape_controls

    folder = runs_dir or RUNS_DIR
    entries = list_runs(folder)
    if not entries:
        stdout.write(f"no runs under {folder}\n")
        return 0
    rows = [("RUN", "RUNBOOK", "STATUS", "STARTED (UTC)", "DURATION")]
    rows += [(e.id, escape_controls(e.runbook), e.status, _started(e.started_at),
              duration(e.duration_ms) if e.duration_ms is not None else "-") for e in entries[:limit]]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        stdout.write("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] + "\n")
    if len(entries) > limit:
        stdout.write(f"({len(entries) - limit} older; --limit {len(entries)} lists them all)\n")
    return 0
