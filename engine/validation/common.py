"""What every pass of validation shares: the breadcrumb that names a field, and list items."""

from __future__ import annotations

from typing import Any

from engine.loader import Path
from engine.templating import field_name

__all__ = ["label", "items"]


def items(value: Any) -> list[Any]:
    """``value`` when it is a list, else no items: the schema pass says what it is instead."""
    return value if isinstance(value, list) else []


def label(data: Any, path: Path) -> str:
    """A breadcrumb for ``path``: ``steps[1] (notify) with.version``."""
    if not path:
        return "runbook"
    head, rest = "", list(path)
    if len(path) >= 2 and path[0] in ("steps", "finally") and isinstance(path[1], int):
        head = f"{path[0]}[{path[1]}]"
        try:
            sid = data[path[0]][path[1]].get("id")
        except (KeyError, IndexError, TypeError, AttributeError):
            sid = None
        if isinstance(sid, str) and sid:
            head += f" ({sid})"
        rest = list(path[2:])
    tail = field_name(tuple(rest))
    return f"{head} {tail}".strip() if head else tail
