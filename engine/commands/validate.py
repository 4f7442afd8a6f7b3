"""``runbook validate``: every problem of every file, as text, JSON or GitHub annotations."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from typing import TextIO

from engine.errors import LocatedErrors, Problem, RunbookError
from engine.templating import Templates
from engine.validation import load_runbook
from engine.vars import parse_var

__all__ = ["validate", "expand_paths"]

_YAML = (".yml", ".yaml")


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Files, globs and directories (searched for *.yml / *.yaml) to a sorted file list."""
    files: list[str] = []
    for pattern in patterns:
        if os.path.isdir(pattern):
            for root, _, names in os.walk(pattern):
                files.extend(os.path.join(root, n) for n in names if n.endswith(_YAML))
        elif any(c in pattern for c in "*?["):
            files.extend(glob.glob(pattern, recursive=True))
        else:
            files.append(pattern)
    return sorted(dict.fromkeys(files))


def _escape_github(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def validate(patterns: Sequence[str], *, var_pairs: Sequence[str] = (), fmt: str = "text",
             stdout: TextIO, stderr: TextIO) -> int:
    """Validate every file; 0 when all are valid, 2 otherwise."""
    for pair in var_pairs:
        parse_var(pair)
    files = expand_paths(patterns)
    if not files:
        raise RunbookError("validate: no runbook files matched " + " ".join(patterns))
    problems: list[Problem] = []
    valid: list[str] = []
    templates = Templates()
    for file in files:
        try:
            load_runbook(file, templates)
            valid.append(file)
        except LocatedErrors as exc:
            problems.extend(exc.problems)
    problems.sort()
    errors = [p for p in problems if p.severity == "error"]
    if fmt == "json":
        stdout.write(json.dumps({
            "valid": not errors,
            "files": files,
            "problems": [
                {"file": p.file, "line": p.line, "col": p.col, "severity": p.severity,
                 "message": p.message} for p in problems
            ],
        }, indent=2) + "\n")
    elif fmt == "github":
        for p in problems:
            stdout.write(f"::{p.severity} file={p.file},line={p.line},col={p.col}::"
                         f"{_escape_github(p.message)}\n")
    else:
        for p in problems:
            stderr.write(str(p) + "\n")
        for file in valid:
            stdout.write(f"{file}: valid\n")
        if errors:
            bad = len({p.file for p in errors})
            stderr.write(f"{len(errors)} error{'s' if len(errors) != 1 else ''} in "
                         f"{bad} file{'s' if bad != 1 else ''}\n")
    return 2 if errors else 0
