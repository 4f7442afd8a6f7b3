"""GitHub workflow-command annotations (``validate --format github``): one
``::error file=…,line=…,col=…::message`` line per problem, which GitHub shows on the line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from engine.report.text import workflow_message, workflow_property

if TYPE_CHECKING:
    from engine.errors import Problem

__all__ = ["annotation", "problems"]


def annotation(problem: Problem) -> str:
    """``::warning file=F,line=L,col=C::message`` (``::error`` for an error), escaped."""
    return (f"::{problem.severity} file={workflow_property(problem.file)},line={problem.line},"
            f"col={problem.col}::{workflow_message(problem.message)}")


def problems(found: Sequence[Problem], stdout: TextIO) -> None:
    for problem in found:
        stdout.write(annotation(problem) + "\n")
