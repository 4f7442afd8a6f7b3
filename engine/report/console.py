"""What a person reads: a run's line per finished step (and a failed step's details), its
closing lines, and validate's problems and verdicts.

On a terminal, the step in flight is shown on a line of its own with its elapsed
time, rewritten in place (carriage return, no escape sequences) and cleared
before the step's result line. Anywhere else (a pipe, a CI log) only the plain
result lines are written: no control characters.
"""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from engine.model import Runbook, Status, Step, StepResult
from engine.report.text import duration, error_line, plural, provider_label, visible

if TYPE_CHECKING:
    from engine.errors import Problem
    from engine.redaction import Redactor

__all__ = ["ConsoleReporter", "Progress", "step_line", "wants_progress", "problems"]

_MARK = {
    Status.SUCCEEDED: "ok  ",
    Status.FAILED: "FAIL",
    Status.SKIPPED: "skip",
    Status.INTERRUPTED: "INT ",
    Status.NOT_RUN: "--  ",
}


def step_line(result: StepResult, id_width: int = 0) -> str:
    """``ok    contact  crm (membrane)  api  12 ms  run run_123``."""
    step = result.step
    name = step.id if result.index is None else f"{step.id}[{result.index}]"
    parts = [_MARK[result.status], name.ljust(id_width), provider_label(step.provider, step.provider_type),
             step.style]
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


def _failure_lines(result: StepResult) -> list[str]:
    """A failed step's error, its attribution and its first provider logs, indented."""
    err = result.error
    if err is None or result.status is Status.NOT_RUN:
        return []
    lines = [f"      {error_line(err.type, visible(err.message), err.http_status, err.location)}"]
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

    ``progress`` (default: whether ``stream`` is a terminal) shows the step in flight.
    """

    def __init__(self, stream: TextIO, redactor: Redactor, runbook: Runbook | None = None,
                 progress: bool | None = None) -> None:
        self.stream = stream
        self.redactor = redactor
        steps = runbook.steps + runbook.finally_steps if runbook else ()
        self.id_width = max((len(s.id) for s in steps), default=0)
        self._lock = threading.Lock()
        show = wants_progress(stream) if progress is None else progress
        self.progress = Progress(stream, self._lock) if show else None
        self._fan = [0, 0, 0]  # of the for_each step running: its items, done, failed

    def step_started(self, step: Step) -> None:
        if self.progress is not None:
            provider = provider_label(step.provider, step.provider_type)
            self.progress.start(f"{step.id.ljust(self.id_width)}  {provider}  {step.style}")

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
        text = "\n".join([step_line(result, self.id_width), *_failure_lines(result)])
        with self._lock:
            if self.progress is not None:
                self.progress.clear()
            self.stream.write(self.redactor.text(text) + "\n" if self.redactor else text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """Stop showing progress (the run ended without finishing the step)."""
        if self.progress is not None:
            self.progress.stop()

    def step_finished(self, result: StepResult) -> None:
        if self.progress is not None:
            self.progress.stop()
        text = "\n".join([step_line(result, self.id_width), *_failure_lines(result)])
        with self._lock:
            self.stream.write(self.redactor.text(text) + "\n" if self.redactor else text + "\n")
            self.stream.flush()

    def run_finished(self, status: Status, counts: Mapping[str, int], manifest_path: str) -> None:
        """``failed: 2 succeeded, 1 failed`` and ``manifest: PATH``."""
        summary = ", ".join(f"{n} {s}" for s, n in counts.items()) or "no steps"
        self.stream.write(f"{status.value}: {summary}\nmanifest: {manifest_path}\n")


def problems(found: Sequence[Problem], files: Sequence[str], skipped_note: str | None, *,
             stdout: TextIO, stderr: TextIO) -> None:
    """validate's text: each problem on stderr, ``FILE: valid`` for each file without an
    error, the files skipped, and the count of errors."""
    for p in found:
        stderr.write(str(p) + "\n")
    errors = [p for p in found if p.severity == "error"]
    bad_files = {p.file for p in errors}
    warned = Counter(p.file for p in found if p.severity == "warning")
    for file in files:
        if file not in bad_files:
            stdout.write(_valid_line(file, warned[file]))
    if skipped_note:
        stdout.write(skipped_note + "\n")
    if errors:
        stderr.write(f"{plural(len(errors), 'error')} in {plural(len(bad_files), 'file')}\n")


def _valid_line(file: str, warnings: int) -> str:
    """``FILE: valid``, with its number of warnings if any."""
    return f"{file}: valid ({plural(warnings, 'warning')})\n" if warnings else f"{file}: valid\n"
