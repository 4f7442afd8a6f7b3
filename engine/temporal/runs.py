"""What ``submit``, ``status`` and ``results`` share: workflow ids, batch rows, manifests read back."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from typing import Any

from engine.errors import LocatedErrors, Problem, RunbookError
from engine.model import Attempt, ErrorType, Runbook, Status, Step, StepError, StepResult

__all__ = ["workflow_id", "read_rows", "batch_of", "result_of", "file_name", "split_id", "PREFIX"]

PREFIX = "runbook"


def workflow_id(batch: str, key: str) -> str:
    """``runbook/<batch>/<row key>``: a batch submitted twice starts nothing twice."""
    return f"{PREFIX}/{batch}/{key}"


def split_id(ident: str) -> tuple[str, str | None]:
    """``(batch, key)`` of ``runbook/B/K``, ``B/K``; ``(batch, None)`` of ``runbook/B`` or ``B``."""
    parts = ident.strip("/").split("/")
    if parts and parts[0] == PREFIX and len(parts) > 1:
        parts = parts[1:]
    if len(parts) == 1:
        return parts[0], None
    return parts[0], "/".join(parts[1:])


def read_rows(path: str) -> list[tuple[str, dict[str, Any]]]:
    """The rows of a ``--batch-file`` (JSON lines, each a vars mapping; ``"_key"`` names a row,
    else its row number from 1); every problem raised at once, located."""
    try:
        with open(path, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RunbookError(f"--batch-file {path}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    rows: list[tuple[str, dict[str, Any]]] = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(Problem(path, number, exc.colno, f"not a JSON object: {exc.msg}"))
            continue
        if not isinstance(row, dict):
            problems.append(Problem(path, number, 1, "a row is a JSON object of variables"))
            continue
        key = row.pop("_key", None)
        key = str(len(rows) + 1) if key is None else str(key)
        if not key or not re.fullmatch(r"[A-Za-z0-9_.:@=+-]+", key):
            problems.append(Problem(path, number, 1, f"_key {key!r}: letters, digits and _.:@=+- only"))
            continue
        if key in seen:
            problems.append(Problem(path, number, 1, f"_key {key!r} is also the key of row {seen[key]}"))
            continue
        seen[key] = number
        rows.append((key, row))
    if problems:
        raise LocatedErrors(problems)
    if not rows:
        raise RunbookError(f"--batch-file {path}: no rows")
    return rows


def batch_of(sha256: str, rows: Sequence[tuple[str, dict[str, Any]]], given: dict[str, Any]) -> str:
    """A batch id from what it runs (the runbook, its rows, the --var values): the same batch
    submitted again has the same id, so its runs are not started twice."""
    text = json.dumps([sha256, rows, given], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def file_name(key: str) -> str:
    """A row key as a file name."""
    return re.sub(r"[^A-Za-z0-9_.=+-]", "_", key) + ".json"


def _steps(runbook: Runbook) -> Iterator[Step]:
    yield from runbook.steps
    yield from runbook.finally_steps


def result_of(step: Step, record: dict[str, Any]) -> StepResult:
    """A step's (or item's) record as a StepResult again, for the console's lines."""
    result = StepResult(step, Status(record["status"]), started_at=record.get("started_at"),
                        request=record.get("request"))
    result.finished_at = record.get("finished_at")
    result.duration_ms = record.get("duration_ms") or 0
    result.attempts = [Attempt(**a) for a in record.get("attempts") or []]
    result.request_sha256 = record.get("request_sha256")
    result.output = record.get("output")
    result.exports = record.get("exports") or {}
    result.logs = record.get("logs") or []
    result.run_id = record.get("run_id")
    result.reused_from = record.get("reused_from")
    result.index = record.get("index")
    error = record.get("error")
    if error:
        result.error = StepError(ErrorType(error["type"]), error["message"], error.get("http_status"),
                                 error.get("attribution"), error.get("provider_error"), error.get("location"))
    if "items" in record:
        result.items = record["items"]
    return result
