"""The provider type registry: an explicit dict of built-in types, plus plugins.

Validation needs only a type's metadata (dispatch styles and schemas), which
for built-in types is read from ``schemas/providers/<type>.json`` without
importing the provider's code (or httpx). Third-party types are looked up in
the ``runbook.providers`` entry-point group only when a runbook names a type
that is not built in, since scanning entry points costs start-up time.

A plugin class need not subclass :class:`~engine.providers.base.Provider`: the registry
gives it, once, when it loads it, what the protocol declares and it does not define (a
subclass made here, whose own attributes still come first), and guards its methods, so
that what a plugin raises is reported as the plugin's failure (error type ``plugin``,
naming its distribution and entry point), never as a bug of runbook's. A plugin that
cannot be imported or is not a provider class is a validation error (exit 2).
"""

from __future__ import annotations

import importlib
import os
import types
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple, cast

from engine.model import DISPATCH_STYLES
from engine.schemas import load_schema

if TYPE_CHECKING:  # validation reads types' metadata only: it imports no provider code
    from engine.providers.base import Provider

__all__ = ["BUILTIN", "ENTRY_POINT_GROUP", "TypeInfo", "type_info", "provider_class", "as_provider_class",
           "known_types", "plugin_types", "plugin_failure", "Plugin", "PluginError", "PluginRequests", "blame"]

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


class Plugin(NamedTuple):
    """Where a plugin type comes from, as its errors name it."""

    type_name: str
    entry_point: str  # "crash = crashplugin:CrashProvider"
    distribution: str | None  # "crashplugin 0.1"

    def __str__(self) -> str:
        made_by = f" {self.distribution}" if self.distribution else ""
        return f"the plugin{made_by} (entry point {self.entry_point})"


class _Loaded(NamedTuple):
    plugin: Plugin
    cls: type[Provider] | None  # None: it cannot be used, for the reason in ``failure``
    failure: str | None = None


class PluginError(Exception):
    """A plugin class that cannot be used as a provider type (what is wrong with it)."""


#: Where the engine's own modules are (their frames are not the plugin's).
_ENGINE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep

@cache
def _plugin(name: str) -> _Loaded | None:
    """The plugin registered as type ``name``, loaded once (None: no such entry point)."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name != name:
            continue
        dist = getattr(ep, "dist", None)
        plugin = Plugin(name, f"{ep.name} = {ep.value}",
                        f"{dist.name} {dist.version}" if dist is not None else None)
        try:
            loaded = ep.load()
        except Exception as exc:  # its import failed: the plugin's fault, said as such
            return _Loaded(plugin, None, f"cannot be imported: {blame(exc)}")
        try:
            return _Loaded(plugin, as_provider_class(name, loaded, plugin))
        except PluginError as exc:
            return _Loaded(plugin, None, str(exc))
    return None


def blame(exc: BaseException) -> str:
    """``KeyError: 'api_key' (badplug.py:17 in __init__)``: the exception and the innermost
    frame of the plugin's it came from."""
    import sysconfig
    import traceback

    text = f"{type(exc).__name__}: {exc}"
    not_its_own = ("<", sysconfig.get_paths()["stdlib"], _ENGINE_DIR)  # Python's and runbook's frames
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(not_its_own)]
    if frames:
        last = frames[-1]
        text += f" ({os.path.basename(last.filename)}:{last.lineno} in {last.name})"
    return text


def plugin_failure(name: str) -> str | None:
    """Why provider type ``name``, registered by a plugin, cannot be used (None: it can, or no
    plugin registers it)."""
    if name in BUILTIN:
        return None
    loaded = _plugin(name)
    if loaded is None or loaded.failure is None:
        return None
    return f"provider type {name!r} comes from {loaded.plugin}, which {loaded.failure}"


def plugin_types() -> list[str]:
    """The type names that installed plugins register (their entry points, none imported)."""
    from importlib.metadata import entry_points

    return sorted({ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)} - set(BUILTIN))


#: A plugin's methods whose exceptions are the plugin's (a ProviderError passes as it is).
_GUARDED = ("__init__", "request_body", "build_request", "send", "target", "verify_credentials",
            "replay", "run_log_action")


def _guard(function: Any, where: str, plugin: Plugin | str) -> Any:
    """``function`` with any exception but a ProviderError turned into a ProviderError of type
    ``plugin`` naming the plugin, the method and the line that raised."""
    import functools

    from engine.providers.base import ProviderError

    @functools.wraps(function)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError("plugin", f"{plugin} raised in {where}(): {blame(exc)}") from exc

    return guarded


def _closing(close: Any, plugin: Plugin | str) -> Any:
    """``close`` that, should it raise, warns on stderr (secrets redacted) instead: the run's
    results stand whatever a plugin's clean-up does."""
    import functools
    import sys

    @functools.wraps(close)
    def guarded(self: Any) -> None:
        try:
            close(self)
        except Exception as exc:
            redactor = getattr(self, "_runbook_redactor", None)
            text = f"warning: {plugin} raised in close(): {blame(exc)}"
            sys.stderr.write((redactor.text(text) if redactor is not None else text) + "\n")

    return guarded


