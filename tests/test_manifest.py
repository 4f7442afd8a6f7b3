"""engine.manifest: timestamps and request hashes."""

from __future__ import annotations

import re
import time
from datetime import datetime, timezone

from engine.manifest import now_rfc3339, request_sha256


def test_timestamps_are_rfc3339_utc_with_milliseconds() -> None:
    before = datetime.now(timezone.utc).replace(microsecond=0)
    stamps = [now_rfc3339()]
    time.sleep(1.05)  # across a second boundary: the cached date part is renewed
    stamps.append(now_rfc3339())
    after = datetime.now(timezone.utc)
    for stamp in stamps:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp), stamp
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert before <= when <= after
    assert stamps[0] < stamps[1]


def test_request_hash_covers_the_request_and_its_target() -> None:
    request = {"id": "a", "input": {"b": 1, "a": 2}}
    assert request_sha256(request, "x") == request_sha256({"input": {"a": 2, "b": 1}, "id": "a"}, "x")
    assert request_sha256(request, "x") != request_sha256(request, "y")
    assert request_sha256(request, "x") != request_sha256({**request, "id": "b"}, "x")
