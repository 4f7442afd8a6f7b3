"""Validation of a loaded runbook: a JSON Schema pass, then a semantic pass.

Both passes gather every problem of the file, each located at FILE:LINE:COL
and named by a breadcrumb (``steps[1] (notify) with.version``), so a user sees
all mistakes at once. :func:`load_runbook` is the whole front half of the
pipeline: load -> validate -> build the frozen :class:`~engine.model.Runbook`.
Nothing here imports httpx or a provider's code.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from engine.conformance import SchemaChecker
from engine.errors import LocatedErrors, Problem
from engine.loader import Document, Path, SourceMap, SparseSourceMap, load_file, load_text
from engine.model import STEP_ATTRIBUTES, ProviderSpec, RetryPolicy, Runbook, Step, parse_duration
from engine.providers.registry import BUILTIN, TypeInfo, known_types, type_info
from engine.schemas import validator
from engine.templating import (
    CONTEXT_NAMES,
    KEPT_GLOBALS,
    TemplateError,
    Templates,
    field_name,
    is_template,
    iter_templates,
    unsafe_attribute,
)

__all__ = [
    "validate_document",
    "lint_document",
    "build_runbook",
    "load_runbook",
    "load_checked",
    "check_file",
    "schema_problems",
    "suggest",
]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The longest timeout or delay (seconds): a year.
MAX_DURATION = 366 * 24 * 3600


def _gc_paused(func: _F) -> _F:
    """Run ``func`` with the cyclic garbage collector paused.

    Loading allocates tens of thousands of small containers, keeps all of them
    and makes no cycles; each automatic collection would walk the growing heap
    again, which made loading a 2,000-step runbook about twice as slow.
    """

    @functools.wraps(func)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return func(*args, **kwargs)
        gc.disable()
        try:
            return func(*args, **kwargs)
        finally:
            gc.enable()

    return paused  # type: ignore[return-value]


#: Names a template may use: the context, and Jinja's own globals.
_KNOWN_NAMES = frozenset({*CONTEXT_NAMES, *KEPT_GLOBALS, "loop"})
_JSON_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


#: Plain scalars that YAML 1.1 (PyYAML's default, older tools) reads as booleans; in
#: YAML 1.2, which runbook follows, they are strings.
YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})
_YAML12_BOOLEANS = "in YAML 1.2, which runbook reads, only true and false are booleans"


def _bool_fix(word: str) -> str:
    return "true" if word.lower() in ("yes", "on", "y") else "false"


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a candidate is close to ``word``, else ``""``."""
    import difflib  # only a runbook with a mistake needs it

    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _list(value: Any) -> list[Any]:
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


def schema_problems(
    schema_validator: Any,
    instance: Any,
    source: SourceMap,
    data: Any,
    base: Path = (),
    *,
    templated: bool = False,
) -> list[Problem]:
    """Every JSON Schema error of ``instance`` as located problems.

    With ``templated``, errors about a template string are left for run time,
    when the rendered value is checked against the same schema.
    """
    problems: list[Problem] = []
    for err in schema_validator.iter_errors(instance):
        path = base + tuple(err.absolute_path)
        if templated and is_template(err.instance):
            continue
        problems.extend(_convert(err, path, source, data))
    return problems


