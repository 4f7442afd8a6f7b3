"""The results manifest (SPEC §6): written so that it is valid JSON at every moment.

The file starts as a complete manifest with ``run.status: running`` and no
steps. Each finished step is appended in place: one ``pwrite`` puts the step
and the unchanged closing bytes where the closing bytes stood, so recording
costs time linear in the number of steps and a process killed between two
writes leaves a valid manifest with every finished step. A ``for_each`` step is
opened (its record with ``status: running`` and an empty ``items`` list), each
finished item appended inside it the same way, and the record rewritten once
when the step ends, its items then in item order. At the end the whole manifest
is written once more, atomically (temporary file + rename), with the final
status, every step of the runbook in order, and the outputs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets as _secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

from engine import __version__
from engine.clock import now_rfc3339
from engine.errors import ManifestError
from engine.files import atomic_write
from engine.model import StepResult
from engine.redaction import Redactor

__all__ = [
    "ManifestWriter",
    "new_run_id",
    "now_rfc3339",
    "request_sha256",
    "step_record",
    "item_record",
    "GitProbe",
    "git_info",
    "header",
    "read_manifest",
    "scrubbed_line",
]


def new_run_id() -> str:
    """A sortable, unique run id: ``20261123T093512Z-3f9a2c``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + _secrets.token_hex(3)


_COMPACT = json.JSONEncoder(ensure_ascii=False, default=str, separators=(",", ":"))
_CANONICAL = json.JSONEncoder(sort_keys=True, default=str, separators=(",", ":"))


def _dumps(value: Any, indent: int | None = None) -> str:
    if indent is None:
        return _COMPACT.encode(value)
    return json.dumps(value, ensure_ascii=False, default=str, indent=indent)


def request_sha256(request: Any, target: str = "") -> str:
    """The hash of a (redacted) request and where it goes: same request, same hash.

    ``target`` names the endpoint (a provider's base URL, project and environment), so a
    resume against another environment does not take a step for done.
    """
    return hashlib.sha256(_CANONICAL.encode([target, request]).encode("utf-8")).hexdigest()


