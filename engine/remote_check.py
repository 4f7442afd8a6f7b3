"""Inputs checked against the actions' own schemas, before anything is sent.

For each step that runs a catalog or saved action (Membrane ``id``/``key``, Pipedream ``id``)
with a literal selector, the action's definition is fetched once (Membrane ``GET
/actions/{id or key}`` -> ``inputSchema``; Pipedream ``GET .../actions/{key}`` ->
``configurable_props``: names, ``optional``, types) and the step's ``input`` is checked
against it: statically where the input is literal (a templated value is skipped, but a
required key that is missing is not), and once rendered just before that step is sent (the
provider checks it then: see ``expect_input`` of the Membrane and Pipedream providers).

Definitions are cached under ``.runbook/cache/remote/<provider type>/`` (one JSON file per base
URL, action and version: the definition and when it was fetched; never a credential), for
``RUNBOOK_REMOTE_CACHE_TTL`` seconds (default 3600); ``--refresh`` fetches again.

The command that asks for the check passes its :class:`RemoteCheck` to
:func:`engine.preflight.preflight` (``validate --remote``, ``plan --remote``; ``run`` through
engine/session.py and, for a runbook it calls, engine/runner.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from engine.errors import Problem
from engine.model import Runbook, Step
from engine.providers.base import Provider, ProviderError

__all__ = ["RemoteCheck", "Resolved", "Checked", "check_runbook", "input_problems", "resolve"]

DEFAULT_TTL = 3600.0


@dataclass(frozen=True)
class RemoteCheck:
    """How the check runs, passed by the command that asks for it (``run`` unless
    ``--no-remote-check``; ``validate --remote``; ``plan --remote``): ``refresh`` ignores the
    cache (``--refresh``); ``cache_dir`` is where definitions are kept."""

    refresh: bool = False
    cache_dir: str = os.path.join(".runbook", "cache", "remote")
    cached: bool = True  # False: neither read nor written (the emulator's, whose port changes every run)


@dataclass(frozen=True)
class Resolved:
    """The definition a step's action resolved to: what ``plan`` shows and inputs are checked
    against (``schema``: Membrane's inputSchema; ``props``: Pipedream's configurable_props)."""

    provider_type: str
    action: str
    name: str
    version: str
    schema: Any = None
    props: Any = None
    cached: bool = False


class Checked(NamedTuple):
    """What :func:`check_runbook` found: the problems, and what each checked step's action
    resolved to (step id -> :class:`Resolved`; ``plan`` shows it)."""

    problems: list[Problem]
    resolved: dict[str, Resolved]


def _literal(value: Any) -> bool:
    """Whether ``value`` holds no template, however deep."""
    if isinstance(value, str):
        return "{{" not in value and "{%" not in value
    if isinstance(value, dict):
        return all(_literal(k) and _literal(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_literal(v) for v in value)
    return True


def _targets(runbook: Runbook) -> Iterator[Step]:
    for step in runbook.steps + runbook.finally_steps:
        if step.child is not None:
            continue
        if step.provider_type == "membrane" and step.style in ("id", "key") and isinstance(step.target, str) \
                and _literal(step.target):
            yield step
        elif step.provider_type == "pipedream" and step.style == "id" and isinstance(step.target, str) \
                and _literal(step.target) and _literal(step.options.get("version")):
            yield step


def _cache_file(settings: RemoteCheck, provider_type: str, base: str, action: str, version: str | None) -> Path:
    digest = hashlib.sha256(f"{base}\n{action}\n{version or ''}".encode()).hexdigest()[:20]
    return Path(settings.cache_dir) / provider_type / f"{digest}.json"


def _ttl() -> float:
    try:
        return float(os.environ.get("RUNBOOK_REMOTE_CACHE_TTL", DEFAULT_TTL))
    except ValueError:
        return DEFAULT_TTL


def resolve(provider: Provider, provider_type: str, style: str, action: str, version: str | None,
            timeout: float | None, settings: RemoteCheck) -> Resolved:
    """The definition of ``action``: from the cache when it is fresh, else from the service."""
    fetch = getattr(provider, "fetch_definition", None)
    if fetch is None:
        raise ProviderError("configuration", f"provider type {provider_type!r} cannot fetch action definitions")
    base = provider.target()
    path = _cache_file(settings, provider_type, base, action, version)
    if settings.cached and not settings.refresh:
        try:
            cached = json.loads(path.read_text(encoding="utf-8"))
            if time.time() - float(cached["fetched_at"]) < _ttl():
                return Resolved(provider_type, action, cached["definition"]["name"],
                                cached["definition"]["version"], cached["definition"].get("schema"),
                                cached["definition"].get("props"), cached=True)
        except (OSError, ValueError, KeyError, TypeError):
            pass
    definition: dict[str, Any] = fetch(style, action, version, timeout)
    if not settings.cached:
        return Resolved(provider_type, action, definition["name"], definition["version"], definition.get("schema"),
                        definition.get("props"))
    try:
        if settings.cache_dir.startswith(".runbook" + os.sep):
            from engine.session import runbook_folder

            runbook_folder()  # .runbook/ made with its .gitignore: the cache is never committed
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"fetched_at": time.time(), "provider": provider_type, "action": action,
                                    "version": version, "definition": definition}, indent=1), encoding="utf-8")
    except OSError:
        pass  # an unwritable cache only costs a fetch next time
    return Resolved(provider_type, action, definition["name"], definition["version"], definition.get("schema"),
                    definition.get("props"))


def input_problems(resolved: Resolved, value: Any, *, partial: bool = False) -> list[tuple[tuple[Any, ...], str]]:
    """What in ``value`` does not match the definition: (path inside the input, message) pairs.
    ``partial``: templated values are not checked (their keys still count as given)."""
    if resolved.props is not None:
        return _props_problems(resolved.props, value, partial)
    if isinstance(resolved.schema, dict) and resolved.schema:
        return _schema_problems(resolved.schema, value, partial)
    return []


def _schema_problems(schema: dict[str, Any], value: Any, partial: bool) -> list[tuple[tuple[Any, ...], str]]:
    from jsonschema import validators

    if partial and isinstance(value, str) and not _literal(value):
        return []  # the whole input is a template: only the rendered check can tell
    checked = {} if value is None else value
    if partial and isinstance(value, dict):
        # a templated value's key is given (so "required" holds), its value unknown: leave it out
        templated = [k for k, v in value.items() if not _literal(v)]
        checked = {k: v for k, v in value.items() if k not in templated}
        schema = {**schema, "required": [r for r in schema.get("required") or [] if r not in templated]}
    validator = validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(checked), key=lambda e: [str(p) for p in e.absolute_path])
    return [(tuple(error.absolute_path), error.message) for error in errors]


def _props_problems(props: list[dict[str, Any]], value: Any, partial: bool) -> list[tuple[tuple[Any, ...], str]]:
    from engine.emulator.schema_check import PROP_TYPES

    if partial and isinstance(value, str) and not _literal(value):
        return []  # the whole input is a template: only the rendered check can tell
    configured = {} if value is None else value
    if not isinstance(configured, dict):
        return [((), "the input (configured_props) must be a mapping")]
    problems: list[tuple[tuple[Any, ...], str]] = []
    for prop in props:
        name, kind = prop.get("name"), str(prop.get("type"))
        if not isinstance(name, str) or prop.get("readOnly") or kind in ("alert", "dir"):
            continue
        if name not in configured:
            if not prop.get("optional") and "default" not in prop:
                problems.append(((), f"'{name}' is a required prop ({kind})"))
            continue
        item = configured[name]
        if partial and not _literal(item):
            continue
        allowed = PROP_TYPES.get(kind, ())
        if allowed and not any(_json_is(item, t) for t in allowed):
            problems.append(((name,), f"{item!r} is not of type {kind}"))
    return problems


def _json_is(value: Any, json_type: str) -> bool:
    if json_type == "object":
        return isinstance(value, dict)
    if json_type == "array":
        return isinstance(value, list)
    if json_type == "string":
        return isinstance(value, str)
    if json_type == "boolean":
        return isinstance(value, bool)
    if json_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return True


def check_runbook(runbook: Runbook, providers: Mapping[str, Provider], settings: RemoteCheck,
                  timeout: float = 30.0) -> Checked:
    """Fetch (or read from the cache) each action's definition once and check every step's
    literal input against it; arm each provider to check the rendered input before it sends.
    Returns the problems, each at the input field (FILE:LINE:COL), and what each step's action
    resolved to."""
    problems: list[Problem] = []
    resolved: dict[str, Resolved] = {}
    seen: dict[tuple[str, str, str, str | None], Resolved | ProviderError] = {}
    for step in _targets(runbook):
        provider = providers.get(step.provider)
        if provider is None:
            continue
        version = step.options.get("version") if step.provider_type == "pipedream" else None
        key = (step.provider, step.style, step.target, version)
        if key not in seen:
            try:
                seen[key] = resolve(provider, step.provider_type, step.style, step.target, version,
                                    step.timeout or timeout, settings)
            except ProviderError as exc:
                seen[key] = exc
        found = seen[key]
        if isinstance(found, ProviderError) and found.type not in ("client_error", "authentication"):
            continue  # the service could not answer now: the step's own send will say so
        if isinstance(found, ProviderError):
            problems.append(runbook.source.problem(
                step.path + ("dispatch", step.style),
                f"the {step.provider_type} action {step.target!r} could not be resolved: {found.message}"))
            continue
        resolved[step.id] = found
        where = runbook.source.problem(step.path + ("input",), "")
        expect = getattr(provider, "expect_input", None)
        if expect is not None:
            expect(step.style, step.target, found, f"{where.file}:{where.line}:{where.col}")
        for inner, message in input_problems(found, step.input, partial=True):
            problems.append(runbook.source.problem(
                step.path + ("input",) + inner,
                f"input does not match {found.provider_type} action {found.action!r} "
                f"({found.name}, version {found.version}): {message}"))
    return Checked(problems, resolved)
