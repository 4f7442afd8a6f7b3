"""Everything a command writes for a person or a pipeline: one module per output.

- :mod:`~engine.report.console`: the lines a person reads (a run's step lines and progress,
  validate's problems and verdicts);
- :mod:`~engine.report.json_output`: the JSON printed on stdout (``--json``, ``--format json``);
- :mod:`~engine.report.github`: GitHub workflow-command annotations (``--format github``);
- :mod:`~engine.report.junit`, :mod:`~engine.report.summary`, :mod:`~engine.report.html`: the
  file reports written from a run's final manifest (``--junit``, ``--summary``, ``--html``),
  registered in :data:`REPORTS` (``runbook report MANIFEST`` writes them from a manifest on disk);
- :mod:`~engine.report.positions`: where each step stands in its runbook (the line reports point at);
- :func:`~engine.report.console.recorded_run`: a past run's lines, as ``run`` printed them (``runbook show``);
- :mod:`~engine.report.not_run`: those reports for a run that stopped before its first step;
- :mod:`~engine.report.plan_text`: ``runbook plan``'s text (its data is ``commands/plan``'s);
- :mod:`~engine.report.text`: the escaping every output uses (XML, workflow commands,
  Markdown, terminals) and the phrases they share.

This module is the registry. The CLI fills one :class:`ReportOptions` from a command's
options, and the command passes that object on: no function takes a path per report.
It imports no report module: each is imported when a command writes it.

A new file report is a module here defining ``write(path, manifest, manifest_path, **settings)``
(render the manifest, write the file, raise :class:`OSError` when it cannot), a line in
:data:`REPORTS`, and an option of the same name in ``cli.py``. ``settings`` are the report's own
keyword options (``ReportOptions(settings={"junit": {"file_line": True}})``).

Under GitHub Actions (``GITHUB_ACTIONS=true``) a command also prints workflow-command
annotations (``annotations``) and appends the summary to ``$GITHUB_STEP_SUMMARY``
(``step_summary``): :meth:`ReportOptions.for_github` decides both from the environment and
the ``--annotations/--no-annotations``, ``--step-summary/--no-step-summary`` flags.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

if TYPE_CHECKING:
    from engine.report.colour import Palette

__all__ = ["Report", "REPORTS", "FORMATS", "ReportOptions", "Manifest", "Writer"]

Manifest = dict[str, Any]
# write(path, manifest, manifest_path, **settings): render the manifest's report and write it to path
Writer = Callable[..., None]


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
    "html": Report("--html", "engine.report.html", "cannot write the HTML report {path}"),
}

# What stdout carries: lines for a person, JSON (the manifest, or validate's problems),
# GitHub workflow-command annotations (validate's problems).
FORMATS = ("text", "json", "github")


class ReportOptions:
    """The outputs a command was asked for: the stdout ``format``, the file reports (``paths``: a
    name in :data:`REPORTS` -> where to write it) and their ``settings`` (name -> keyword options
    of its writer); GitHub's workflow-command ``annotations`` (on the console's stream), and
    ``step_summary``, a path the summary is also appended to (``$GITHUB_STEP_SUMMARY``); the
    console's ``colour`` (``--color``: auto, always, never)."""

    __slots__ = ("format", "paths", "settings", "annotations", "step_summary", "colour")

    def __init__(self, format: str = "text", paths: Mapping[str, str | None] | None = None, *,
                 settings: Mapping[str, Mapping[str, Any]] | None = None, annotations: bool = False,
                 step_summary: str | None = None, colour: str = "auto") -> None:
        if format not in FORMATS:
            raise ValueError(f"unknown output format {format!r}")
        unknown = sorted((set(paths or ()) | set(settings or ())) - set(REPORTS))
        if unknown:
            raise ValueError(f"unknown reports: {', '.join(unknown)}")
        self.format = format
        # only the reports asked for, in the registry's order
        self.paths = {name: path for name in REPORTS if (path := (paths or {}).get(name))}
        self.settings = {name: dict(values) for name, values in (settings or {}).items() if values}
        self.annotations = annotations
        self.step_summary = step_summary
        self.colour = colour

    @classmethod
    def for_github(cls, format: str = "text", paths: Mapping[str, str | None] | None = None, *,
                   settings: Mapping[str, Mapping[str, Any]] | None = None, annotations: bool | None = None,
                   step_summary: bool | None = None, environ: Mapping[str, str] | None = None,
                   colour: str = "auto") -> ReportOptions:
        """Options with GitHub's defaults: under GitHub Actions (``GITHUB_ACTIONS=true``)
        annotations, and the summary appended to ``$GITHUB_STEP_SUMMARY`` when it is set;
        ``annotations``/``step_summary`` (the flags) win when given. ``--format github`` prints
        annotations already, so it gets none on top."""
        import os

        env = os.environ if environ is None else environ
        actions = env.get("GITHUB_ACTIONS") == "true"
        wants_annotations = actions if annotations is None else annotations
        summary_path = env.get("GITHUB_STEP_SUMMARY") or None
        wants_summary = actions if step_summary is None else step_summary
        return cls(format, paths, settings=settings, annotations=wants_annotations and format != "github",
                   step_summary=summary_path if wants_summary else None, colour=colour)

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
        return self.json or bool(self.paths) or self.annotations or bool(self.step_summary)

    def annotation_stream(self, stdout: TextIO, stderr: TextIO) -> TextIO:
        """Where annotations go: stdout, unless it carries JSON (GitHub reads both)."""
        return stderr if self.json else stdout

    def console(self, stdout: TextIO, stderr: TextIO) -> TextIO:
        """Where a run's console lines go: stdout, unless it carries the JSON."""
        return stderr if self.json else stdout

    def palette(self, stream: TextIO) -> Palette:
        """The colours of what goes to ``stream`` (``--color``, NO_COLOR, whether it is a terminal)."""
        from engine.report.colour import palette_for

        return palette_for(self.colour, stream)

    def check_writable(self) -> None:
        """Raise :class:`~engine.errors.RunbookError` unless every report's path can be written."""
        from engine.files import check_writable

        for name, path in self.paths.items():
            check_writable(path, REPORTS[name].option)

    def write_files(self, manifest: Manifest, manifest_path: str | None) -> list[str]:
        """Write the file reports asked for (and the step summary); return a message per report
        that could not be written."""
        problems: list[str] = []
        jobs = list(self.paths.items())
        if self.step_summary and not _same_file(self.step_summary, self.paths.get("summary")):
            jobs.append(("summary", self.step_summary))
        for name, path in jobs:
            report = REPORTS[name]
            try:
                report.writer()(path, manifest, manifest_path, **self.settings.get(name, {}))
            except OSError as exc:
                problems.append(f"{report.failure.format(path=path)}: {exc.strerror or exc}")
        return problems

    def publish(self, manifest: Manifest, manifest_path: str | None, *, stdout: TextIO, stderr: TextIO) -> None:
        """Everything written from a finished run's manifest: the file reports (a problem with
        one is a line on stderr), the annotations, then the manifest on stdout with ``--json``."""
        for problem in self.write_files(manifest, manifest_path):
            stderr.write(f"runbook: {problem}\n")
        if self.annotations:
            from engine.report import github

            github.run_annotations(manifest, self.annotation_stream(stdout, stderr))
        if self.json:
            from engine.report import json_output

            json_output.manifest(manifest, stdout)

    @contextmanager
    def on_refusal(self, file: str, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> Iterator[None]:
        """Around a run of ``file``: when it stops before its first step (a
        :class:`~engine.errors.RunbookError`, exit 2), write the file reports saying nothing
        ran and why (and annotate its problems), then re-raise."""
        if not (self.paths or self.step_summary or self.annotations):
            yield
            return
        from engine.errors import RunbookError

        try:
            yield
        except RunbookError as exc:
            from engine.report import not_run

            not_run.write(self, file, str(exc))
            if self.annotations:
                import sys

                from engine.report import github

                github.refusal(exc, file, self.annotation_stream(stdout or sys.stdout, stderr or sys.stderr))
            raise


def _same_file(a: str, b: str | None) -> bool:
    import os

    return b is not None and os.path.abspath(a) == os.path.abspath(b)