class GitProbe:
    """``git status`` of a runbook's file, started at once and read when the manifest begins.

    Git runs while the runbook is loaded and validated, so a run does not wait for it.
    """

    def __init__(self, path: str) -> None:
        folder = os.path.dirname(os.path.abspath(path))
        try:
            self._proc: subprocess.Popen[str] | None = subprocess.Popen(
                ["git", "-C", folder, "status", "--porcelain=v2", "--branch", "--", os.path.basename(path)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            )
        except OSError:
            self._proc = None

    def result(self) -> dict[str, Any] | None:
        """The commit of the repository holding the file and whether the file differs from it."""
        if self._proc is None:
            return None
        try:
            out, _ = self._proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.communicate()
            return None
        finally:
            proc, self._proc = self._proc, None
        if proc.returncode != 0:
            return None
        commit: str | None = None
        dirty = False
        for line in out.splitlines():
            if line.startswith("# branch.oid "):
                oid = line.split()[2]
                commit = None if oid == "(initial)" else oid
            elif line and not line.startswith("#"):
                dirty = True
        return {"commit": commit, "dirty": dirty}


def git_info(path: str) -> dict[str, Any] | None:
    """The commit of the repository holding ``path`` and whether the file differs from it."""
    return GitProbe(path).result()


def step_record(result: StepResult) -> dict[str, Any]:
    """A step as the manifest records it (before scrubbing: see :func:`scrubbed_line`); a
    ``for_each`` step's record has no ``items`` here (the journal holds them)."""
    return {**result.step.identity(), **_result_fields(result)}


def item_record(result: StepResult) -> dict[str, Any]:
    """An item of a ``for_each`` step as the manifest records it: its index first (the journal
    puts a finished step's items in order by it); an item that called a runbook, its steps."""
    record = {"index": result.index, **_result_fields(result)}
    if isinstance(result.children, list):
        record["children"] = result.children
    return record


def _result_fields(result: StepResult) -> dict[str, Any]:
    record: dict[str, Any] = {
        "status": result.status.value,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "duration_ms": result.duration_ms,
        "attempts": [
            {
                "number": a.number,
                "started_at": a.started_at,
                "duration_ms": a.duration_ms,
                "http_status": a.http_status,
                "error": a.error,
            }
            for a in result.attempts
        ],
        "request": result.request,
        "request_sha256": result.request_sha256,
        "output": result.output,
        "exports": result.exports,
        "logs": result.logs,
        "run_id": result.run_id,
        "error": result.error.to_json() if result.error else None,
    }
    if result.extra:
        record["extra"] = result.extra
    if result.reused_from:
        record["reused_from"] = result.reused_from
    return record


def scrubbed_line(record: dict[str, Any], redactor: Redactor) -> tuple[dict[str, Any], bytes]:
    """The record (scrubbed only where a known secret occurs) and its compact JSON line.

    One search over the serialized step instead of a walk over every string of it.
    """
    line = _dumps(record)
    if redactor.found_in(line):
        record = redactor.scrub(record)
        line = _dumps(record)
    return record, line.encode("utf-8")


def header(run_id: str, started_at: str, runbook_path: str, runbook_name: str, sha256: str,
           vars: dict[str, Any], git: dict[str, Any] | None, *, resumed_from: str | None = None,
           emulated: bool = False) -> dict[str, Any]:
    """A manifest with no steps yet and ``run.status: running``; ``git`` from :class:`GitProbe`."""
    run: dict[str, Any] = {
        "id": run_id,
        "status": "running",
        "started_at": started_at,
        "finished_at": None,
        "duration_ms": None,
        "resumed_from": resumed_from,
    }
    if emulated:
        run["emulated"] = True
    return {
        "manifest_version": 1,
        "engine": {"name": "runbook", "version": __version__},
        "run": run,
        "runbook": {"path": runbook_path, "name": runbook_name, "sha256": sha256,
                    "git": git},
        "vars": vars,
        "steps": [],
        "outputs": {},
    }


def read_manifest(path: str) -> dict[str, Any]:
    """A manifest of ours, checked against the manifest schema; else :class:`ManifestError`.

    The schema is checked before anything reads a field, so a manifest of any shape (a
    list, ``"engine": "x"``, a null where an object belongs) is a refusal that names the
    field, never a crash.
    """

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not a JSON number")

    def where(error: Any) -> str:
        return "/".join(str(p) for p in error.absolute_path) or "manifest"

    def brief(text: str, width: int = 160) -> str:
        return text if len(text) <= width else text[:width - 1] + "…"

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh, parse_constant=no_constant)
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the manifest: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not a JSON manifest (truncated?): {brief(str(exc))}") from None
    except ValueError as exc:  # NaN, a number of more than 4,300 digits, bytes that are not UTF-8
        raise ManifestError(f"{path}: not a JSON manifest: {brief(str(exc))}") from None
    except RecursionError:
        raise ManifestError(f"{path}: not a runbook manifest: its JSON is nested too deeply") from None
    if not isinstance(data, dict):
        kind = ("a list" if isinstance(data, list) else "null" if data is None
                else "a boolean" if isinstance(data, bool) else "a string" if isinstance(data, str) else "a number")
        raise ManifestError(f"{path}: not a runbook manifest: it holds {kind}, not a JSON object")
    from engine.schemas import validator

    errors = list(validator("manifest.schema.json").iter_errors(data))
    if not errors:
        return data
    by_field = {tuple(e.absolute_path): e for e in reversed(errors)}
    engine = data.get("engine")
    if not isinstance(engine, dict) or engine.get("name") != "runbook":
        error = by_field.get(("engine", "name")) or by_field.get(("engine",))
        detail = f": {where(error)}: {brief(error.message)}" if error is not None else ": it has no engine"
        raise ManifestError(f"{path}: not a runbook manifest{detail}")
    if ("manifest_version",) in by_field:
        raise ManifestError(
            f"{path}: manifest version {brief(repr(data.get('manifest_version')), 40)}; "
            "this runbook reads version 1"
        )
    error = min(errors, key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path]))
    raise ManifestError(f"{path}: not a valid manifest: {where(error)}: {brief(error.message)}")


def _frame(manifest: dict[str, Any]) -> tuple[bytes, bytes]:
    """The bytes before the first step and after the last one.

    Everything but the steps is indented; each step is one compact line (the
    C JSON encoder; indenting thousands of steps would cost more than the run).
    """
    head = {k: v for k, v in manifest.items() if k not in ("steps", "outputs")}
    prefix = _dumps(head, indent=2)[:-2] + ',\n  "steps": ['
    outputs = _dumps(manifest.get("outputs") or {}, indent=2).replace("\n", "\n  ")
    trailer = '\n  ],\n  "outputs": ' + outputs + "\n}\n"
    return prefix.encode("utf-8"), trailer.encode("utf-8")