def _convert(err: Any, path: Path, source: SourceMap, data: Any) -> Iterator[Problem]:
    where = label(data, path)
    kind, inst, schema = err.validator, err.instance, err.schema
    if kind == "additionalProperties" and isinstance(inst, dict):
        allowed = list(schema.get("properties", {}))
        for key in inst:
            if key not in allowed:
                yield source.problem(
                    path + (key,),
                    f"{where}: unknown key {key!r}{suggest(key, allowed)}",
                    key=True,
                )
        return
    if kind == "required" and isinstance(inst, dict):
        for key in err.validator_value:
            if key not in inst:
                yield source.problem(path, f"{where}: missing required key {key!r}")
        return
    if kind == "type":
        expected = err.validator_value
        names = [expected] if isinstance(expected, str) else list(expected)
        want = " or ".join(_JSON_NAMES.get(n, n) for n in names)
        msg = f"{where}: expected {want}, got {_kind(inst)}"
        text = source.scalar_text.get(path)
        if "string" in names and text is not None:
            msg += f"; quote it to keep it as text: \"{text}\""
            if isinstance(inst, (bool, int, float)):
                msg += f" (YAML reads an unquoted {text} as {_kind(inst)})"
        elif "boolean" in names and isinstance(inst, str) and inst.lower() in YAML11_BOOLEANS:
            msg += f" ({inst!r}): {_YAML12_BOOLEANS}; write {_bool_fix(inst)}"
        yield source.problem(path, msg)
        return
    if kind in ("minProperties", "maxProperties") and path[-1:] == ("dispatch",):
        styles = ", ".join(inst) if isinstance(inst, dict) and inst else "none"
        yield source.problem(
            path,
            f"{where}: needs exactly one dispatch style of id, key, api, code (found: {styles})",
        )
        return
    if kind == "enum":
        options = [str(o) for o in err.validator_value]
        hint = suggest(str(inst), options) if isinstance(inst, str) else ""
        yield source.problem(
            path, f"{where}: {inst!r} is not one of {', '.join(options)}{hint}"
        )
        return
    if kind == "const":
        msg = f"{where}: must be {err.validator_value!r}, got {inst!r}"
        if path == ("version",) and isinstance(inst, str) and inst.strip() in ("1", "1.0"):
            msg += "; write version: 1, without quotes"
        yield source.problem(path, msg)
        return
    if kind == "pattern":
        if path[-1:] == ("id",) and len(path) == 3:
            msg = f"{where}: {inst!r} is not a valid step id (letters, digits and _, not starting with a digit)"
        elif "ms|s|m|h" in err.validator_value:
            msg = f"{where}: {inst!r} is not a duration (use e.g. \"500ms\", \"30s\", \"2m\", or seconds)"
        elif "connection|timeout" in err.validator_value:
            msg = f"{where}: {inst!r} is not a retry condition (connection, timeout, 4xx, 5xx or a status code)"
        else:
            msg = f"{where}: {inst!r} does not match the pattern {err.validator_value}"
        yield source.problem(path, msg)
        return
    if kind == "minItems" and path == ("steps",):
        yield source.problem(path, "steps: a runbook needs at least one step")
        return
    if kind == "propertyNames":
        yield source.problem(path, f"{where}: {err.message}")
        return
    yield source.problem(path, f"{where}: {err.message}")


