"""Manifests through Temporal's payload limit (engine/temporal/packing.py): small ones as they
are, large ones compressed, one too large even so refused with the reason. The real round trip
through a workflow is tests/test_temporal.py's."""

from __future__ import annotations

import json
import os

import pytest

from engine.temporal.packing import PACK_OVER, PAYLOAD_LIMIT, TooLarge, packed, unpacked


def test_a_small_manifest_travels_as_it_is() -> None:
    manifest = {"run": {"status": "succeeded"}, "steps": [{"id": "a", "output": "é"}]}
    assert packed(manifest) is manifest and unpacked(manifest) is manifest
    assert unpacked(None) is None


def test_a_large_one_travels_compressed_and_comes_back_whole() -> None:
    items = [{"index": i, "status": "succeeded", "request": {"id": "add", "input": {"n": i, "pad": "x" * 1200}},
              "output": {"n": i}} for i in range(3000)]
    manifest = {"run": {"status": "succeeded"}, "steps": [{"id": "each", "items": items}]}
    size = len(json.dumps(manifest).encode())
    assert size > PAYLOAD_LIMIT  # over Temporal's limit as JSON
    data = packed(manifest)
    assert isinstance(data, bytes) and len(data) < PACK_OVER < size
    assert unpacked(data) == manifest


def test_one_too_large_even_compressed_is_refused_saying_so() -> None:
    noise = os.urandom(PAYLOAD_LIMIT).hex()  # hex of random bytes: compresses to about half
    with pytest.raises(TooLarge, match=r"the manifest is 4\.2 MB of JSON \(2\.\d MB compressed\): over Temporal's "
                                       r"payload limit of 2\.1 MB; split the run"):
        packed({"steps": [{"output": noise}]})
