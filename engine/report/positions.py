"""Where each step of a manifest stands in its runbook: the line a report points at.

A run records each step's ``line`` in the manifest (the line of its ``- id:`` mapping). A
manifest without them (one written before they were recorded, or by another executor) gets
them from the runbook file, when the file at ``runbook.path`` still holds the text that ran
(its sha256): a line is never guessed from a file that has changed since.
"""

from __future__ import annotations

import hashlib
from typing import Any

from engine.report import Manifest

__all__ = ["step_lines", "line_of", "split_location"]

Lines = dict[tuple[str, str], int]


def step_lines(manifest: Manifest) -> Lines:
    """``(section, step id) -> line`` for every step whose line is known."""
    lines: Lines = {}
    missing = False
    for step in manifest.get("steps") or []:
        line = step.get("line")
        if isinstance(line, int) and line > 0:
            lines[(step.get("section", "steps"), step["id"])] = line
        else:
            missing = True
    if missing:
        for key, line in _from_file(manifest).items():
            lines.setdefault(key, line)
    return lines


def line_of(lines: Lines, step: dict[str, Any]) -> int | None:
    return lines.get((step.get("section", "steps"), str(step.get("id", "")).split("[", 1)[0]))


def split_location(location: str | None) -> tuple[str, int, int] | None:
    """``FILE:LINE:COL`` (the file may hold colons) as its parts; None if it is not one."""
    if not location:
        return None
    parts = location.rsplit(":", 2)
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
        return None
    return parts[0], int(parts[1]), int(parts[2])


def _from_file(manifest: Manifest) -> Lines:
    runbook = manifest.get("runbook") or {}
    path, sha256 = runbook.get("path"), runbook.get("sha256")
    if not path or not sha256:
        return {}
    import os

    if not os.path.isfile(path):
        return {}
    from engine.errors import LocatedErrors
    from engine.loader import load_file

    try:
        document = load_file(path, sparse=True)
    except LocatedErrors:
        return {}
    if hashlib.sha256(document.text.encode("utf-8")).hexdigest() != sha256:
        return {}
    data = document.data if isinstance(document.data, dict) else {}
    lines: Lines = {}
    for section in ("steps", "finally"):
        entries = data.get(section)
        for i, entry in enumerate(entries if isinstance(entries, list) else []):
            if isinstance(entry, dict) and isinstance(entry.get("id"), str):
                lines[(section, entry["id"])] = document.source.position((section, i))[0]
    return lines
