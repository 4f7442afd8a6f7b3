"""What a run leaves behind: the manifest on disk and the console lines, step by step."""

from __future__ import annotations

import time
from typing import Any, TextIO

from engine.manifest import ManifestWriter, now_rfc3339, scrubbed_line, step_record
from engine.model import Runbook, Status, Step, StepResult
from engine.redaction import Redactor
from engine.report import ConsoleReporter

__all__ = ["Recording", "Fanout"]


class Fanout:
    """Hands each step event to several observers."""

    def __init__(self, *observers: Any) -> None:
        self.observers = observers

    def step_started(self, step: Step) -> None:
        for o in self.observers:
            o.step_started(step)

    def step_finished(self, result: StepResult) -> None:
        for o in self.observers:
            o.step_finished(result)


class Recording:
    """An observer that prints each finished step and appends it to the manifest."""

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

    def step_started(self, step: Step) -> None:
        self.console.step_started(step)

    def step_finished(self, result: StepResult) -> None:
        record, line = scrubbed_line(step_record(result), self.redactor)
        if self.keep_records:
            self.records.append(record)
        self.counts[record["status"]] = self.counts.get(record["status"], 0) + 1
        self.writer.append(line)
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
        summary = ", ".join(f"{n} {s}" for s, n in self.counts.items()) or "no steps"
        self.lines.write(f"{status.value}: {summary}\nmanifest: {self.path}\n")
        return self.manifest
