"""engine.manifest: timestamps and request hashes."""

from __future__ import annotations

import hashlib
import re
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

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


def test_a_fan_out_step_is_valid_on_disk_after_every_item_and_ends_in_item_order(tmp_path: Path) -> None:
    """The journal opens a for_each step, appends each item as it finishes (any order), and the
    file is a valid manifest after every write; closing the step puts its items in order."""
    import json

    from engine.manifest import ManifestWriter, header
    from engine.schemas import validator

    path = tmp_path / "m.json"
    manifest = header("r1", now_rfc3339(), "rb.yml", "rb", "0" * 64, {}, None)
    writer = ManifestWriter(str(path), manifest)
    identity = {"id": "a", "name": None, "section": "steps", "provider": "p", "provider_type": "http",
                "dispatch": "api"}
    fields = {"started_at": now_rfc3339(), "finished_at": None, "duration_ms": 0, "attempts": [],
              "request": None, "request_sha256": None, "output": None, "exports": {}, "logs": [],
              "run_id": None, "error": None}

    def line(record: dict) -> bytes:
        return json.dumps(record, separators=(",", ":")).encode()

    def on_disk() -> dict:
        data = json.loads(path.read_text())
        assert not list(validator("manifest.schema.json").iter_errors(data))
        return data

    writer.append(line({**identity, **fields, "status": "succeeded"}))
    writer.open_step(line({**identity, "id": "fan", **fields, "status": "running"}))
    assert on_disk()["steps"][1]["items"] == []
    for index in (2, 0, 1):
        writer.append_item(line({"index": index, **fields, "status": "succeeded", "output": index * 10}))
        assert [i["index"] for i in on_disk()["steps"][1]["items"]][-1] == index
    writer.close_step(line({**identity, "id": "fan", **fields, "status": "succeeded", "output": [0, 10, 20]}))
    data = on_disk()
    assert data["steps"][1]["status"] == "succeeded"
    assert [i["output"] for i in data["steps"][1]["items"]] == [0, 10, 20]
    writer.append(line({**identity, "id": "after", **fields, "status": "succeeded"}))
    assert [s["id"] for s in on_disk()["steps"]] == ["a", "fan", "after"]
    writer.finish({**manifest, "run": {**manifest["run"], "status": "succeeded"}})
    final = on_disk()
    assert [s["id"] for s in final["steps"]] == ["a", "fan", "after"]
    assert [i["index"] for i in final["steps"][1]["items"]] == [0, 1, 2]


def test_the_manifest_schema_knows_exactly_the_engines_error_types() -> None:
    """One list of error types (model.ErrorType): the schema's enum is that list."""
    import json

    from engine.model import ErrorType
    from engine.providers.base import ERROR_TYPES, ProviderError

    schema = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
    enum = schema["$defs"]["error"]["anyOf"][1]["properties"]["type"]["enum"]
    assert enum == [t.value for t in ErrorType] == list(ERROR_TYPES)
    error = ProviderError("timeout", "slow")
    assert error.type is ErrorType.TIMEOUT and error.type == "timeout" and f"{error.type}" == "timeout"
    assert json.dumps({"type": error.type}) == '{"type": "timeout"}'
    with pytest.raises(ValueError):
        ProviderError("bogus", "a plugin's typo is a bug, not a new kind of failure")
