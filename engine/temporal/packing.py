"""Manifests through Temporal's payload limit: large ones travel compressed.

A workflow's result and its queries' answers are each one payload, which Temporal refuses over
2 MB (and warns about over 512 KB), and a run's manifest grows with its steps and items (about
550 bytes an item: a ``for_each`` of 4,000 items is over the limit as JSON). A value whose JSON
is over :data:`PACK_OVER` bytes therefore travels as zlib-compressed JSON (binary, about a fifth
of the size; what the manifest's repeated keys and stamps compress to); a smaller one as it is,
so the Temporal UI shows it. :func:`unpacked` reads either. One still over the limit once packed
is refused with a clear error (:func:`packed`) rather than left for the worker to retry forever.

Pure and deterministic: the workflow uses it inside the sandbox.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

__all__ = ["PACK_OVER", "PAYLOAD_LIMIT", "TooLarge", "packed", "unpacked"]

#: JSON bigger than this (bytes) is compressed: half Temporal's warning size, well under its limit.
PACK_OVER = 256 * 1024
#: Temporal's default limit on one payload (the blob size error limit), with room for its envelope.
PAYLOAD_LIMIT = 2 * 1024 * 1024 - 4096


class TooLarge(ValueError):
    """A value over Temporal's payload limit even compressed."""


def packed(value: Any, what: str = "the manifest") -> Any:
    """``value`` as it is when its JSON is small, else its JSON compressed (bytes).

    Raises :class:`TooLarge` when even that is over :data:`PAYLOAD_LIMIT`."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    if len(text) <= PACK_OVER:
        return value
    data = zlib.compress(text, 6)
    if len(data) > PAYLOAD_LIMIT:
        raise TooLarge(f"{what} is {len(text) / 1e6:.1f} MB of JSON ({len(data) / 1e6:.1f} MB compressed): over "
                       f"Temporal's payload limit of {PAYLOAD_LIMIT / 1e6:.1f} MB; split the run (fewer for_each "
                       "items per run: a --batch-file row each)")
    return data


def unpacked(value: Any) -> Any:
    """What :func:`packed` was given."""
    if isinstance(value, (bytes, bytearray)):
        return json.loads(zlib.decompress(value))
    return value
