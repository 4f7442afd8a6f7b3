"""What a run leaves behind: the manifest on disk and the console lines, step by step."""

from __future__ import annotations

import time
from typing import Any, TextIO

from engine.manifest import ManifestWriter, item_record, now_rfc3339, scrubbed_line, step_record
from engine.model import Runbook, Status, Step, StepResult
from engine.redaction import Redactor
from engine.report.console import ConsoleReporter

__all__ = ["Recording"]


class Recording:
    """An observer that prints each finished step (and failed item) and appends it to the manifest."""

    def __init__(self, path: str, manifest: dict[str, Any], redactor: Redactor, lines: TextIO,
                 runbook: Runbook | None, *, keep_records: bool = True) -> None:
        """``keep_records``: keep every step's record in memory, for what needs the whole
        manifest afterwards (``--json``, reports); without it only the journal on disk has them."""
        self.path = path
        self.manifest = manifest
        self.redactor = redactor
        self.lines = lines
        self.records: list[dict[str, Any]] = []
        self.keep_records = keep_records
        self.counts: dict[str, int] = {}
        self.console = ConsoleReporter(lines, redactor, runbook)
        self.writer = ManifestWriter(path, manifest)
        self._t0 = time.monotonic()
        self._items: list[dict[str, Any]] | None = None  # the open for_each step's item records


    def step_started(self, step: Step) -> None:
        self.console.step_started(step)

    def items_started(self, step: Step, count: int) -> None:
        """Open the step's record in the journal (``status: running``), its items to follow."""
        running = StepResult(step, Status.RUNNING, started_at=now_rfc3339())
        _, line = scrubbed_line(step_record(running), self.redactor)
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
        record, line = scrubbed_line(step_record(result), self.redactor)
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
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        self.console.step_finished(result)

    def finish(self, status: Status, outputs: dict[str, Any], error: str | None) -> dict[str, Any]:
        """Write the final manifest, print the summary line and the path; return the manifest."""
        run = self.manifest["run"]
        run.update(status=status.value, finished_at=now_rfc3339(),
                   duration_ms=int((time.monotonic() - self._t0) * 1000))
        if error:
            run["error"] = self.redactor.text(error)
        self.manifest["outputs"] = self.redactor.scrub(outputs)
        self.writer.finish(self.manifest)
        self.manifest["steps"] = self.records
        self.console.run_finished(status, self.counts, self.path)
        return self.manifest
