"""Everything a command writes for a person or a pipeline: one module per output.

- :mod:`~engine.report.console`: the lines a person reads (a run's step lines and progress,
  validate's problems and verdicts);
- :mod:`~engine.report.json_output`: the JSON printed on stdout (``--json``, ``--format json``);
- :mod:`~engine.report.github`: GitHub workflow-command annotations (``--format github``);
- :mod:`~engine.report.junit`, :mod:`~engine.report.summary`: the file reports written from
  a run's final manifest (``--junit``, ``--summary``), registered in :data:`REPORTS`;
- :mod:`~engine.report.not_run`: those reports for a run that stopped before its first step;
- :mod:`~engine.report.plan_text`: ``runbook plan``'s text (its data is ``commands/plan``'s);
- :mod:`~engine.report.text`: the escaping every output uses (XML, workflow commands,
  Markdown, terminals) and the phrases they share.

This module is the registry. The CLI fills one :class:`ReportOptions` from a command's
options, and the command passes that object on: no function takes a path per report.
It imports no report module: each is imported when a command writes it.

A new file report (the HTML one, say) is a module here defining
``write(path, manifest, manifest_path)`` (render the manifest, write the file, raise
:class:`OSError` when it cannot), a line in :data:`REPORTS`, and an option of the same
name in ``cli.py``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NamedTuple, TextIO

__all__ = ["Report", "REPORTS", "FORMATS", "ReportOptions", "Manifest", "Writer"]

Manifest = dict[str, Any]
# write(path, manifest, manifest_path): render the manifest's report and write it to path
Writer = Callable[[str, Manifest, str | None], None]


class Report(NamedTuple):
    """A file report written from a run's final manifest."""

    option: str  # the command-line option naming its path
    module: str  # the module whose ``write`` writes it, imported only when it is asked for
    failure: str  # what could not be done, with ``{path}``: the start of the problem printed

    def writer(self) -> Writer:
        write: Writer = importlib.import_module(self.module).write
        return write


# name -> report, in the order they are written
REPORTS: dict[str, Report] = {
    "junit": Report("--junit", "engine.report.junit", "cannot write the JUnit report {path}"),
    "summary": Report("--summary", "engine.report.summary", "cannot append the summary to {path}"),
}

# What stdout carries: lines for a person, JSON (the manifest, or validate's problems),
# GitHub workflow-command annotations (validate's problems).
FORMATS = ("text", "json", "github")


class ReportOptions:
    """The outputs a command was asked for: the stdout ``format`` and the file reports
    (``paths``: a name in :data:`REPORTS` -> where to write it)."""

    __slots__ = ("format", "paths")

    def __init__(self, format: str = "text", paths: Mapping[str, str | None] | None = None) -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown output format {format!r}")
        unknown = sorted(set(paths or ()) - set(REPORTS))
        if unknown:
            raise ValueError(f"unknown reports: {', '.join(unknown)}")
        self.format = format
        # only the reports asked for, in the registry's order
        self.paths = {name: path for name in REPORTS if (path := (paths or {}).get(name))}

    def __repr__(self) -> str:
        return f"ReportOptions(format={self.format!r}, paths={self.paths!r})"

    @property
    def json(self) -> bool:
        """Whether stdout carries JSON (then a run's console lines go to stderr)."""
        return self.format == "json"

    @property
    def needs_manifest(self) -> bool:
        """Whether something is written from the whole final manifest (so a run keeps every
        step's record in memory)."""
        return self.json or bool(self.paths)

    def console(self, stdout: TextIO, stderr: TextIO) -> TextIO:
        """Where a run's console lines go: stdout, unless it carries the JSON."""
        return stderr if self.json else stdout

    def check_writable(self) -> None:
        """Raise :class:`~engine.errors.RunbookError` unless every report's path can be written."""
        from engine.files import check_writable

        for name, path in self.paths.items():
            check_writable(path, REPORTS[name].option)

    def write_files(self, manifest: Manifest, manifest_path: str | None) -> list[str]:
        """Write the file reports asked for; return a message per report that could not be written."""
        problems: list[str] = []
        for name, path in self.paths.items():
            report = REPORTS[name]
            try:
                report.writer()(path, manifest, manifest_path)
            except OSError as exc:
                problems.append(f"{report.failure.format(path=path)}: {exc.strerror or exc}")
        return problems

    def publish(self, manifest: Manifest, manifest_path: str | None, *, stdout: TextIO, stderr: TextIO) -> None:
        """Everything written from a finished run's manifest: the file reports (a problem with
        one is a line on stderr), then the manifest on stdout with ``--json``."""
        for problem in self.write_files(manifest, manifest_path):
            stderr.write(f"runbook: {problem}\n")
        if self.json:
            from engine.report import json_output

            json_output.manifest(manifest, stdout)

    @contextmanager
    def on_refusal(self, file: str) -> Iterator[None]:
        """Around a run of ``file``: when it stops before its first step (a
        :class:`~engine.errors.RunbookError`, exit 2), write the file reports saying nothing
        ran and why, then re-raise."""
        if not self.paths:
            yield
            return
        from engine.errors import RunbookError

        try:
            yield
        except RunbookError as exc:
            from engine.report import not_run

            not_run.write(self, file, str(exc))
            raise