class _Checker:
    """The semantic pass: ids, providers, styles, options and templates."""

    def __init__(self, doc: Document, templates: Templates) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.source = doc.source
        self.templates = templates
        self.problems: list[Problem] = []
        self.provider_types: dict[str, str] = {}
        self._kinds: dict[str, tuple[TypeInfo | None, str | None]] | None = None

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, f"{label(self.data, path)}: {message}", key=key))

    def run(self) -> list[Problem]:
        data = self.data
        if "version" in data and data["version"] == 1 and type(data["version"]) is not int:
            text = self.source.scalar_text.get(("version",), str(data["version"]))
            self.error(("version",), f"must be the integer 1, not {text} (YAML reads {text} as a "
                                     "decimal number): write version: 1")
        self.check_providers()
        self.check_durations()
        main = [s for s in _list(data.get("steps")) if isinstance(s, dict)]
        fin = [s for s in _list(data.get("finally")) if isinstance(s, dict)]
        seen: dict[str, Path] = {}
        for section in ("steps", "finally"):
            for i, step in enumerate(_list(data.get(section))):
                if not isinstance(step, dict) or not isinstance(step.get("id"), str):
                    continue
                sid = step["id"]
                if sid in seen:
                    line = self.source.position(seen[sid])[0]
                    self.error((section, i, "id"), f"duplicate step id {sid!r} (first used on line {line})")
                else:
                    seen[sid] = (section, i, "id")
        main_ids = [s.get("id") for s in main if isinstance(s.get("id"), str)]
        all_ids = set(main_ids) | {s["id"] for s in fin if isinstance(s.get("id"), str)}
        for section, earlier_base in (("steps", ()), ("finally", main_ids)):
            earlier = set(earlier_base)
            for i, step in enumerate(_list(data.get(section))):
                if not isinstance(step, dict):
                    continue
                self.check_step(step, (section, i), earlier, all_ids)
                if isinstance(step.get("id"), str):
                    earlier.add(step["id"])
        outputs = data.get("outputs")
        if isinstance(outputs, dict):
            self.check_templates(outputs, ("outputs",), all_ids, all_ids)
        return self.problems

    def check_durations(self) -> None:
        """No duration longer than a year: the clock and the sockets cannot wait that long, and
        such a value is a slip (``1e17``, a missing unit) rather than a wish."""
        data = self.data
        places: list[tuple[Path, Any]] = [(("run_timeout",), data.get("run_timeout"))]
        blocks: list[tuple[Path, Any]] = [(("defaults",), data.get("defaults"))]
        for section in ("steps", "finally"):
            blocks += [((section, i), step) for i, step in enumerate(_list(data.get(section)))]
        for base, block in blocks:
            if not isinstance(block, dict):
                continue
            places += [(base + (key,), block.get(key)) for key in ("timeout", "step_timeout")]
            retry = block.get("retry")
            if isinstance(retry, dict):
                places += [(base + ("retry", key), retry.get(key))
                           for key in ("initial_delay", "max_delay", "max_elapsed")]
        for path, value in places:
            if value is None or isinstance(value, bool) or not isinstance(value, (int, float, str)):
                continue
            try:
                seconds = parse_duration(value)
            except (ValueError, KeyError, IndexError, OverflowError):
                continue  # not a duration: the schema pass says so
            if seconds > MAX_DURATION:
                self.error(path, f"{value!r} is longer than a year ({MAX_DURATION:,} s), the longest "
                                 "duration runbook waits for")

    def check_providers(self) -> None:
        providers = self.data.get("providers")
        if not isinstance(providers, dict):
            return
        for name, block in providers.items():
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                continue
            ptype = block["type"]
            info = type_info(ptype)
            if info is None:
                self.error(
                    ("providers", name, "type"),
                    f"unknown provider type {ptype!r}{suggest(ptype, known_types())}; "
                    f"built-in types: {', '.join(known_types())}",
                )
                continue
            self.provider_types[name] = ptype
            self.problems.extend(
                schema_problems(
                    _validator_for(info, "config"), block, self.source, self.data,
                    ("providers", name), templated=True,
                )
            )
            for path, src in iter_templates(block, ("providers", name)):
                analysis = self.compile(path, src)
                if analysis is not None and analysis.steps:
                    self.error(path, "provider configuration cannot refer to steps (it is set up before they run)")

    def resolve_provider(self, step: dict[str, Any], path: Path) -> TypeInfo | None:
        name = step.get("provider")
        if not isinstance(name, str):
            return None
        if name in self.provider_types:
            return type_info(self.provider_types[name])
        providers = self.data.get("providers")
        if isinstance(providers, dict) and name in providers:
            return None  # its own block is already reported
        info = type_info(name)
        if info is None:
            names = list(providers) if isinstance(providers, dict) else []
            self.error(
                path + ("provider",),
                f"unknown provider {name!r}{suggest(name, names + known_types())}: "
                "name an entry of providers: or a provider type "
                f"({', '.join(known_types())})",
            )
        return info

    def check_step(self, step: dict[str, Any], path: Path, earlier: set[str], all_ids: set[str]) -> None:
        info = self.resolve_provider(step, path)
        dispatch = step.get("dispatch")
        if info is not None and isinstance(dispatch, dict) and len(dispatch) == 1:
            style = next(iter(dispatch))
            if style in ("id", "key", "api", "code") and style not in info.styles:
                reason = f"; {info.style_hint}" if info.style_hint else ""
                self.error(
                    path + ("dispatch", style),
                    f"provider {step.get('provider')!r} ({info.name}) does not support dispatch "
                    f"style {style!r}; it supports: {', '.join(info.styles)}{reason}",
                    key=True,
                )
            elif style == "api" and isinstance(dispatch["api"], dict):
                self.check_api(dispatch["api"], path + ("dispatch", "api"), info)
        options = step.get("with")
        if info is not None and isinstance(options, dict):
            self.problems.extend(
                schema_problems(
                    _validator_for(info, "options"), options, self.source, self.data,
                    path + ("with",), templated=True,
                )
            )
        if info is not None and isinstance(dispatch, dict) and len(dispatch) == 1:
            self.check_style_options(step, path, info, next(iter(dispatch)))
        sid = step.get("id")
        for key in ("dispatch", "input", "with"):
            if key in step:
                self.check_templates(step[key], path + (key,), earlier, all_ids)
        when = step.get("when")
        if isinstance(when, str) and when.strip().lower() in YAML11_BOOLEANS:
            self.error(path + ("when",), f"{when!r} is a string, not a boolean ({_YAML12_BOOLEANS}): "
                       f"write when: {_bool_fix(when.strip())}")
        elif isinstance(when, str):
            self.check_templates(self.templates.condition(when), path + ("when",), earlier, all_ids)
        for i, expr in enumerate(_list(step.get("assert"))):
            if isinstance(expr, str):
                self.check_templates(
                    self.templates.condition(expr), path + ("assert", i), earlier, all_ids,
                    self_id=sid if isinstance(sid, str) else None,
                )

    def check_style_options(self, step: dict[str, Any], path: Path, info: TypeInfo, style: str) -> None:
        """Options a dispatch style needs (in with:, or in the provider block) or cannot take."""
        rule = info.style_options.get(style)
        if rule is None:
            return
        options = step["with"] if isinstance(step.get("with"), dict) else {}
        providers = self.data.get("providers")
        name = step.get("provider")
        block = providers.get(name) if isinstance(providers, dict) and isinstance(name, str) else None
        block = block if isinstance(block, dict) else {}
        known = info.options_schema.get("properties", {})
        for key in options:
            if key in known and "allowed" in rule and key not in rule["allowed"]:
                self.error(path + ("with", key), f"{key!r} does not apply to dispatch {style!r} "
                           f"of the {info.name} provider (it takes {', '.join(rule['allowed'])})", key=True)
        for key in rule.get("required", ()):
            if key in options or (key in info.options_from_config and key in block):
                continue
            also = f", or {key} in the provider's block" if key in info.options_from_config else ""
            self.error(path + (("with",) if "with" in step else ("dispatch", style)),
                       f"dispatch {style!r} of the {info.name} provider needs with.{key}{also}",
                       key="with" not in step)

    def check_api(self, api: dict[str, Any], path: Path, info: TypeInfo) -> None:
        targets = [t for t in ("path", "url") if t in api]
        if len(targets) != 1:
            allowed = " or ".join(info.api_targets)
            self.error(path, f"needs {'exactly one of ' if len(info.api_targets) > 1 else ''}{allowed}")
            return
        if targets[0] not in info.api_targets:
            self.error(
                path + (targets[0],),
                f"the {info.name} provider takes {' or '.join(info.api_targets)} here, not {targets[0]}",
                key=True,
            )

    def compile(self, path: Path, src: str) -> Any:
        try:
            return self.templates.compile(src).analysis
        except TemplateError as exc:
            self.error(path, str(exc))
            return None

    def step_kind(self, sid: str) -> tuple[TypeInfo | None, str | None]:
        """The provider type and dispatch style of step ``sid`` (None where unknown)."""
        if self._kinds is None:
            self._kinds = {}
            providers = self.data.get("providers")
            for section in ("steps", "finally"):
                for step in _list(self.data.get(section)):
                    if not isinstance(step, dict) or not isinstance(step.get("id"), str):
                        continue
                    name, info = step.get("provider"), None
                    if isinstance(name, str) and name in self.provider_types:
                        info = type_info(self.provider_types[name])
                    elif isinstance(name, str) and not (isinstance(providers, dict) and name in providers):
                        info = type_info(name)
                    dispatch = step.get("dispatch")
                    style = next(iter(dispatch)) if isinstance(dispatch, dict) and len(dispatch) == 1 else None
                    self._kinds.setdefault(step["id"], (info, style))
        return self._kinds.get(sid, (None, None))

    def check_templates(self, value: Any, base: Path, earlier: set[str], all_ids: set[str],
                        self_id: str | None = None) -> None:
        """Compile every template in ``value``; check its names, filters, tests, attributes
        and step references: whatever would fail at run time whatever the data.

        ``earlier`` are the steps that have run at this point (``self_id`` too, in an assert).
        """
        for path, src in iter_templates(value, base):
            analysis = self.compile(path, src)
            if analysis is None:
                continue
            for name in sorted(analysis.names - _KNOWN_NAMES):
                self.error(
                    path,
                    f"unknown name {name!r}{suggest(name, CONTEXT_NAMES)} in template; "
                    f"available: {', '.join(CONTEXT_NAMES)}",
                )
            self.check_jinja_names(path, analysis)
            for ref in analysis.steps:
                if ref in earlier or ref == self_id:
                    continue
                if ref in all_ids:
                    self.error(path, f"step {ref!r} has not run yet here: a template can refer only to earlier steps")
                else:
                    self.error(path, f"unknown step {ref!r}{suggest(ref, sorted(all_ids))}")
            for ref in analysis.step_refs:
                if ref[0] in all_ids and len(ref) >= 2:
                    self.check_step_attribute(path, ref)

    def check_jinja_names(self, path: Path, analysis: Any) -> None:
        """Filters and tests that exist; no attribute or method the sandbox refuses."""
        if analysis.filters or analysis.tests:
            env = self.templates.env
            for name in analysis.filters:
                if name not in env.filters:
                    self.error(path, f"unknown filter {name!r}{suggest(name, env.filters)}")
            for name in analysis.tests:
                if name not in env.tests:
                    self.error(path, f"unknown test {name!r}{suggest(name, env.tests)}")
        for name in analysis.unsafe:
            self.error(path, f"{name!r} is not allowed in a template: the sandbox refuses Python's "
                             "internal attributes")
        for name in analysis.mutating:
            self.error(path, f"{name}() would change a value in place, which templates cannot do; "
                             "build a new value instead (e.g. a + [x], or dict(a, k=v))")

    def check_step_attribute(self, path: Path, ref: tuple[Any, ...]) -> None:
        """``steps.<id>.<attr>`` is one of a step's attributes (and ``exports.<key>`` one its
        provider gives, where the provider says which)."""
        sid, attr = ref[0], ref[1]
        if unsafe_attribute(attr):
            return  # reported as unsafe
        info, style = self.step_kind(sid)
        extras = info.step_extras if info is not None else ()
        known = (*STEP_ATTRIBUTES, *extras)
        if attr not in known:
            if info is None and isinstance(attr, str):  # a plugin type may add its own
                return
            self.error(path, f"steps.{sid} has no attribute {attr!r}{suggest(str(attr), known)}; "
                             f"a step has {', '.join(known)}")
            return
        if attr == "exports" and len(ref) >= 3 and info is not None and style in info.exports_keys:
            keys = info.exports_keys[style]
            if ref[2] not in keys:
                has = f"it has {', '.join(keys)}" if keys else "it has none"
                self.error(path, f"steps.{sid}.exports has no key {ref[2]!r}{suggest(str(ref[2]), keys)}: "
                                 f"a {info.name} step with dispatch {style} exports only what its "
                                 f"provider gives ({has})")


