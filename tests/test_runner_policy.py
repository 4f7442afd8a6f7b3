"""Retry decisions and backoff delays (pure functions of the runner)."""

from __future__ import annotations

import pytest

from engine.executor import retry_delay, should_retry
from engine.model import RetryPolicy, parse_duration
from engine.providers.base import ProviderError
from engine.templating import truthy


def error(type_: str, status: int | None = None) -> ProviderError:
    return ProviderError(type_, "x", http_status=status)


@pytest.mark.parametrize(
    ("on", "err", "expected"),
    [
        ({"connection", "429"}, error("connection"), True),
        ({"connection", "429"}, error("rate_limited", 429), True),
        ({"connection", "429"}, error("timeout"), False),  # may have run: not by default
        ({"connection", "429"}, error("server_error", 500), False),
        ({"5xx"}, error("server_error", 503), True),
        ({"502"}, error("server_error", 503), False),
        ({"502"}, error("server_error", 502), True),
        ({"4xx"}, error("client_error", 409), True),
        ({"timeout"}, error("timeout"), True),
        ({"5xx"}, error("malformed_response", 200), False),
    ],
)
def test_should_retry_follows_on(on: set[str], err: ProviderError, expected: bool) -> None:
    assert should_retry(err, RetryPolicy(attempts=3, on=frozenset(on))) is expected


def test_exponential_backoff_has_full_jitter_and_a_cap() -> None:
    policy = RetryPolicy(attempts=10, backoff="exponential", initial_delay=1, max_delay=5)
    assert retry_delay(policy, 1, None, rng=lambda: 1.0) == 1
    assert retry_delay(policy, 3, None, rng=lambda: 1.0) == 4
    assert retry_delay(policy, 6, None, rng=lambda: 1.0) == 5
    assert retry_delay(policy, 3, None, rng=lambda: 0.5) == 2
    assert retry_delay(policy, 3, None, rng=lambda: 0.0) == 0


def test_fixed_backoff_and_retry_after() -> None:
    fixed = RetryPolicy(backoff="fixed", initial_delay=0.5, max_delay=10)
    assert retry_delay(fixed, 4, None) == 0.5
    assert retry_delay(fixed, 1, 3.0) == 3.0  # the server's word wins
    assert retry_delay(fixed, 1, 60.0) == 10  # capped by max_delay


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("2m", 120), ("1h", 3600), (1.5, 1.5)]
)
def test_durations(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "expected"),
    [(True, True), (False, False), ("false", False), ("False", False), ("0", False), ("", False),
     ("no", False), ("yes", True), ("x", True), (0, False), ([], False), ({"a": 1}, True),
     (None, False)],
)
def test_truthy(value: object, expected: bool) -> None:
    assert truthy(value) is expected


def test_retry_after_in_both_forms() -> None:
    import email.utils
    import time

    from engine.providers._http import retry_after

    assert retry_after("3") == 3.0
    assert retry_after("0") == 0.0
    assert retry_after(None) is None and retry_after("soon") is None
    in_ten = email.utils.formatdate(time.time() + 10, usegmt=True)
    assert 8 <= retry_after(in_ten) <= 10  # an HTTP date becomes seconds from now
    past = email.utils.formatdate(time.time() - 60, usegmt=True)
    assert retry_after(past) == 0.0
