"""The provider type registry: an explicit dict of built-in types, plus plugins.

Validation needs only a type's metadata (dispatch styles and schemas), which
for built-in types is read from ``schemas/providers/<type>.json`` without
importing the provider's code (or httpx). Third-party types are looked up in
the ``runbook.providers`` entry-point group only when a runbook names a type
that is not built in, since scanning entry points costs start-up time.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any, NamedTuple

from engine.schemas import load_schema

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "TypeInfo", "type_info", "provider_class", "known_types"]

ENTRY_POINT_GROUP = "runbook.providers"

#: Built-in provider types: name -> "module:Class" (imported only to run).
BUILTIN: dict[str, str] = {
    "membrane": "engine.providers.membrane:MembraneProvider",
    "pipedream": "engine.providers.pipedream:PipedreamProvider",
    "http": "engine.providers.http:HttpProvider",
}


class TypeInfo(NamedTuple):
    """What validation needs to know about a provider type."""

    name: str
    styles: tuple[str, ...]
    api_targets: tuple[str, ...]
    config_schema: dict[str, Any]
    options_schema: dict[str, Any]
    style_hint: str | None
    #: Per dispatch style: ``{"allowed": [...], "required": [...]}`` option names (``with:``).
    style_options: dict[str, dict[str, list[str]]]
    #: Options that a step may leave to the provider block's config key of the same name.
    options_from_config: tuple[str, ...]
    #: Keys of ``steps.<id>`` beyond the common ones (Pipedream's ``stash_id``).
    step_extras: tuple[str, ...] = ()
    #: Per dispatch style, the only keys ``steps.<id>.exports`` can have (a style not listed: any).
    exports_keys: dict[str, tuple[str, ...]] = {}


def _from_class(name: str, cls: Any) -> TypeInfo:
    return TypeInfo(
        name=name,
        styles=tuple(getattr(cls, "styles", ("api",))),
        api_targets=tuple(getattr(cls, "api_targets", ("path", "url"))),
        config_schema=dict(getattr(cls, "config_schema", {"type": "object"})),
        options_schema=dict(getattr(cls, "options_schema", {"type": "object"})),
        style_hint=getattr(cls, "style_hint", None),
        style_options=dict(getattr(cls, "style_options", {})),
        options_from_config=tuple(getattr(cls, "options_from_config", ())),
        step_extras=tuple(getattr(cls, "step_extras", ())),
    )


@cache
def _plugin(name: str) -> Any:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    return None


@cache
def type_info(name: str) -> TypeInfo | None:
    """Metadata of a provider type, or None when no such type exists."""
    if name in BUILTIN:
        meta = load_schema(f"providers/{name}.json")
        return TypeInfo(
            name=name,
            styles=tuple(meta["styles"]),
            api_targets=tuple(meta["api_targets"]),
            config_schema=meta["config"],
            options_schema=meta["options"],
            style_hint=meta.get("style_hint"),
            style_options=meta.get("style_options", {}),
            options_from_config=tuple(meta.get("options_from_config", ())),
            step_extras=tuple(meta.get("step_context", {}).get("extras", ())),
            exports_keys={style: tuple(keys)
                          for style, keys in meta.get("step_context", {}).get("exports", {}).items()},
        )
    cls = _plugin(name)
    return _from_class(name, cls) if cls is not None else None


def provider_class(name: str) -> Any:
    """The class implementing provider type ``name`` (imports it)."""
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), attr)
    cls = _plugin(name)
    if cls is None:
        raise KeyError(name)
    return cls


def known_types() -> list[str]:
    """Built-in type names (for suggestions; plugins are not scanned for this)."""
    return sorted(BUILTIN)
