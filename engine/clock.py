"""The time a run reads: one injectable object, so the executor's waits and timeouts can be tested
without waiting (and a Temporal workflow can supply its own)."""

from __future__ import annotations

import time

__all__ = ["Clock", "SYSTEM_CLOCK", "now_rfc3339", "elapsed_ms"]


def now_rfc3339() -> str:
    """The current UTC time, RFC 3339 with milliseconds (``2026-11-23T09:35:12.345Z``)."""
    now = time.time()
    second = int(now)
    return f"{time.strftime('%Y-%m-%dT%H:%M:%S', time.gmtime(second))}.{int((now - second) * 1000):03d}Z"


def elapsed_ms(started_at: str, finished_at: str) -> int:
    """Milliseconds from one :func:`now_rfc3339` stamp to a later one (0 if it is not later)."""
    from datetime import datetime

    def parsed(stamp: str) -> datetime:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00"))

    return max(0, round((parsed(finished_at) - parsed(started_at)).total_seconds() * 1000))


class Clock:
    """Monotonic seconds for durations and deadlines, wall-clock stamps for records, and sleep."""

    def monotonic(self) -> float:
        return time.monotonic()

    def timestamp(self) -> str:
        return now_rfc3339()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


#: The real clock.
SYSTEM_CLOCK = Clock()
