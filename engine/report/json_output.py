"""The JSON a command prints on stdout: a run's or a replay's manifest (``--json``),
validate's verdict and problems (``--format json``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from engine.errors import Problem

__all__ = ["manifest", "problems"]


def manifest(document: dict[str, Any], stdout: TextIO) -> None:
    """The manifest as written to disk, indented."""
    stdout.write(json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n")


def problems(found: Sequence[Problem], files: Sequence[str], skipped: Sequence[str], stdout: TextIO) -> None:
    """validate's verdict: the files checked and skipped, the counts, every problem."""
    errors = sum(1 for p in found if p.severity == "error")
    stdout.write(json.dumps({
        "valid": not errors,
        "files": files,
        "skipped": skipped,
        "errors": errors,
        "warnings": sum(1 for p in found if p.severity == "warning"),
        "problems": [
            {"file": p.file, "line": p.line, "col": p.col, "severity": p.severity, "message": p.message}
            for p in found
        ],
    }, indent=2) + "\n")
