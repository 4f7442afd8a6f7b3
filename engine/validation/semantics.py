"""The semantic pass: ids, references, providers, dispatch styles, options, durations and
the static checks of templates (names, filters, tests, step references): whatever would
fail at run time whatever the data. Nothing here imports httpx or a provider's code.
"""

from __future__ import annotations

from typing import Any

from engine.errors import Problem
from engine.loader import Document, Path
from engine.model import DISPATCH_STYLES, FANOUT_ATTRIBUTES, STEP_ATTRIBUTES, parse_duration, provider_config
from engine.providers.registry import TypeInfo, known_types, plugin_failure, plugin_types, type_info
from engine.schemas import YAML11_BOOLEANS, YAML12_BOOLEANS, bool_fix, checker, schema_messages, suggest
from engine.templating import (
    CONTEXT_NAMES,
    KEPT_GLOBALS,
    TemplateError,
    Templates,
    is_template,
    iter_templates,
    step_templates,
    unsafe_attribute,
)
from engine.validation.common import items, label
from engine.validation.schema import provider_problems

__all__ = ["MAX_DURATION", "semantic_problems"]

#: The longest timeout or delay (seconds): a year.
MAX_DURATION = 366 * 24 * 3600

#: Names a template may use: the context, and Jinja's own globals (a for_each step's templates
#: also have its item and ``loop``; Jinja's own ``loop`` inside ``{% for %}`` is not a name here).
_KNOWN_NAMES = frozenset({*CONTEXT_NAMES, *KEPT_GLOBALS})

#: The keys of a step that only a for_each step may have.
_FANOUT_KEYS = ("as", "concurrency", "fail_fast")

def semantic_problems(doc: Document, templates: Templates) -> list[Problem]:
    """The problems of a runbook (a mapping) that its schema cannot see."""
    return _Semantics(doc, templates).run()


def _unknown_type(name: str) -> str:
    """Why a provider type cannot be used: its plugin's failure, or that there is no such type
    (with the closest name, built in or a plugin's)."""
    failure = plugin_failure(name)
    if failure is not None:
        return failure
    plugins = plugin_types()
    listed = f"built-in types: {', '.join(known_types())}"
    if plugins:
        listed += f"; plugin types: {', '.join(plugins)}"
    return f"unknown provider type {name!r}{suggest(name, known_types() + plugins)}; {listed}"


def _ids(section: Any) -> list[str]:
    """The ids of a section's steps (those that have one)."""
    return [s["id"] for s in items(section) if isinstance(s, dict) and isinstance(s.get("id"), str)]


