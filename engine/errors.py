"""The exception tree of the engine.

::

    RunbookError                  a user's mistake; exit 2, nothing dispatched
    ├── LocatedErrors             one or more problems at FILE:LINE:COL
    └── ManifestError             a manifest that cannot be read or resumed
    ProviderError                 a typed failure of one step (engine.providers.base)
    InternalError                 a bug met during a run, after the manifest is written: exit 3
    (any other exception)         a bug: exit 3

Every located problem is a :class:`Problem`; validation gathers all of them
before raising, so a user sees every mistake of a file at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

__all__ = ["Problem", "RunbookError", "LocatedErrors", "ManifestError", "InternalError"]


class Problem(NamedTuple):
    """One mistake at a position in a file (1-based line and column); sorts by position."""

    file: str
    line: int
    col: int
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        prefix = "" if self.severity == "error" else f"{self.severity}: "
        if not self.line:  # not in a file: the command line
            return f"{self.file}: {prefix}{self.message}"
        return f"{self.file}:{self.line}:{self.col}: {prefix}{self.message}"


class RunbookError(Exception):
    """A mistake in the input (runbook, vars, environment, command line): exit 2."""

    exit_code = 2


class LocatedErrors(RunbookError):
    """Every problem found in the input, sorted by file and position."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ManifestError(RunbookError):
    """A manifest that is not ours, is truncated, or belongs to another runbook."""


class InternalError(Exception):
    """A bug that a run met and recorded; carries the original exception and the run's
    redaction (``redact``), so that neither its message nor its traceback prints a secret."""

    def __init__(self, original: BaseException, redact: Callable[[str], str] | None = None) -> None:
        self.redact: Callable[[str], str] = redact or (lambda text: text)
        super().__init__(self.redact(f"{type(original).__name__}: {original}"))
        self.original = original
