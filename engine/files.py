"""Files a run writes (the manifest, reports): checked before anything is sent, written atomically.

A path that cannot be written (``/proc/m.json``, a parent that is a file, a read-only or
missing folder, a full disk) is the machine's problem, not a bug: :func:`check_writable`
says so with the path and the reason (exit 2) before the first step, so a run never sends
its steps and then loses their record.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable

from engine.errors import RunbookError

__all__ = ["check_writable", "atomic_write"]


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable(path: str, what: str) -> None:
    """Raise :class:`RunbookError` unless ``path`` can be written (creating its folder).

    A symbolic link is refused: the manifest and JUnit are replaced whole and the summary
    is appended to, and neither may write through a link someone planted.
    """
    if os.path.islink(path):
        raise RunbookError(f"{what} {path}: is a symbolic link; name the file itself; nothing was sent")
    if os.path.isdir(path):
        raise RunbookError(f"{what} {path}: is a directory; nothing was sent")
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise RunbookError(f"{what} {path}: cannot create the folder {folder}: {_reason(exc)}; "
                           "nothing was sent") from None
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".runbook-", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
        if os.path.exists(path):
            with open(path, "ab"):
                pass
    except OSError as exc:
        raise RunbookError(f"{what} {path}: cannot write there: {_reason(exc)}; nothing was sent") from None


def atomic_write(path: str, data: bytes | Iterable[bytes]) -> None:
    """Replace ``path`` with ``data`` (bytes, or chunks of bytes) at once: a temporary file
    created exclusively in the same folder (never a predictable name, never through a
    symlink), then renamed over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            for chunk in (data,) if isinstance(data, bytes) else data:
                fh.write(chunk)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