class _Open:
    """A record open in the journal: where it starts, where its parts do, their key, how many."""

    __slots__ = ("start", "parts_at", "key", "count")

    def __init__(self, start: int, parts_at: int, key: str) -> None:
        self.start, self.parts_at, self.key, self.count = start, parts_at, key, 0


_INDEX = re.compile(rb'\{"index":([0-9]+)')


def _item_index(line: bytes) -> int:
    match = _INDEX.match(line)
    return int(match.group(1)) if match else -1


class ManifestWriter:
    """Keeps one manifest file valid while a run appends to it."""

    def __init__(self, path: str, manifest: dict[str, Any]) -> None:
        self.path = path
        self._fd = -1
        prefix, self._trailer = _frame(manifest)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            atomic_write(path, prefix + self._trailer)
            self._fd = os.open(path, os.O_RDWR)
        except OSError as exc:  # checked before the run began; this is a race or a full disk
            raise ManifestError(f"the manifest {path}: cannot write it: {exc.strerror or exc}") from None
        self._start = self._offset = len(prefix)
        self._count = 0
        self._open: list[_Open] = []  # the records open now, outermost first

    def _gap(self) -> bytes:
        """What goes before the next record in the innermost open list."""
        if not self._open:
            return b",\n    " if self._count else b"\n    "
        frame = self._open[-1]
        return (b"," if frame.count else b"") + b"\n" + b"  " * (len(self._open) + 2)

    def _closing(self) -> bytes:
        """The bytes that close every open record, innermost first, then the manifest."""
        return b"".join(b"\n" + b"  " * (depth + 2) + b"]}" for depth in range(len(self._open) - 1, -1, -1)) \
            + self._trailer

    def _counted(self) -> None:
        if self._open:
            self._open[-1].count += 1
        else:
            self._count += 1

    def append(self, line: bytes) -> None:
        """Record one finished step (its compact JSON line), in the innermost open record's list
        if one is open: one write, proportional to its size."""
        data = self._gap() + line
        os.pwrite(self._fd, data + self._closing(), self._offset)
        self._offset += len(data)
        self._counted()

    def open_step(self, line: bytes, key: str = "items") -> None:
        """Begin the record of a step whose parts follow it (a ``for_each`` step's ``items``, a
        called runbook's ``children``), given as its compact JSON line without them; each part is
        :meth:`append`-ed until :meth:`close_step`."""
        start = self._offset
        data = self._gap() + line[:-1] + b',"' + key.encode() + b'":['
        self._counted()
        self._open.append(_Open(start, start + len(data), key))
        self._offset += len(data)
        os.pwrite(self._fd, data + self._closing(), start)

    def append_item(self, line: bytes) -> None:
        """Record one finished item of the open ``for_each`` step (its JSON line, index first)."""
        self.append(line)

    def close_step(self, line: bytes) -> None:
        """End the innermost open record with its final line (compact JSON, without its parts):
        its parts, read back from the file, follow (items in item order)."""
        if not self._open:
            raise ValueError("no step is open")
        frame = self._open.pop()
        held = os.pread(self._fd, self._offset - frame.parts_at, frame.parts_at) if self._offset > frame.parts_at \
            else b""
        if frame.key == "items":  # each item is one line (compact JSON holds no newline)
            lines = sorted((piece.strip().rstrip(b",") for piece in held.split(b"\n") if piece.strip(b", ")),
                           key=_item_index)
            indent = b"\n" + b"  " * (len(self._open) + 3)
            held = b",".join(indent + piece for piece in lines)
        head = os.pread(self._fd, frame.parts_at - frame.start, frame.start)
        gap = head[:len(head) - len(head.lstrip(b",\n "))]  # the separator before the record
        data = gap + line[:-1] + b',"' + frame.key.encode() + b'":[' + held \
            + b"\n" + b"  " * (len(self._open) + 2) + b"]}"
        os.pwrite(self._fd, data + self._closing(), frame.start)
        self._offset = frame.start + len(data)
        os.ftruncate(self._fd, self._offset + len(self._closing()))

    def finish(self, manifest: dict[str, Any]) -> None:
        """Write the final manifest atomically, its steps copied from the journal on disk a
        megabyte at a time (they are not kept in memory); close."""
        prefix, trailer = _frame(manifest)
        pos, end = self._start, self._offset

        def chunks() -> Iterator[bytes]:
            nonlocal pos
            yield prefix
            while pos < end:
                chunk = os.pread(self._fd, min(1 << 20, end - pos), pos)
                if not chunk:
                    break
                pos += len(chunk)
                yield chunk
            yield trailer

        try:
            atomic_write(self.path, chunks())
        finally:
            self.close()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
