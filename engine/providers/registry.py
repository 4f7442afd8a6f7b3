"""The provider type registry: an explicit dict of built-in types, plus plugins.

Validation needs only a type's metadata (dispatch styles and schemas), which
for built-in types is read from ``schemas/providers/<type>.json`` without
importing the provider's code (or httpx). Third-party types are looked up in
the ``runbook.providers`` entry-point group only when a runbook names a type
that is not built in, since scanning entry points costs start-up time.

A plugin class need not subclass :class:`~engine.providers.base.Provider`: the registry
gives it, once, when it loads it, what the protocol declares and it does not define (a
subclass made here, whose own attributes still come first).
"""

from __future__ import annotations

import importlib
import types
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from engine.schemas import load_schema

if TYPE_CHECKING:  # validation reads types' metadata only: it imports no provider code
    from engine.providers.base import Provider

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "TypeInfo", "type_info", "provider_class", "as_provider_class",
           "known_types"]

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


def _from_class(name: str, cls: type[Provider]) -> TypeInfo:
    return TypeInfo(
        name=name,
        styles=tuple(cls.styles),
        api_targets=tuple(cls.api_targets),
        config_schema=dict(cls.config_schema),
        options_schema=dict(cls.options_schema),
        style_hint=cls.style_hint,
        style_options=dict(cls.style_options),
        options_from_config=tuple(cls.options_from_config),
        step_extras=tuple(cls.step_extras),
    )


@cache
def _plugin(name: str) -> type[Provider] | None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return as_provider_class(name, ep.load())
    return None


def as_provider_class(name: str, cls: Any) -> type[Provider]:
    """``cls`` (a plugin's class, written against the Provider protocol) with the protocol's
    defaults for whatever it does not define: a subclass of it and of Provider, made once.

    Its capabilities are what it implements: ``replays`` if it has ``replay``, ``run_logs``
    if it has ``run_log_action``. A class that already subclasses Provider is used as it is.
    """
    if not isinstance(cls, type):
        raise TypeError(f"the entry point {name!r} of {ENTRY_POINT_GROUP} is not a class: {cls!r}")
    from engine.providers.base import Provider

    if Provider in cls.__mro__:
        return cast("type[Provider]", cls)
    # The only probing of a provider: once, here, for a class that did not declare them.
    declared = {
        "type_name": getattr(cls, "type_name", name),
        "replays": callable(getattr(cls, "replay", None)),
        "run_logs": callable(getattr(cls, "run_log_action", None)),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    return cast("type[Provider]", types.new_class(cls.__name__, (cls, Provider), {},
                                               lambda ns: ns.update(declared)))


@cache
def type_info(name: str) -> TypeInfo | None:
    """Metadata of a provider type, or None when no such type exists."""
    if name in BUILTIN:
        schema = load_schema(f"providers/{name}.json")  # a JSON Schema of the provider block
        meta = schema["x-runbook"]  # what is not JSON Schema: dispatch styles, step context, ...
        return TypeInfo(
            name=name,
            styles=tuple(meta["styles"]),
            api_targets=tuple(meta["api_targets"]),
            config_schema=schema["$defs"]["config"],
            options_schema=schema["$defs"]["options"],
            style_hint=meta.get("style_hint"),
            style_options=meta.get("style_options", {}),
            options_from_config=tuple(meta.get("options_from_config", ())),
            step_extras=tuple(meta.get("step_context", {}).get("extras", ())),
            exports_keys={style: tuple(keys)
                          for style, keys in meta.get("step_context", {}).get("exports", {}).items()},
        )
    cls = _plugin(name)
    return _from_class(name, cls) if cls is not None else None


def provider_class(name: str) -> type[Provider]:
    """The class implementing provider type ``name`` (imports it)."""
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return cast("type[Provider]", getattr(importlib.import_module(module), attr))
    cls = _plugin(name)
    if cls is None:
        raise KeyError(name)
    return cls


def known_types() -> list[str]:
    """Built-in type names (for suggestions; plugins are not scanned for this)."""
    return sorted(BUILTIN)
