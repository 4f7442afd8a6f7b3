"""The file reports of a run that stopped before its first step (an invalid runbook, a
missing secret: exit 2), so that a pipeline that always publishes them finds them: one
``validate`` step, failed, with the located problems (secrets scrubbed)."""

from __future__ import annotations

import os
import re
import sys
from typing import TYPE_CHECKING

from engine.report import Manifest

if TYPE_CHECKING:
    from engine.report import ReportOptions

__all__ = ["write", "not_run_manifest"]


def write(reports: ReportOptions, file: str, message: str) -> None:
    """Write ``reports``' files saying nothing of ``file`` ran, and why; a report that cannot
    be written is a line on stderr."""
    for problem in reports.write_files(not_run_manifest(file, message), None):
        sys.stderr.write(f"runbook: {problem}\n")


def not_run_manifest(file: str, message: str) -> Manifest:
    """The manifest of a run of ``file`` refused with ``message``."""
    from engine.manifest import now_rfc3339

    return {
        "run": {"id": None, "status": "invalid", "started_at": now_rfc3339(), "duration_ms": 0},
        "runbook": {"name": _runbook_name(file), "path": file},
        "steps": [{
            "id": "validate", "name": "validate, check vars and secrets", "section": "steps",
            "provider": "runbook", "provider_type": "runbook", "dispatch": "none",
            "status": "failed", "duration_ms": 0,
            "error": {"type": "invalid", "message": _scrub_secrets(file, message)},
        }],
        "outputs": {},
    }


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
    """The runbook's ``name:`` if the file can be read far enough to know it, else its path."""
    from engine.errors import LocatedErrors
    from engine.loader import load_file

    try:
        data = load_file(file).data
    except LocatedErrors:
        return _name_line(file)
    name = data.get("name") if isinstance(data, dict) else None
    return name.strip() if isinstance(name, str) and name.strip() else file


def _name_line(file: str) -> str:
    """The value of a top-level ``name:`` line, for a file that is not valid YAML further down:
    a one-line plain or quoted value; else the path."""
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
