"""The provider gate: even spacing for a rate limit, and pauses that hold every attempt (a 429's
Retry-After), checked with a clock that only moves when told."""

from __future__ import annotations

import threading

import pytest

from engine.rate_limit import Gate
from tests.fakes import FakeClock


def test_a_rate_limit_spaces_attempts_evenly_with_no_burst() -> None:
    clock = FakeClock()
    gate = Gate(4, 1.0, clock=clock)
    start = clock.now
    times = []
    for _ in range(9):
        gate.acquire()
        times.append(round(clock.now - start, 6))
    assert times == [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]


def test_time_that_passed_on_its_own_is_not_waited_again() -> None:
    clock = FakeClock()
    gate = Gate(2, 1.0, clock=clock)
    gate.acquire()
    clock.advance(3.0)  # the caller was busy for longer than the interval
    assert gate.acquire() == 0.0
    assert gate.acquire() == pytest.approx(0.5)


def test_without_a_rate_limit_the_gate_only_pauses() -> None:
    clock = FakeClock()
    gate = Gate(clock=clock)
    assert [gate.acquire() for _ in range(100)] == [0.0] * 100
    gate.pause(2.5)
    assert gate.acquire() == pytest.approx(2.5)
    assert gate.acquire() == 0.0


def test_a_pause_pushes_the_next_slots_and_keeps_them_spaced() -> None:
    clock = FakeClock()
    gate = Gate(10, 1.0, clock=clock)  # one every 0.1 s
    gate.acquire()
    gate.pause(3.0)  # a 429 said: come back in 3 s
    start = clock.now
    waits = [gate.acquire() for _ in range(3)]
    assert round(clock.now - start, 6) == 3.2
    assert [round(w, 6) for w in waits] == [3.0, 0.1, 0.1]


def test_a_shorter_pause_does_not_shorten_a_longer_one() -> None:
    clock = FakeClock()
    gate = Gate(clock=clock)
    gate.pause(5.0)
    gate.pause(1.0)
    assert gate.acquire() == pytest.approx(5.0)


class _PausingClock(FakeClock):
    """A clock whose first sleep lets another thread's 429 pause the gate meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.gate: Gate | None = None

    def sleep(self, seconds: float) -> None:
        super().sleep(seconds)
        if len(self.slept) == 1 and self.gate is not None:
            self.gate.pause(10.0)


def test_an_attempt_waiting_for_its_slot_also_waits_out_a_pause_that_came_meanwhile() -> None:
    clock = _PausingClock()
    gate = Gate(1, 1.0, clock=clock)
    clock.gate = gate
    gate.acquire()  # slot 0 taken: the next waits 1 s, and a pause of 10 s comes during that wait
    start = clock.now
    gate.acquire()
    # it woke at +1 s, found the pause (made at +1 s for 10 s) and took a new slot after it
    assert clock.now - start == pytest.approx(11.0)


class _StillClock(FakeClock):
    """Time that never moves; each sleep is recorded (from many threads at once)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)


def test_threads_through_one_gate_each_get_their_own_slot() -> None:
    clock = _StillClock()
    gate = Gate(10, 1.0, clock=clock)
    threads = [threading.Thread(target=lambda: [gate.acquire() for _ in range(50)]) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 400 attempts at one instant: slots 0.1 s apart, none shared, none skipped (slot 0 sleeps not)
    assert sorted(round(s, 6) for s in clock.slept) == [round(k * 0.1, 6) for k in range(1, 400)]


@pytest.mark.parametrize("args", [(0, 1.0), (5, 0.0), (5, None), (None, 1.0)])
def test_a_rate_limit_must_make_sense(args: tuple) -> None:
    with pytest.raises(ValueError):
        Gate(*args)
