"""What a person reads: a run's line per finished step (and a failed step's details), its
closing lines, and validate's problems and verdicts.

On a terminal, the step in flight is shown on a line of its own with its elapsed
time, rewritten in place (carriage return, no cursor escapes) and cleared
before the step's result line, and the status marks and errors are coloured
(:mod:`engine.report.colour`: ``--color``, ``NO_COLOR``). Anywhere else (a pipe, a
CI log) only the plain result lines are written: no control characters, unless
``--color always`` asks for colours.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from engine.model import Runbook, Status, Step, StepResult
from engine.report.colour import PLAIN, Palette
from engine.report.text import duration, error_line, plural, provider_label, visible

if TYPE_CHECKING:
    from engine.errors import Problem
    from engine.redaction import Redactor

__all__ = ["ConsoleReporter", "Progress", "step_line", "wants_progress", "problems", "recorded_run"]

_MARK = {
    Status.SUCCEEDED: "ok  ",
    Status.FAILED: "FAIL",
    Status.SKIPPED: "skip",
    Status.INTERRUPTED: "INT ",
    Status.NOT_RUN: "--  ",
}


def step_line(result: StepResult, id_width: int = 0, prefix: str = "", palette: Palette = PLAIN) -> str:
    """``ok    contact  crm (membrane)  api  12 ms  run run_123`` (``prefix``: ``onboard › `` for a
    step of a called runbook; ``palette``: its mark coloured by status)."""
    step = result.step
    name = prefix + (step.id if result.index is None else f"{step.id}[{result.index}]")
    what = [provider_label(step.provider, step.provider_type), step.style] if step.child is None \
        else [f"runbook {step.target}"]
    parts = [palette.paint(_MARK[result.status], result.status.value), name.ljust(id_width), *what]
    if result.status is not Status.NOT_RUN:
        parts.append(duration(result.duration_ms))
    if len(result.attempts) > 1:
        parts.append(f"{len(result.attempts)} attempts")
    if result.run_id:
        parts.append(f"run {result.run_id}")
    if result.reused_from:
        parts.append(f"reused from {result.reused_from}")
    if result.items is not None:
        counts = Counter(item["status"] for item in result.items)
        parts.append(f"{plural(len(result.items), 'item')}: " + ", ".join(
            f"{n} {status}" for status, n in counts.items()) if result.items else "no items")
    if result.status is Status.NOT_RUN:
        parts.append("not run")
    return "  ".join(parts)


def _failure_lines(result: StepResult, palette: Palette = PLAIN) -> list[str]:
    """A failed step's error, its attribution and its first provider logs, indented."""
    err = result.error
    if err is None or result.status is Status.NOT_RUN:
        return []
    line = error_line(err.type, visible(err.message), err.http_status, err.location)
    lines = [f"      {palette.paint(line, 'error')}"]
    if err.attribution:
        lines.append(f"      attribution: {visible(str(err.attribution))}")
    for entry in result.logs[:20]:
        lines.append(f"      log: {visible(_log_text(entry))}")
    return lines


def _log_text(entry: Any) -> str:
    if isinstance(entry, dict):
        if isinstance(entry.get("err"), dict):
            err = entry["err"]
            return f"{err.get('name', 'Error')}: {err.get('message', '')}"
        if "msg" in entry:
            return str(entry["msg"])
    return str(entry)


