"""One gate per provider instance: its ``rate_limit`` and the pauses a 429 asks for (SPEC §7).

Every attempt of every step and ``for_each`` item that uses a provider instance passes its
:class:`Gate` first. With ``rate_limit: {requests: N, per: D}`` the gate spaces the attempts
evenly, one every ``D / N`` seconds (a token bucket that holds one token: a burst of N followed
by N more would put 2N requests in one window of D, which is what the service's limit forbids).
A 429 whose ``Retry-After`` says when to come back pauses the gate: every item that uses the
instance waits, not only the one that got the answer (backpressure). Without a ``rate_limit``
the gate only pauses.

Thread-safe: the items of a fan-out pass it from many threads. The clock is injected, so a
test checks the spacing without waiting.
"""

from __future__ import annotations

import threading

from engine.clock import SYSTEM_CLOCK, Clock

__all__ = ["Gate"]


class Gate:
    """Admits the attempts of one provider instance (see the module docstring)."""

    def __init__(self, requests: int | None = None, per: float | None = None, *, clock: Clock = SYSTEM_CLOCK) -> None:
        if (requests is None) != (per is None):
            raise ValueError("a rate limit needs both requests and per")
        if requests is not None and (requests < 1 or per is None or per <= 0):
            raise ValueError("a rate limit needs requests >= 1 and per > 0")
        self.interval = per / requests if requests is not None and per is not None else 0.0
        self.clock = clock
        self._lock = threading.Lock()
        self._next_slot: float | None = None  # when the next attempt may go (monotonic seconds)
        self._paused_until = 0.0
        self._pauses = 0  # how many pauses there have been (an attempt that waited sees a new one)

    def acquire(self) -> float:
        """Wait for this attempt's turn; return the seconds waited."""
        clock = self.clock
        waited = 0.0
        while True:
            with self._lock:
                now = clock.monotonic()
                slot = max(now, self._paused_until, self._next_slot if self._next_slot is not None else now)
                if self.interval:
                    self._next_slot = slot + self.interval
                pauses = self._pauses
            if slot > now:
                clock.sleep(slot - now)
                waited += slot - now
            with self._lock:
                if self._pauses == pauses or clock.monotonic() >= self._paused_until:
                    return waited
            # a pause came while this attempt waited: it takes a new turn after the pause, so
            # the attempts that were waiting do not all go at once when it ends

    def pause(self, seconds: float) -> None:
        """Hold every attempt through this gate for ``seconds`` from now (a 429's Retry-After)."""
        if seconds <= 0:
            return
        with self._lock:
            until = self.clock.monotonic() + seconds
            if until > self._paused_until:
                self._paused_until = until
                self._pauses += 1
            if self.interval and self._next_slot is not None and self._next_slot < until:
                self._next_slot = until  # the slots after the pause stay spaced
