"""What a run leaves behind: the manifest on disk and the console lines, step by step."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TextIO

from engine.clock import elapsed_ms
from engine.manifest import ManifestWriter, item_record, now_rfc3339, scrubbed_line, step_record
from engine.model import Runbook, Status, Step, StepResult
from engine.redaction import Redactor
from engine.report.colour import PLAIN, Palette
from engine.report.console import ConsoleReporter

if TYPE_CHECKING:
    from engine.loader import SourceMap

__all__ = ["Recording", "CollectedSteps", "located_record"]


class Recording:
    """An observer that prints each finished step (and failed item) and appends it to the manifest."""

    def __init__(self, path: str, manifest: dict[str, Any], redactor: Redactor, lines: TextIO,
                 runbook: Runbook | None, *, keep_records: bool = True, palette: Palette = PLAIN) -> None:
        """``keep_records``: keep every step's record in memory, for what needs the whole
        manifest afterwards (``--json``, reports); without it only the journal on disk has them.
        ``palette``: the console lines' colours."""
        self.path = path
        self.manifest = manifest
        self.redactor = redactor
        self.lines = lines
        self.records: list[dict[str, Any]] = []
        self.keep_records = keep_records
        self.counts: dict[str, int] = {}
        self.console = ConsoleReporter(lines, redactor, runbook, palette=palette)
        self.writer = ManifestWriter(path, manifest)
        self._items: list[dict[str, Any]] | None = None  # the open for_each step's item records
        self._source = runbook.source if runbook is not None else None
        #: the calls open now, outermost first: the calling step, and the caller's source and records
        self._calls: list[tuple[Step, Any, list[dict[str, Any]]]] = []

    def _record(self, result: StepResult) -> dict[str, Any]:
        return located_record(result, self._source)

    def step_started(self, step: Step, result: StepResult | None = None) -> None:
        self.console.step_started(step, result)

    def call_started(self, step: Step, child: Runbook) -> None:
        """Open the calling step's record (``status: running``); the called runbook's steps are
        recorded under it, as ``children``, until it finishes."""
        running = StepResult(step, Status.RUNNING, started_at=now_rfc3339())
        _, line = scrubbed_line(self._record(running), self.redactor)
        self.writer.open_step(line, "children")
        self._calls.append((step, self._source, self.records))
        self._source, self.records = child.source, []
        self.console.call_started(step)

    def items_started(self, step: Step, count: int) -> None:
        """Open the step's record in the journal (``status: running``), its items to follow."""
        running = StepResult(step, Status.RUNNING, started_at=now_rfc3339())
        _, line = scrubbed_line(self._record(running), self.redactor)
        self.writer.open_step(line)
        self._items = []
        self.console.items_started(step, count)

    def item_finished(self, result: StepResult) -> None:
        record, line = scrubbed_line(item_record(result), self.redactor)
        if self.keep_records and self._items is not None:
            self._items.append(record)
        self.writer.append_item(line)
        self.console.item_finished(result)

    def step_finished(self, result: StepResult) -> None:
        if self._calls and result.step is self._calls[-1][0]:
            self._call_finished(result)
            return
        record, line = scrubbed_line(self._record(result), self.redactor)
        if self._items is not None:  # a for_each step: its record closes over its items
            self.writer.close_step(line)
            record["items"] = sorted(self._items, key=lambda item: item["index"])
            self._items = None
        else:
            if result.items is not None:  # a for_each step that failed before any item
                record["items"] = []
                _, line = scrubbed_line(record, self.redactor)
            self.writer.append(line)
        if self.keep_records:
            self.records.append(record)
        if not self._calls:  # the run's own steps (a called runbook's are counted in its step)
            self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        self.console.step_finished(result)

    def _call_finished(self, result: StepResult) -> None:
        step, source, outer = self._calls.pop()
        children, self._source, self.records = self.records, source, outer
        assert step.child is not None
        record, line = scrubbed_line(self._record(result), self.redactor)
        self.writer.close_step(line)
        record["children"] = children
        if self.keep_records:
            self.records.append(record)
        if not self._calls:
            self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        self.console.step_finished(result)

    def finish(self, status: Status, outputs: dict[str, Any], error: str | None) -> dict[str, Any]:
        """Write the final manifest, print the summary line and the path; return the manifest."""
        run = self.manifest["run"]
        finished_at = now_rfc3339()  # the run's duration: from its start (before the pre-flight check)
        run.update(status=status.value, finished_at=finished_at, duration_ms=elapsed_ms(run["started_at"], finished_at))
        if error:
            run["error"] = self.redactor.text(error)
        self.manifest["outputs"] = self.redactor.scrub(outputs)
        self.writer.finish(self.manifest)
        self.manifest["steps"] = self.records
        self.console.run_finished(status, self.counts, self.path)
        return self.manifest


def located_record(result: StepResult, source: SourceMap | None) -> dict[str, Any]:
    """The step's record, with its line in its runbook (``source``: what reports point at) and,
    for a call, the runbook it called."""
    record = step_record(result)
    position = source.recorded(result.step.path) if source is not None else None
    if position is not None:
        record["line"] = position[0]
    if result.step.child is not None:
        record["called"] = _called(result.step.child)
    return record


class CollectedSteps:
    """An observer that keeps the records of a called runbook's steps in memory (for an item of
    a ``for_each`` step, which runs in a worker thread and is recorded when it finishes), as
    :class:`Recording` records them: each at its line in its runbook, a call with what it called."""

    def __init__(self, redactor: Redactor | None) -> None:
        self.redactor = redactor or Redactor()
        self.records: list[dict[str, Any]] = []
        self._source: SourceMap | None = None  # of the runbook whose steps are being recorded
        self._calls: list[tuple[Step, list[dict[str, Any]], SourceMap | None]] = []
        self._items: list[dict[str, Any]] = []

    def step_started(self, step: Step, result: StepResult | None = None) -> None:
        pass

    def call_started(self, step: Step, child: Runbook) -> None:
        self._calls.append((step, self.records, self._source))
        self.records, self._source = [], child.source

    def items_started(self, step: Step, count: int) -> None:
        self._items = []

    def item_finished(self, result: StepResult) -> None:
        self._items.append(scrubbed_line(item_record(result), self.redactor)[0])

    def step_finished(self, result: StepResult) -> None:
        children = None
        if self._calls and result.step is self._calls[-1][0]:
            _, outer, source = self._calls.pop()
            children, self.records, self._source = self.records, outer, source
        record = located_record(result, self._source)
        if children is not None:
            record["children"] = children
        if result.items is not None:
            record["items"] = sorted(self._items, key=lambda item: item["index"])
            self._items = []
        self.records.append(scrubbed_line(record, self.redactor)[0])


def _called(child: Runbook) -> dict[str, Any]:
    """What a calling step's record says of the runbook it called."""
    return {"path": child.path, "name": child.name, "sha256": child.sha256}