def wants_progress(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal that can show a line rewritten in place."""
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Progress:
    """The step in flight and its elapsed time, on one line rewritten with ``\\r``.

    A background thread redraws it every ``interval`` seconds while the runner
    waits on the provider; :meth:`stop` clears it, so the result line that
    follows starts on a clean line. Every write holds ``lock``.
    """

    FRAMES = "|/-\\"

    def __init__(self, stream: TextIO, lock: threading.Lock, interval: float = 0.1) -> None:
        self.stream = stream
        self.lock = lock
        self.interval = interval
        self._shown = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, label: str | Callable[[], str]) -> None:
        """Show ``label`` (or what it returns at each redraw) with the elapsed time."""
        import shutil  # only a terminal shows progress

        self.stop()
        self._stop = threading.Event()
        started = time.monotonic()
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)

        def tick() -> None:
            frame = 0
            while True:
                elapsed = time.monotonic() - started
                shown = label() if callable(label) else label
                text = f"{self.FRAMES[frame % 4]} {shown}  {elapsed:.1f} s"[:width]
                with self.lock:
                    if self._stop.is_set():
                        return
                    pad = " " * max(self._shown - len(text), 0)
                    self.stream.write("\r" + text + pad)
                    self.stream.flush()
                    self._shown = len(text)
                frame += 1
                if self._stop.wait(self.interval):
                    return

        self._thread = threading.Thread(target=tick, name="runbook-progress", daemon=True)
        self._thread.start()

    def clear(self) -> None:
        """Clear the line for another line to be written (call holding the lock); the next
        redraw shows it again."""
        if self._shown:
            self.stream.write("\r" + " " * self._shown + "\r")
            self._shown = 0

    def stop(self) -> None:
        """Stop redrawing and clear the line (call with the lock free)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with self.lock:
            self.clear()
            self.stream.flush()


class ConsoleReporter:
    """Prints each finished step; for a failed one, its error and provider logs.

    ``progress`` (default: whether ``stream`` is a terminal) shows the step in flight;
    ``palette`` colours the status marks and errors (``--color``).
    """

    def __init__(self, stream: TextIO, redactor: Redactor, runbook: Runbook | None = None,
                 progress: bool | None = None, palette: Palette = PLAIN) -> None:
        self.stream = stream
        self.redactor = redactor
        self.palette = palette
        steps = runbook.steps + runbook.finally_steps if runbook else ()
        self.id_width = max((len(s.id) for s in steps), default=0)
        self._lock = threading.Lock()
        show = wants_progress(stream) if progress is None else progress
        self.progress = Progress(stream, self._lock) if show else None
        self._fan = [0, 0, 0]  # of the for_each step running: its items, done, failed
        self._calls: list[Step] = []  # the steps whose called runbooks are running, outermost first

    def step_started(self, step: Step, result: StepResult | None = None) -> None:
        """The step in flight on the progress line; a polling one counts its polls there."""
        if self.progress is not None:
            provider = provider_label(step.provider, step.provider_type)
            label = f"{self._prefix()}{step.id.ljust(self.id_width)}  {provider}  {step.style}"
            if step.poll is not None and result is not None:
                self.progress.start(lambda: f"{label}  poll {len(result.attempts) + 1}")
            else:
                self.progress.start(label)

    def call_started(self, step: Step) -> None:
        """The steps that follow are the runbook ``step`` calls: their lines say so
        (``onboard › make``)."""
        if self.progress is not None:
            self.progress.stop()
        self._calls.append(step)

    def items_started(self, step: Step, count: int) -> None:
        """A ``for_each`` step's items start: its progress line counts them."""
        self._fan = [count, 0, 0]  # items, done, failed
        if self.progress is not None:
            label = f"{step.id.ljust(self.id_width)}  {provider_label(step.provider, step.provider_type)}"
            fan = self._fan
            in_flight = step.concurrency
            self.progress.start(lambda: f"{label}  {fan[1]}/{fan[0]} done, {fan[2]} failed, "
                                        f"{min(in_flight, fan[0] - fan[1])} in flight")

    def item_finished(self, result: StepResult) -> None:
        """Count an item; a failed one gets its line (``FAIL  invite[3] ...``) and its error."""
        self._fan[1] += 1
        if result.status is not Status.FAILED:
            return
        self._fan[2] += 1
        text = self._lines(result)
        with self._lock:
            if self.progress is not None:
                self.progress.clear()
            self.stream.write(self.redactor.text(text) + "\n" if self.redactor else text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Stop showing progress (the run ended without finishing the step)."""
        if self.progress is not None:
            self.progress.stop()

    def _prefix(self) -> str:
        """``onboard › ``: the calls the steps now are inside of."""
        return "".join(f"{step.id} › " for step in self._calls)

    def step_finished(self, result: StepResult) -> None:
        if self.progress is not None:
            self.progress.stop()
        if self._calls and result.step is self._calls[-1]:
            self._calls.pop()  # the call itself: its line is the caller's
        text = self._lines(result)
        with self._lock:
            self.stream.write(self.redactor.text(text) + "\n" if self.redactor else text + "\n")
            self.stream.flush()

    def _lines(self, result: StepResult) -> str:
        """A finished step's (or failed item's) line and, if it failed, its error lines."""
        return "\n".join([step_line(result, self.id_width, self._prefix(), self.palette),
                          *_failure_lines(result, self.palette)])

    def run_finished(self, status: Status, counts: Mapping[str, int], manifest_path: str) -> None:
        """``failed: 2 succeeded, 1 failed`` and ``manifest: PATH``."""
        summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no steps"
        verdict = self.palette.paint(status.value, status.value)
        self.stream.write(f"{verdict}: {summary}\nmanifest: {manifest_path}\n")


def problems(found: Sequence[Problem], files: Sequence[str], skipped_note: str | None, *,
             stdout: TextIO, stderr: TextIO, palette: Palette = PLAIN, out_palette: Palette = PLAIN) -> None:
    """validate's text: each problem on stderr, ``FILE: valid`` for each file without an
    error, the files skipped, and the count of errors (``palette``: stderr's colours,
    ``out_palette``: stdout's)."""
    for p in found:
        stderr.write(palette.paint(str(p), p.severity) + "\n")
    errors = [p for p in found if p.severity == "error"]
    bad_files = {p.file for p in errors}
    warned = Counter(p.file for p in found if p.severity == "warning")
    for file in files:
        if file not in bad_files:
            stdout.write(out_palette.paint(_valid_line(file, warned[file]), "succeeded") + "\n")
    if skipped_note:
        stdout.write(skipped_note + "\n")
    if errors:
        stderr.write(f"{plural(len(errors), 'error')} in {plural(len(bad_files), 'file')}\n")


def _valid_line(file: str, warnings: int) -> str:
    """``FILE: valid``, with its number of warnings if any."""
    return f"{file}: valid ({plural(warnings, 'warning')})" if warnings else f"{file}: valid"


# --- a past run, from its manifest (``runbook show``) -------------------------------------------

_RECORDED_MARK = {status.value: mark for status, mark in _MARK.items()}


def _record_line(record: Mapping[str, Any], name: str, id_width: int, palette: Palette) -> str:
    """:func:`step_line` of a step (or item) as the manifest records it."""
    status = record["status"]
    parts = [palette.paint(_RECORDED_MARK.get(status, status), status), name.ljust(id_width),
             provider_label(record["provider"], record["provider_type"]), record["dispatch"]]
    if status != "not_run":
        parts.append(duration(record.get("duration_ms")))
    attempts = record.get("attempts") or []
    if len(attempts) > 1:
        parts.append(f"{len(attempts)} attempts")
    if record.get("run_id"):
        parts.append(f"run {record['run_id']}")
    if record.get("reused_from"):
        parts.append(f"reused from {record['reused_from']}")
    items = record.get("items")
    if items is not None:
        counts = Counter(item["status"] for item in items)
        parts.append(f"{plural(len(items), 'item')}: " + ", ".join(
            f"{n} {s}" for s, n in counts.items()) if items else "no items")
    if status == "not_run":
        parts.append("not run")
    return "  ".join(parts)


def _recorded_failure_lines(record: Mapping[str, Any], palette: Palette) -> list[str]:
    err = record.get("error")
    if not err or record["status"] == "not_run":
        return []
    line = error_line(err.get("type", "error"), visible(err.get("message", "")), err.get("http_status"),
                      err.get("location"))
    lines = [f"      {palette.paint(line, 'error')}"]
    if err.get("attribution"):
        lines.append(f"      attribution: {visible(str(err['attribution']))}")
    for entry in (record.get("logs") or [])[:20]:
        lines.append(f"      log: {visible(_log_text(entry))}")
    return lines


def recorded_run(manifest: Mapping[str, Any], manifest_path: str, palette: Palette = PLAIN) -> list[str]:
    """The lines ``runbook run`` printed for the run a manifest records: each step's line (and
    a failed one's error and logs), each failed item's line before its step's, the verdict and
    the manifest's path. A run still going (or killed) says so instead of a verdict."""
    steps = manifest.get("steps") or []
    id_width = max((len(step["id"]) for step in steps), default=0)
    out: list[str] = []
    counts: dict[str, int] = {}
    for step in steps:
        identity = {k: step[k] for k in ("provider", "provider_type", "dispatch")}
        for item in step.get("items") or []:
            if item["status"] == "failed":
                out += [_record_line({**identity, **item}, f"{step['id']}[{item['index']}]", id_width, palette),
                        *_recorded_failure_lines(item, palette)]
        if step["status"] == "running":
            continue
        out += [_record_line(step, step["id"], id_width, palette), *_recorded_failure_lines(step, palette)]
        counts[step["status"]] = counts.get(step["status"], 0) + 1
    run = manifest["run"]
    if run.get("error"):
        out.append(f"error: {run['error']}")
    summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no steps"
    if run["status"] == "running":
        out.append(f"running (or stopped without finishing): {summary} so far")
    else:
        out.append(f"{palette.paint(run['status'], run['status'])}: {summary}")
    out.append(f"manifest: {manifest_path}")
    return out
