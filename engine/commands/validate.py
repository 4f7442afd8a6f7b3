"""``runbook validate``: every problem of every file, as text, JSON or GitHub annotations."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from typing import TextIO

from engine.errors import Problem, RunbookError
from engine.templating import Templates
from engine.validation import check_file
from engine.vars import resolve_vars

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
    """A workflow command's message: %, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value: also ``:`` and ``,``, which end it."""
    return _escape_github(text).replace(":", "%3A").replace(",", "%2C")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def validate(patterns: Sequence[str], *, var_pairs: Sequence[str] = (), vars_file: str | None = None,
             fmt: str = "text", stdout: TextIO, stderr: TextIO) -> int:
    """Validate every file; 0 when all are valid (warnings allowed), 2 otherwise.

    ``--var`` and ``--vars-file`` name the variables a run will be given, so that a
    ``vars.X`` no default, file or flag sets is reported (as a warning: the value may
    still come at run time).
    """
    provided = set(resolve_vars({}, vars_file, var_pairs))
    files = expand_paths(patterns)
    if not files:
        raise RunbookError("validate: no runbook files matched " + " ".join(patterns))
    problems: list[Problem] = []
    templates = Templates()
    for file in files:
        problems.extend(check_file(file, templates, provided_vars=provided))
    problems.sort()
    errors = [p for p in problems if p.severity == "error"]
    warnings = [p for p in problems if p.severity == "warning"]
    bad_files = {p.file for p in errors}
    if fmt == "json":
        stdout.write(json.dumps({
            "valid": not errors,
            "files": files,
            "errors": len(errors),
            "warnings": len(warnings),
            "problems": [
                {"file": p.file, "line": p.line, "col": p.col, "severity": p.severity,
                 "message": p.message} for p in problems
            ],
        }, indent=2) + "\n")
    elif fmt == "github":
        for p in problems:
            stdout.write(f"::{p.severity} file={_escape_property(p.file)},line={p.line},col={p.col}::"
                         f"{_escape_github(p.message)}\n")
    else:
        for p in problems:
            stderr.write(str(p) + "\n")
        warned = {p.file: sum(1 for w in warnings if w.file == p.file) for p in warnings}
        for file in files:
            if file not in bad_files:
                note = f" ({_plural(warned[file], 'warning')})" if file in warned else ""
                stdout.write(f"{file}: valid{note}\n")
        if errors:
            stderr.write(f"{_plural(len(errors), 'error')} in {_plural(len(bad_files), 'file')}\n")
    return 2 if errors else 0
