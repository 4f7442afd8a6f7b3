"""What a run prints: one line per finished step, and a failed step's details."""

from __future__ import annotations

from typing import Any, TextIO

from engine.model import Runbook, Status, Step, StepResult
from engine.providers.base import Redactor

__all__ = ["ConsoleReporter", "step_line"]

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


class ConsoleReporter:
    """Prints each finished step; for a failed one, its error and provider logs."""

    def __init__(self, stream: TextIO, redactor: Redactor, runbook: Runbook | None = None) -> None:
        self.stream = stream
        self.redactor = redactor
        steps = runbook.steps + runbook.finally_steps if runbook else ()
        self.id_width = max((len(s.id) for s in steps), default=0)

    def step_started(self, step: Step) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        lines = [step_line(result, self.id_width)]
        if result.error is not None and result.status is not Status.NOT_RUN:
            err = result.error
            status = f" (HTTP {err.http_status})" if err.http_status else ""
            lines.append(f"      {err.type}{status}: {err.message}")
            if err.attribution:
                lines.append(f"      attribution: {err.attribution}")
            for entry in result.logs[:20]:
                lines.append(f"      log: {_log_text(entry)}")
        text = "\n".join(lines)
        self.stream.write(self.redactor.text(text) + "\n" if self.redactor else text + "\n")
        self.stream.flush()


def _log_text(entry: Any) -> str:
    if isinstance(entry, dict):
        if isinstance(entry.get("err"), dict):
            err = entry["err"]
            return f"{err.get('name', 'Error')}: {err.get('message', '')}"
        if "msg" in entry:
            return str(entry["msg"])
    return str(entry)