class _Semantics:
    """The semantic pass: ids, providers, styles, options and templates."""

    def __init__(self, doc: Document, templates: Templates) -> None:
        self.doc = doc
        self.data: dict[str, Any] = doc.data
        self.source = doc.source
        self.templates = templates
        self.problems: list[Problem] = []
        self.provider_types: dict[str, str] = {}
        #: types used without a block (their empty configuration checked once)
        self.direct_types: set[str] = set()
        self._kinds: dict[str, tuple[TypeInfo | None, str | None]] | None = None
        #: the ids of the for_each steps
        self.fan_outs = {s["id"] for section in ("steps", "finally") for s in items(self.data.get(section))
                         if isinstance(s, dict) and isinstance(s.get("id"), str) and "for_each" in s}

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        self.problems.append(self.source.problem(path, f"{label(self.data, path)}: {message}", key=key))

    def run(self) -> list[Problem]:
        self.check_version()
        self.check_providers()
        self.check_durations()
        self.check_ids()
        all_ids = self.check_steps()
        outputs = self.data.get("outputs")
        if isinstance(outputs, dict):
            self.check_templates(outputs, ("outputs",), all_ids, all_ids)
        return self.problems

    def check_version(self) -> None:
        """``version: 1.0`` is the number the schema wants, but not the integer."""
        data = self.data
        if "version" in data and data["version"] == 1 and type(data["version"]) is not int:
            text = self.source.scalar_text.get(("version",), str(data["version"]))
            self.error(("version",), f"must be the integer 1, not {text} (YAML reads {text} as a "
                                     "decimal number): write version: 1")

    def check_ids(self) -> None:
        """Each step id once, in ``steps`` and ``finally`` together."""
        seen: dict[str, Path] = {}
        for section in ("steps", "finally"):
            for i, step in enumerate(items(self.data.get(section))):
                if not isinstance(step, dict) or not isinstance(step.get("id"), str):
                    continue
                sid = step["id"]
                if sid in seen:
                    line = self.source.position(seen[sid])[0]
                    self.error((section, i, "id"), f"duplicate step id {sid!r} (first used on line {line})")
                else:
                    seen[sid] = (section, i, "id")

    def check_steps(self) -> set[str]:
        """Check every step, each seeing the steps before it; return every step id."""
        data = self.data
        main_ids = _ids(data.get("steps"))
        all_ids = set(main_ids) | set(_ids(data.get("finally")))
        for section, earlier_base in (("steps", []), ("finally", main_ids)):
            earlier = set(earlier_base)
            for i, step in enumerate(items(data.get(section))):
                if not isinstance(step, dict):
                    continue
                self.check_step(step, (section, i), earlier, all_ids)
                if isinstance(step.get("id"), str):
                    earlier.add(step["id"])
        return all_ids

    def check_durations(self) -> None:
        """No duration longer than a year: the clock and the sockets cannot wait that long, and
        such a value is a slip (``1e17``, a missing unit) rather than a wish."""
        data = self.data
        places: list[tuple[Path, Any]] = [(("run_timeout",), data.get("run_timeout"))]
        blocks: list[tuple[Path, Any]] = [(("defaults",), data.get("defaults"))]
        for section in ("steps", "finally"):
            blocks += [((section, i), step) for i, step in enumerate(items(data.get(section)))]
        for base, block in blocks:
            if not isinstance(block, dict):
                continue
            places += [(base + (key,), block.get(key)) for key in ("timeout", "step_timeout")]
            poll = block.get("poll")
            if isinstance(poll, dict):
                places += [(base + ("poll", key), poll.get(key)) for key in ("interval", "timeout")]
            retry = block.get("retry")
            if isinstance(retry, dict):
                places += [(base + ("retry", key), retry.get(key))
                           for key in ("initial_delay", "max_delay", "max_elapsed")]
        providers = data.get("providers")
        for name, block in providers.items() if isinstance(providers, dict) else ():
            if isinstance(block, dict) and isinstance(block.get("rate_limit"), dict):
                places.append((("providers", name, "rate_limit", "per"), block["rate_limit"].get("per")))
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
                self.error(("providers", name, "type"), _unknown_type(ptype))
                continue
            self.provider_types[name] = ptype
            self.problems.extend(provider_problems(self.doc, info, "config", provider_config(block),
                                                   ("providers", name)))
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
            failure = plugin_failure(name)
            if failure is not None:
                self.error(path + ("provider",), failure)
                return None
            names = list(providers) if isinstance(providers, dict) else []
            plugins = plugin_types()
            self.error(
                path + ("provider",),
                f"unknown provider {name!r}{suggest(name, names + known_types() + plugins)}: "
                f"name an entry of providers: or a provider type ({', '.join(known_types() + plugins)})",
            )
        elif name not in self.direct_types:  # a type used as it is: run builds it from {}
            self.direct_types.add(name)
            needs = "; ".join(m.text for m in schema_messages(checker(info.config_schema), {}, ()))
            if needs:
                self.error(path + ("provider",),
                           f"provider type {name!r} is used without a block under providers:, and its "
                           f"configuration cannot be empty: {needs}")
        return info

    def check_step(self, step: dict[str, Any], path: Path, earlier: set[str], all_ids: set[str]) -> None:
        if "runbook" in step:
            self.check_call(step, path)
        info = self.resolve_provider(step, path)
        if info is not None:
            self.check_provider_use(step, path, info)
        self.check_fan_out(step, path)
        self.check_poll(step, path)
        self.check_step_templates(step, path, earlier, all_ids)

    def check_call(self, step: dict[str, Any], path: Path) -> None:
        """What a step that calls a runbook cannot have (the called file: see validation.calls)."""
        reasons = {
            "retry": "a called runbook is not retried as a whole (it could repeat steps that succeeded); "
                     "give its steps their own retry",
            "until": "a called runbook is not polled; poll a step inside it",
            "poll": "a called runbook is not polled; poll a step inside it",
        }
        for key, why in reasons.items():
            if key in step:
                self.error(path + (key,), why, key=True)

    def check_poll(self, step: dict[str, Any], path: Path) -> None:
        """``until`` and ``poll`` come together; a poll's interval fits in its timeout."""
        if ("until" in step) != ("poll" in step):
            have, missing = ("until", "poll") if "until" in step else ("poll", "until")
            self.error(path + (have,), f"{have} needs {missing}: a step polls while until is false, as poll "
                                       "says (poll: {interval: 5s, timeout: 10m})", key=True)
            return
        poll = step.get("poll")
        if isinstance(poll, dict):
            try:
                interval, timeout = parse_duration(poll["interval"]), parse_duration(poll["timeout"])
            except (KeyError, ValueError, TypeError, IndexError, OverflowError):
                return  # the schema pass says so
            if interval > timeout:
                self.error(path + ("poll", "interval"), f"the interval ({poll['interval']}) is longer than the "
                                                        f"timeout ({poll['timeout']}): it would poll once")

    def check_fan_out(self, step: dict[str, Any], path: Path) -> None:
        """``as``, ``concurrency`` and ``fail_fast`` belong to a for_each step; its ``for_each``
        is a list (a template of one, or written out); its item's name is not taken."""
        if "for_each" not in step:
            for key in _FANOUT_KEYS:
                if key in step:
                    self.error(path + (key,), f"{key} applies only to a step with for_each", key=True)
            return
        for_each = step["for_each"]
        if isinstance(for_each, str) and not is_template(for_each):
            self.error(path + ("for_each",), f"{for_each!r} is a string, not a list: write a template of a list "
                                             "(for_each: \"{{ vars.users }}\") or the list itself")
        name = step.get("as")
        if isinstance(name, str) and name in (*_KNOWN_NAMES, "loop"):
            self.error(path + ("as",), f"{name!r} is taken (the templates' own names are "
                                       f"{', '.join(sorted((*CONTEXT_NAMES, 'loop')))}): choose another name")

    @staticmethod
    def item_names(step: dict[str, Any]) -> frozenset[str]:
        """The names a for_each step's templates have besides the context: its item and loop."""
        if "for_each" not in step:
            return frozenset()
        name = step.get("as")
        if not isinstance(name, str) or name in _KNOWN_NAMES:  # a name that is taken: reported
            name = "item"
        return frozenset({name, "loop"})

    def check_provider_use(self, step: dict[str, Any], path: Path, info: TypeInfo) -> None:
        """The step's ``with:`` options, dispatch style and the options that style needs or
        cannot take, against its provider type."""
        options = step.get("with")
        if isinstance(options, dict):
            self.problems.extend(provider_problems(self.doc, info, "options", options, path + ("with",)))
        dispatch = step.get("dispatch")
        if not isinstance(dispatch, dict) or len(dispatch) != 1:
            return  # the schema pass says so
        style = next(iter(dispatch))
        if style in DISPATCH_STYLES and style not in info.styles:
            reason = f"; {info.style_hint}" if info.style_hint else ""
            self.error(
                path + ("dispatch", style),
                f"provider {step.get('provider')!r} ({info.name}) does not support dispatch "
                f"style {style!r}; it supports: {', '.join(info.styles)}{reason}",
                key=True,
            )
        elif style == "api" and isinstance(dispatch["api"], dict):
            self.check_api(dispatch["api"], path + ("dispatch", "api"), info)
        self.check_style_options(step, path, info, style)

    def check_step_templates(self, step: dict[str, Any], path: Path, earlier: set[str], all_ids: set[str]) -> None:
        """The templates of a step (for_each, dispatch, input, with, when, assert, until), seeing
        ``earlier`` steps (and, in an assert or until, the step itself)."""
        when = step.get("when")
        if isinstance(when, str) and when.strip().lower() in YAML11_BOOLEANS:
            self.error(path + ("when",), f"{when!r} is a string, not a boolean ({YAML12_BOOLEANS}): "
                       f"write when: {bool_fix(when.strip())}")
        sid = step.get("id")
        item_names = self.item_names(step)
        for where, src in step_templates(step, self.templates, path):
            field = where[len(path)]
            own = field in ("assert", "until") and isinstance(sid, str)
            self.check_templates(src, where, earlier, all_ids, self_id=sid if own else None,
                                 names=item_names if field != "for_each" else frozenset())

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
                for step in items(self.data.get(section)):
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
                        self_id: str | None = None, names: frozenset[str] = frozenset()) -> None:
        """Compile every template in ``value``; check its names, filters, tests, attributes
        and step references: whatever would fail at run time whatever the data.

        ``earlier`` are the steps that have run at this point (``self_id`` too, in an assert);
        ``names`` are the template's own names besides the context (a for_each item, loop).
        """
        for path, src in iter_templates(value, base):
            analysis = self.compile(path, src)
            if analysis is None:
                continue
            for name in sorted(analysis.names - _KNOWN_NAMES - names):
                self.unknown_name(path, name, names)
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

    def unknown_name(self, path: Path, name: str, names: frozenset[str]) -> None:
        available = [*CONTEXT_NAMES, *sorted(names)]
        if name in ("item", "loop") and not names:
            where = ("for_each itself (it is rendered before any item)" if path[2:3] == ("for_each",)
                     else "a step without for_each")
            self.error(path, f"{name!r} is defined only in the templates of a for_each step, not in {where}")
            return
        self.error(path, f"unknown name {name!r}{suggest(name, available)} in template; "
                         f"available: {', '.join(available)}")

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
        known = (*STEP_ATTRIBUTES, *extras, *(FANOUT_ATTRIBUTES if sid in self.fan_outs else ()))
        if attr not in known:
            if attr in FANOUT_ATTRIBUTES:
                self.error(path, f"steps.{sid} has no {attr}: it is not a for_each step")
                return
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