def _validator_for(info: TypeInfo, which: str) -> Any:
    """The compiled config or options validator of a provider type."""
    if info.name in BUILTIN:
        return validator(f"providers/{info.name}.json", which)
    return SchemaChecker(info.config_schema if which == "config" else info.options_schema)


def validate_document(doc: Document, templates: Templates) -> list[Problem]:
    """Every problem of a loaded runbook: schema errors, then semantic ones."""
    if not isinstance(doc.data, dict):
        return [doc.source.problem((), "a runbook is a mapping with version, name and steps")]
    problems = schema_problems(validator("runbook.schema.json"), doc.data, doc.source, doc.data)
    problems.extend(_Checker(doc, templates).run())
    unique = {(p.line, p.col, p.message): p for p in problems}
    return sorted(unique.values())


# --- Warnings: things that are valid but probably not what the author meant -----------

_LEADING_ZERO = re.compile(r"^[-+]?0[0-9_]")
_TRAILING_ZERO = re.compile(r"\.[0-9]*[0-9]0$")


def _lossy_number(text: str, value: Any) -> bool:
    """Whether YAML turned ``text`` into a number that does not write back as ``text``.

    ``0123`` (123), ``0x1F`` and ``1.10`` (1.1) lose what the author wrote; ``1.0``,
    ``42`` and ``-3`` do not.
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return bool(_LEADING_ZERO.match(text)) or text.lower().lstrip("+-")[:2] in ("0x", "0o")
    if isinstance(value, float):
        return bool(_TRAILING_ZERO.search(text))
    return False


class _Linter:
    """Warnings: ``vars`` no one sets, and YAML 1.1 habits that YAML 1.2 reads otherwise.

    With ``strict`` (``run`` and ``plan``, which know every variable of the run) a ``vars.X``
    that nothing sets is an error, and so is a ``--var`` name (``cli_vars``) that the
    runbook neither declares nor uses.
    """

    def __init__(self, doc: Document, templates: Templates, provided_vars: Iterable[str], *,
                 strict: bool = False, cli_vars: Iterable[str] = ()) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.source = doc.source
        self.templates = templates
        self.provided = set(provided_vars)
        self.strict = strict
        self.cli_vars = tuple(cli_vars)
        self.problems: list[Problem] = []
        self._lines: list[str] | None = None
        #: The variables the runbook declares or uses (``{"*"}``: it reads ``vars`` by a computed key).
        self.known_vars: set[str] = set()

    def warn(self, path: Path, message: str, severity: str = "warning") -> None:
        self.problems.append(
            self.source.problem(path, f"{label(self.data, path)}: {message}", severity=severity)
        )

    def run(self) -> list[Problem]:
        self.check_vars()
        self.check_scalars()
        return self.problems

    # vars.X that nothing sets

    def templates_of(self) -> Iterator[tuple[Path, str]]:
        data = self.data
        if isinstance(data.get("providers"), dict):
            yield from iter_templates(data["providers"], ("providers",))
        for section in ("steps", "finally"):
            for i, step in enumerate(_list(data.get(section))):
                if not isinstance(step, dict):
                    continue
                base = (section, i)
                for key in ("dispatch", "input", "with"):
                    if key in step:
                        yield from iter_templates(step[key], base + (key,))
                when = step.get("when")
                if isinstance(when, str) and when.strip().lower() not in YAML11_BOOLEANS:
                    yield base + ("when",), self.templates.condition(when)
                for j, expr in enumerate(_list(step.get("assert"))):
                    if isinstance(expr, str):
                        yield base + ("assert", j), self.templates.condition(expr)
        if isinstance(data.get("outputs"), dict):
            yield from iter_templates(data["outputs"], ("outputs",))

    def check_vars(self) -> None:
        defaults = self.data.get("vars")
        declared = set(defaults) if isinstance(defaults, dict) else set()
        known = declared | self.provided
        found: list[tuple[Path, str, str]] = []
        sources: list[str] = []
        used: set[str] = set()
        dynamic = False
        for path, src in self.templates_of():
            try:
                analysis = self.templates.compile(src).analysis
            except TemplateError:
                continue  # reported as an error by the semantic pass
            if "vars" not in analysis.names:
                continue
            sources.append(src)
            used.update(analysis.vars)
            dynamic = dynamic or analysis.dynamic_vars
            found.extend((path, name, src) for name in analysis.vars
                         if name not in known and not unsafe_attribute(name))
        self.known_vars = {"*"} if dynamic else declared | used
        for name in self.cli_vars:
            if name in declared or name in used or dynamic:
                continue
            self.problems.append(self.source.problem(
                ("vars",) if declared else (), severity="error", key=bool(declared),
                message=f"--var {name}: this runbook neither declares vars.{name} under vars: nor uses "
                        f"it{suggest(name, sorted(declared | used))}",
            ))
        if not found:
            return
        optional = self.optional_vars(sources)
        for path, name, _ in found:
            if name in optional:
                continue
            hint = suggest(name, sorted(known))
            if self.strict:
                self.warn(path, f"vars.{name} is not set by vars:, --vars-file or --var{hint}: give the run "
                                f"--var {name}=VALUE (or add a default under vars:)", severity="error")
            else:
                self.warn(path, f"vars.{name} is not set by vars:, --vars-file or --var{hint}: a run fails "
                                f"here unless it is given --var {name}=VALUE (or add a default under vars:)")

    def optional_vars(self, sources: list[str]) -> set[str]:
        """Variables a template tests with ``is defined``, ``in vars`` or gives a ``default``."""
        from jinja2 import nodes  # only for templates that test or default a variable

        optional: set[str] = set()
        for src in sources:
            if not any(w in src for w in ("defined", "default", "d(", " in ")):
                continue
            try:
                tree = self.templates.env.parse(src)
            except Exception:  # a syntax error is reported by the semantic pass
                continue
            for test in tree.find_all(nodes.Test):
                if test.name in ("defined", "undefined"):
                    optional.update(_var_name(test.node))
            for flt in tree.find_all(nodes.Filter):
                if flt.name in ("default", "d"):
                    optional.update(_var_name(flt.node))
            for cmp in tree.find_all(nodes.Compare):
                if (isinstance(cmp.expr, nodes.Const) and isinstance(cmp.expr.value, str)
                        and any(op.op in ("in", "notin") and isinstance(op.expr, nodes.Name)
                                and op.expr.name == "vars" for op in cmp.ops)):
                    optional.add(cmp.expr.value)
        return optional

    # YAML 1.1 habits

    def plain(self, path: Path) -> bool:
        """Whether the scalar at ``path`` was written without quotes."""
        pos = self.source.recorded(path)  # a sparse load records it for the words looked at here
        if pos is None:
            return False
        if self._lines is None:
            self._lines = self.doc.text.splitlines()
        line, col = pos
        if line > len(self._lines):
            return False
        return self._lines[line - 1][col - 1:col] not in ("'", '"')

    def check_scalars(self) -> None:
        data = self.data
        if isinstance(data.get("vars"), dict):
            self.scan(data["vars"], ("vars",))
        if isinstance(data.get("outputs"), dict):
            self.scan(data["outputs"], ("outputs",))
        for section in ("steps", "finally"):
            for i, step in enumerate(_list(data.get(section))):
                if not isinstance(step, dict):
                    continue
                base = (section, i)
                if "input" in step:
                    self.scan(step["input"], base + ("input",))
                dispatch = step.get("dispatch")
                api = dispatch.get("api") if isinstance(dispatch, dict) else None
                if isinstance(api, dict):
                    if "body" in api:
                        self.scan(api["body"], base + ("dispatch", "api", "body"))
                    if isinstance(api.get("query"), dict):
                        self.scan(api["query"], base + ("dispatch", "api", "query"), booleans=False)
                options = step.get("with")
                if isinstance(options, dict):
                    self.scan_options(step, options, base + ("with",))

    def scan_options(self, step: dict[str, Any], options: dict[str, Any], base: Path) -> None:
        """``with:`` values the provider's options schema leaves open (``meta``, plugins')."""
        info = None
        name = step.get("provider")
        providers = self.data.get("providers")
        if isinstance(providers, dict) and isinstance(name, str) and isinstance(providers.get(name), dict):
            ptype = providers[name].get("type")
            info = type_info(ptype) if isinstance(ptype, str) else None
        elif isinstance(name, str):
            info = type_info(name)
        props = info.options_schema.get("properties", {}) if info is not None else {}
        for key, value in options.items():
            kind = props.get(key, {}).get("type") if isinstance(props.get(key), dict) else None
            if kind in (None, "object", "array"):
                self.scan(value, base + (key,))

    def scan(self, value: Any, path: Path, *, booleans: bool = True) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                self.scan(v, path + (k,), booleans=booleans)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                self.scan(v, path + (i,), booleans=booleans)
        elif isinstance(value, str):
            if booleans and value.lower() in YAML11_BOOLEANS and self.plain(path):
                self.warn(path, f"{value} is the string {value!r} here, not a boolean "
                                f"({_YAML12_BOOLEANS}): write {_bool_fix(value)} for a boolean, "
                                f"or quote it (\"{value}\") to keep the text")
        elif isinstance(value, (int, float)):
            text = self.source.scalar_text.get(path)
            if text is not None and _lossy_number(text, value):
                self.warn(path, f"YAML reads {text} as the number {value!r}; quote it (\"{text}\") "
                                "to keep it as written")


def _var_name(node: Any) -> set[str]:
    """``{"x"}`` for ``vars.x`` or ``vars['x']`` (a jinja2 node), else nothing."""
    from jinja2 import nodes

    on_vars = isinstance(node, (nodes.Getattr, nodes.Getitem)) and isinstance(node.node, nodes.Name)
    if on_vars and node.node.name == "vars":
        if isinstance(node, nodes.Getattr):
            return {node.attr}
        if isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
            return {node.arg.value}
    return set()


def lint_document(doc: Document, templates: Templates, provided_vars: Iterable[str] = (), *,
                  strict: bool = False, cli_vars: Iterable[str] = (),
                  known_vars: set[str] | None = None) -> list[Problem]:
    """Warnings about a runbook: ``vars.X`` that no default, ``--vars-file`` or ``--var``
    (``provided_vars``) sets, and YAML 1.1 habits (``yes``, ``0123``, ``1.10``) that YAML 1.2
    reads otherwise. With ``strict`` (the run's variables are all known) an unset ``vars.X``
    is an error, and so is a ``--var`` name in ``cli_vars`` the runbook does not know.
    ``known_vars``, when given, gets the names the runbook declares or uses."""
    if not isinstance(doc.data, dict):
        return []
    linter = _Linter(doc, templates, provided_vars, strict=strict, cli_vars=cli_vars)
    problems = sorted(linter.run())
    if known_vars is not None:
        known_vars |= linter.known_vars
    return problems


@_gc_paused
def check_file(path: str, templates: Templates | None = None, *,
               provided_vars: Iterable[str] = (), known_vars: set[str] | None = None) -> list[Problem]:
    """Every problem of one file, errors and warnings, sorted (what ``validate`` prints).

    ``known_vars``, when given, gets the variables the file declares or uses.
    """
    templates = templates or Templates()
    try:
        doc = load_file(path)
    except LocatedErrors as exc:
        return list(exc.problems)
    problems = validate_document(doc, templates) + lint_document(doc, templates, provided_vars,
                                                                 known_vars=known_vars)
    return sorted(problems)


@_gc_paused
def load_checked(path: str, templates: Templates, *, provided_vars: Iterable[str] = (),
                 strict: bool = False, cli_vars: Iterable[str] = (),
                 sparse: bool = False) -> tuple[Runbook, list[Problem]]:
    """Load, validate and build ``path``; return the runbook and the warnings.

    Errors raise :class:`LocatedErrors` (with the warnings, so nothing is lost). ``run`` and
    ``plan`` pass ``strict`` and the ``--var`` names, because they know every variable.

    ``run`` passes ``sparse``: its runbook keeps only the positions a run reports
    (:class:`~engine.loader.SparseSourceMap`; the full map of a long runbook costs more memory
    than the runbook). The checks look at that load; only if they find anything are they made
    again on a full load of the same text, so that every problem is located and worded as ever.
    """
    doc = load_file(path, sparse=sparse)
    problems = _checked(doc, templates, provided_vars, strict=strict, cli_vars=cli_vars)
    if problems and sparse:
        problems = _checked(load_text(doc.text, path), templates, provided_vars, strict=strict,
                            cli_vars=cli_vars)
    if any(p.severity == "error" for p in problems):
        raise LocatedErrors(problems)
    return _built(doc, path), sorted(problems)


def _checked(doc: Document, templates: Templates, provided_vars: Iterable[str], *, strict: bool,
             cli_vars: Iterable[str]) -> list[Problem]:
    return validate_document(doc, templates) + lint_document(
        doc, templates, provided_vars, strict=strict, cli_vars=cli_vars)


def _built(doc: Document, path: str) -> Runbook:
    """:func:`build_runbook`, its sparse source map readied for the run (exact positions read
    from the file again while it holds the text that was run)."""
    runbook = build_runbook(doc, path)
    if isinstance(runbook.source, SparseSourceMap):
        runbook.source.for_run(runbook.sha256)
    return runbook


_NO_RETRY = RetryPolicy()


def _retry(raw: dict[str, Any] | None) -> RetryPolicy:
    if not raw:
        return _NO_RETRY
    kwargs: dict[str, Any] = {}
    if "attempts" in raw:
        kwargs["attempts"] = raw["attempts"]
    if "backoff" in raw:
        kwargs["backoff"] = raw["backoff"]
    for key in ("initial_delay", "max_delay", "max_elapsed"):
        if key in raw:
            kwargs[key] = parse_duration(raw[key])
    if "on" in raw:
        kwargs["on"] = frozenset(str(c) for c in raw["on"])
    return RetryPolicy(**kwargs)


def build_runbook(doc: Document, path: str) -> Runbook:
    """The frozen :class:`Runbook` of a document that passed validation."""
    data = doc.data
    providers: dict[str, ProviderSpec] = {
        name: ProviderSpec(name, block["type"], block, ("providers", name))
        for name, block in (data.get("providers") or {}).items()
    }
    defaults = data.get("defaults") or {}

    def make(section: str, i: int, raw: dict[str, Any]) -> Step:
        pname = raw["provider"]
        if pname not in providers:
            providers[pname] = ProviderSpec(pname, pname, {"type": pname}, ())
        style, target = next(iter(raw["dispatch"].items()))
        timeout = raw.get("timeout", defaults.get("timeout"))
        step_timeout = raw.get("step_timeout", defaults.get("step_timeout"))
        return Step(
            id=raw["id"],
            name=raw.get("name"),
            provider=pname,
            provider_type=providers[pname].type,
            style=style,
            target=target,
            input=raw.get("input"),
            options=raw.get("with") or {},
            when=raw.get("when"),
            timeout=parse_duration(timeout) if timeout is not None else None,
            retry=_retry(raw["retry"] if "retry" in raw else defaults.get("retry")),
            continue_on_error=bool(raw.get("continue_on_error", False)),
            asserts=tuple(raw.get("assert") or ()),
            path=(section, i),
            is_finally=section == "finally",
            step_timeout=parse_duration(step_timeout) if step_timeout is not None else None,
        )

    steps = tuple(make("steps", i, s) for i, s in enumerate(data["steps"]))
    fin = tuple(make("finally", i, s) for i, s in enumerate(data.get("finally") or []))
    return Runbook(
        path=path,
        name=data["name"],
        description=data.get("description"),
        vars=dict(data.get("vars") or {}),
        providers=providers,
        steps=steps,
        finally_steps=fin,
        outputs=dict(data.get("outputs") or {}),
        sha256=hashlib.sha256(doc.text.encode("utf-8")).hexdigest(),
        source=doc.source,
        run_timeout=parse_duration(data["run_timeout"]) if "run_timeout" in data else None,
    )


@_gc_paused
def load_runbook(path: str, templates: Templates | None = None) -> tuple[Runbook, Templates]:
    """Load, validate and build ``path``; raise :class:`LocatedErrors` with every problem."""
    templates = templates or Templates()
    doc = load_file(path, sparse=True)  # see load_checked
    problems = validate_document(doc, templates)
    if problems:
        raise LocatedErrors(validate_document(load_text(doc.text, path), templates))
    return _built(doc, path), templates
