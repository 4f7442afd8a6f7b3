"""``runbook run``: validate, pre-flight, run, record the manifest."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from engine.errors import InternalError, ManifestError
from engine.manifest import ManifestWriter, header, new_run_id, now_rfc3339, read_manifest, step_record
from engine.model import Status, Step, StepResult
from engine.preflight import preflight
from engine.providers.base import Redactor
from engine.report import ConsoleReporter
from engine.runner import Runner
from engine.templating import Templates
from engine.validation import load_runbook
from engine.vars import resolve_vars

__all__ = ["run", "EXIT_CODES"]

EXIT_CODES = {Status.SUCCEEDED: 0, Status.FAILED: 1, Status.INTERRUPTED: 130}


class _ManifestRecorder:
    """Appends each finished step to the manifest file as it finishes."""

    def __init__(self, writer: ManifestWriter, redactor: Redactor) -> None:
        self.writer = writer
        self.redactor = redactor
        self.records: list[dict[str, Any]] = []

    def step_started(self, step: Step) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        record = step_record(result, self.redactor)
        self.records.append(record)
        self.writer.append(record)


class _Fanout:
    def __init__(self, *observers: Any) -> None:
        self.observers = observers

    def step_started(self, step: Step) -> None:
        for o in self.observers:
            o.step_started(step)

    def step_finished(self, result: StepResult) -> None:
        for o in self.observers:
            o.step_finished(result)


def _previous_run(path: str, name: str) -> dict[str, Any]:
    """The manifest to resume from; refused when it records another runbook."""
    previous = read_manifest(path)
    recorded = previous["runbook"]
    if recorded["name"] != name:
        raise ManifestError(
            f"{path}: this manifest records runbook {recorded['name']!r} ({recorded['path']}), "
            f"not {name!r}: --resume takes a manifest of the same runbook"
        )
    return previous


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(
    file: str,
    *,
    var_pairs: Sequence[str] = (),
    vars_file: str | None = None,
    manifest_path: str | None = None,
    emulate: bool = False,
    json_output: bool = False,
    resume: str | None = None,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """Run ``file``; return the exit code (0, 1 or 130; 2 is raised as RunbookError)."""
    templates = Templates()
    runbook, _ = load_runbook(file, templates)
    variables = resolve_vars(runbook.vars, vars_file, var_pairs)
    previous = _previous_run(resume, runbook.name) if resume else None
    run_id = new_run_id()
    started_at = now_rfc3339()
    t0 = time.monotonic()
    run_info: dict[str, Any] = {"id": run_id, "started_at": started_at, "dry_run": False}
    lines = stderr if json_output else stdout

    emulator = None
    if emulate:
        from engine import emulator as emulator_mod

        emulator = emulator_mod.start("127.0.0.1", 0)
    try:
        prepared = preflight(
            runbook, templates, vars=variables, environ=os.environ, run_info=run_info,
            emulator_url=emulator.url if emulator else None,
        )
        for notice in prepared.notices:
            stderr.write(notice + "\n")
        path = manifest_path or os.path.join(".runbook", "runs", f"{run_id}.json")
        manifest = header(run_id, started_at, file, runbook.name, runbook.sha256, variables,
                          emulated=emulate,
                          resumed_from=previous["run"]["id"] if previous else None)
        writer = ManifestWriter(path, manifest)
        recorder = _ManifestRecorder(writer, prepared.redactor)
        runner = Runner(
            runbook, templates, vars=variables, environ=prepared.environ, run_info=run_info,
            providers=prepared.providers, redactor=prepared.redactor,
            targets=prepared.targets, previous=previous,
            observer=_Fanout(ConsoleReporter(lines, prepared.redactor, runbook), recorder),
        )
        previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            outcome = runner.run()
        finally:
            signal.signal(signal.SIGTERM, previous)
            for provider in prepared.providers.values():
                provider.close()
    finally:
        if emulator is not None:
            emulator.stop()

    manifest["run"].update(
        status=outcome.status.value,
        finished_at=now_rfc3339(),
        duration_ms=int((time.monotonic() - t0) * 1000),
    )
    if outcome.error:
        manifest["run"]["error"] = prepared.redactor.text(outcome.error)
    manifest["steps"] = recorder.records
    manifest["outputs"] = prepared.redactor.scrub(outcome.outputs)
    writer.finish(manifest)
    if outcome.error:
        stderr.write(f"error: {prepared.redactor.text(outcome.error)}\n")
    counts: dict[str, int] = {}
    for record in recorder.records:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    lines.write(f"{outcome.status.value}: {summary}\nmanifest: {path}\n")
    if json_output:
        stdout.write(json.dumps(manifest, ensure_ascii=False, indent=2, default=str) + "\n")
    if outcome.internal_error is not None:
        raise InternalError(outcome.internal_error)
    return EXIT_CODES[outcome.status]