def _remembering_redactor(init: Any) -> Any:
    """``__init__`` that keeps the redactor it is given, for :func:`_closing`'s warning."""
    import functools

    @functools.wraps(init)
    def remembering(self: Any, name: str, config: Any, **kwargs: Any) -> None:
        init(self, name, config, **kwargs)
        try:
            self._runbook_redactor = kwargs.get("redactor")
        except AttributeError:  # a class with __slots__: its warning is redacted by nobody
            pass

    return remembering


def _check_class(name: str, cls: Any) -> None:
    """Raise PluginError when ``cls`` cannot be a provider type (the protocol's required parts,
    its dispatch styles and its schemas)."""
    if not isinstance(cls, type):
        raise PluginError(f"does not name a class but {type(cls).__name__} {cls!r}")
    missing = [m for m in ("request_body", "send") if not callable(getattr(cls, m, None))]
    if missing:
        raise PluginError(f"names {cls.__qualname__}: not a provider class (it has no "
                          + " and no ".join(f"{m}()" for m in missing) + ")")
    styles = getattr(cls, "styles", ("api",))
    if isinstance(styles, str) or not all(s in DISPATCH_STYLES for s in styles) or not styles:
        raise PluginError(f"declares styles = {styles!r}: a tuple of {', '.join(DISPATCH_STYLES)}")
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import SchemaError

    for attr in ("config_schema", "options_schema"):
        schema = getattr(cls, attr, {"type": "object"})
        if not isinstance(schema, dict):
            raise PluginError(f"declares {attr} = {schema!r}, not a JSON Schema (a dict)")
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as exc:
            where = "".join(f"[{p!r}]" for p in exc.path)
            raise PluginError(f"declares a {attr} that is not a valid JSON Schema: {attr}{where}: "
                              f"{exc.message}") from None


def as_provider_class(name: str, cls: Any, plugin: Plugin | str | None = None) -> type[Provider]:
    """``cls`` (a plugin's class, written against the Provider protocol) as the engine uses it:
    a subclass of it and of Provider, made once, with

    - the protocol's defaults for whatever it does not define; its capabilities are what it
      implements (``replays`` if it has ``replay``, ``run_logs`` if it has ``run_log_action``);
    - its methods guarded: an exception other than ProviderError is the plugin's failure
      (type ``plugin``, naming ``plugin``), not a bug of runbook's;
    - a ``request_builder`` (for ``runbook plan``) when it has none: the provider itself, built
      from the block as plan renders it, for its own ``request_body``.

    Raises PluginError when ``cls`` cannot be a provider type.
    """
    if getattr(cls, "_runbook_plugin", None) is not None:
        return cast("type[Provider]", cls)  # made here already
    _check_class(name, cls)
    from engine.providers.base import Provider

    origin = plugin if plugin is not None else f"the plugin class {cls.__module__}.{cls.__qualname__}"
    namespace: dict[str, Any] = {
        "type_name": getattr(cls, "type_name", None) or name,
        "replays": callable(getattr(cls, "replay", None)),
        "run_logs": callable(getattr(cls, "run_log_action", None)),
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "_runbook_plugin": origin,
    }
    for method in _GUARDED:
        own = getattr(cls, method, None)
        if callable(own) and own is not getattr(Provider, method, None) and own is not object.__init__:
            namespace[method] = _guard(own, method, origin)
    if callable(getattr(cls, "close", None)):
        namespace["close"] = _closing(cls.close, origin)
    namespace["__init__"] = _remembering_redactor(namespace.get("__init__", cls.__init__))
    emulated = getattr(cls, "emulated_config", None)
    if callable(emulated) and emulated is not Provider.emulated_config:
        namespace["emulated_config"] = staticmethod(_guard(emulated, "emulated_config", origin))
    builder = getattr(cls, "request_builder", None)  # bound to cls, when it has its own
    default = getattr(Provider.request_builder, "__func__", None)
    if callable(builder) and getattr(builder, "__func__", None) is not default:
        namespace["request_builder"] = staticmethod(_guard(builder, "request_builder", origin))
    else:
        namespace["request_builder"] = classmethod(_plan_requests)
    return cast("type[Provider]", types.new_class(cls.__name__, (cls, Provider), {},
                                               lambda ns: ns.update(namespace)))


class PluginRequests:
    """A plugin provider built for ``runbook plan``: its own ``target`` and ``request_body``;
    it says nothing of how it sends (``build_request`` is None)."""

    def __init__(self, provider: Provider) -> None:
        self.provider = provider

    def target(self) -> str:
        return self.provider.target()

    def request_body(self, call: Any) -> Any:
        return self.provider.request_body(call)

    def build_request(self, call: Any) -> None:
        return None

    def close(self) -> None:
        self.provider.close()


def _plan_requests(cls: type[Provider], name: str, config: Any, *, env: Any) -> PluginRequests:
    from engine.redaction import Redactor

    return PluginRequests(cls(name, config, env=env, redactor=Redactor()))


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
    loaded = _plugin(name)
    return _from_class(name, loaded.cls) if loaded is not None and loaded.cls is not None else None


def provider_class(name: str) -> type[Provider]:
    """The class implementing provider type ``name`` (imports it)."""
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        return cast("type[Provider]", getattr(importlib.import_module(module), attr))
    loaded = _plugin(name)
    if loaded is None or loaded.cls is None:
        raise KeyError(name)
    return loaded.cls


def known_types() -> list[str]:
    """Built-in type names (plugins are not scanned for this: see :func:`plugin_types`)."""
    return sorted(BUILTIN)
