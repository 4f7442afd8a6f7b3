"""What a run prints: one line per finished step, and a failed step's details.

On a terminal, the step in flight is shown on a line of its own with its elapsed
time, rewritten in place (carriage return, no escape sequences) and cleared
before the step's result line. Anywhere else (a pipe, a CI log) only the plain
result lines are written: no control characters.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from typing import Any, TextIO

from engine.model import Runbook, Status, Step, StepResult
from engine.redaction import Redactor

__all__ = ["ConsoleReporter", "Progress", "step_line", "wants_progress"]

_MARK = {
    Status.SUCCEEDED: "ok  ",
    Status.FAILED: "FAIL",
    Status.SKIPPED: "skip",
    Status.INTERRUPTED: "INT ",
    Status.NOT_RUN: "--  ",
}


def _duration(ms: int) -> str:
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def step_line(result: StepResult, id_width: int = 0) -> str:
    """``ok    contact  crm (membrane)  api  12 ms  run run_123``."""
    step = result.step
    parts = [
        _MARK[result.status],
        step.id.ljust(id_width),
        f"{step.provider} ({step.provider_type})" if step.provider != step.provider_type
        else step.provider,
        step.style,
    ]
    if result.status not in (Status.NOT_RUN,):
        parts.append(_duration(result.duration_ms))
    if len(result.attempts) > 1:
        parts.append(f"{len(result.attempts)} attempts")
    if result.run_id:
        parts.append(f"run {result.run_id}")
    if result.reused_from:
        parts.append(f"reused from {result.reused_from}")
    if result.status is Status.NOT_RUN:
        parts.append("not run")
    return "  ".join(parts)


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

    def start(self, label: str) -> None:
        self.stop()
        self._stop = threading.Event()
        started = time.monotonic()
        width = max(shutil.get_terminal_size((80, 24)).columns - 1, 20)

        def tick() -> None:
            frame = 0
            while True:
                elapsed = time.monotonic() - started
                text = f"{self.FRAMES[frame % 4]} {label}  {elapsed:.1f} s"[:width]
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

    def stop(self) -> None:
        """Stop redrawing and clear the line (call with the lock free)."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join()
        self._thread = None
        with self.lock:
            if self._shown:
                self.stream.write("\r" + " " * self._shown + "\r")
                self.stream.flush()
                self._shown = 0


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

    def step_started(self, step: Step) -> None:
        if self.progress is not None:
            provider = (f"{step.provider} ({step.provider_type})" if step.provider != step.provider_type
                        else step.provider)
            self.progress.start(f"{step.id.ljust(self.id_width)}  {provider}  {step.style}")

    def close(self) -> None:
        """Stop showing progress (the run ended without finishing the step)."""
        if self.progress is not None:
            self.progress.stop()

    def step_finished(self, result: StepResult) -> None:
        if self.progress is not None:
            self.progress.stop()
        lines = [step_line(result, self.id_width)]
        if result.error is not None and result.status is not Status.NOT_RUN:
            err = result.error
            status = f" (HTTP {err.http_status})" if err.http_status else ""
            where = f"{err.location}: " if err.location else ""
            lines.append(f"      {where}{err.type}{status}: {_visible(err.message)}")
            if err.attribution:
                lines.append(f"      attribution: {_visible(str(err.attribution))}")
            for entry in result.logs[:20]:
                lines.append(f"      log: {_visible(_log_text(entry))}")
        text = "\n".join(lines)
        with self._lock:
            self.stream.write(self.redactor.text(text) + "\n" if self.redactor else text + "\n")
            self.stream.flush()


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _visible(text: str) -> str:
    """Provider text made safe for a terminal or a CI log: control characters (an escape
    sequence, a carriage return) shown as ``\\x1b``, continuation lines indented."""
    text = _CONTROL.sub(lambda m: m.group(0).encode("unicode_escape").decode("ascii"), text)
    return text.replace("\n", "\n        ")


def _log_text(entry: Any) -> str:
    if isinstance(entry, dict):
        if isinstance(entry.get("err"), dict):
            err = entry["err"]
            return f"{err.get('name', 'Error')}: {err.get('message', '')}"
        if "msg" in entry:
            return str(entry["msg"])
    return str(entry)
