"""engine.manifest: timestamps and request hashes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from engine.manifest import now_rfc3339, request_sha256
from tests.conftest import ROOT, run_cli


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
    request = {"id": "a", "input": {"b": 1, "a": 2, "é": "ü"}}
    # Pinned: a manifest written by an earlier version must still resume.
    canonical = '["x",{"id":"a","input":{"a":2,"b":1,"\\u00e9":"\\u00fc"}}]'
    assert request_sha256(request, "x") == hashlib.sha256(canonical.encode()).hexdigest()
    assert request_sha256(request, "x") == request_sha256({"input": {"é": "ü", "a": 2, "b": 1}, "id": "a"}, "x")
    assert request_sha256(request, "x") != request_sha256(request, "y")
    assert request_sha256(request, "x") != request_sha256({**request, "id": "b"}, "x")


def _git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
                          cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_the_manifest_records_the_runbooks_commit_and_whether_it_changed(tmp_path: Path) -> None:
    runbook = tmp_path / "repo" / "rb.yml"
    runbook.parent.mkdir()
    runbook.write_text((ROOT / "runbooks" / "demo.yml").read_text())
    outside = run_cli(["run", str(runbook), "--emulate"], cwd=tmp_path)
    assert outside.code == 0, outside.stderr
    assert outside.manifest["runbook"]["git"] is None  # not in a repository

    _git("init", "-q", cwd=runbook.parent)
    _git("add", "rb.yml", cwd=runbook.parent)
    _git("commit", "-q", "-m", "runbook", cwd=runbook.parent)
    head = _git("rev-parse", "HEAD", cwd=runbook.parent)
    clean = run_cli(["run", str(runbook), "--emulate"], cwd=tmp_path)
    assert clean.manifest["runbook"]["git"] == {"commit": head, "dirty": False}

    runbook.write_text(runbook.read_text() + "# changed\n")
    dirty = run_cli(["run", str(runbook), "--emulate"], cwd=tmp_path)
    assert dirty.manifest["runbook"]["git"] == {"commit": head, "dirty": True}
