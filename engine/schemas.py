"""Where the JSON Schema files are, and their compiled validators (built once)."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from engine.conformance import SchemaChecker

__all__ = ["schema_dir", "load_schema", "validator"]


def schema_dir() -> Path:
    """The schemas folder: inside the installed package, or at the repository top level."""
    here = Path(__file__).resolve().parent
    installed = here / "schemas"
    if (installed / "runbook.schema.json").is_file():
        return installed
    return here.parent / "schemas"


@cache
def load_schema(relative: str) -> dict[str, Any]:
    """Parse a schema file such as ``runbook.schema.json`` or ``providers/http.json``."""
    with open(schema_dir() / relative, encoding="utf-8") as fh:
        return json.load(fh)


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every local ``#/$defs/X`` reference replaced by its definition.

    Our schemas are not recursive, so this terminates; it spares jsonschema a
    reference lookup per step and property (a third of validation time).
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            return _inline_refs(defs[ref[len("#/$defs/"):]], defs)
        return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    return node


@cache
def validator(relative: str, pointer: str = "") -> SchemaChecker:
    """The checker of a schema file (or of a key path inside it), built once."""
    schema = load_schema(relative)
    for part in filter(None, pointer.split("/")):
        schema = schema[part]
    return SchemaChecker(_inline_refs(schema, schema.get("$defs", {})))
