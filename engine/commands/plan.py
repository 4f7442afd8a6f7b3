"""``runbook plan``: what ``run`` would send, step by step, without sending anything.

Nothing here builds a provider or imports httpx. Templates are rendered against
the real ``vars`` and ``env``; what only a run can know is a placeholder:

- ``steps.*`` (and ``run.id``, ``run.started_at``, ``run.status``) render as
  ``<steps.contact.output.id>``; an expression that computes with them (a
  comparison, a filter) is shown as ``<expression>``;
- a value whose template touches ``secrets`` is ``***``, as in the manifest;
  secret values are never read, only whether each variable is set.

So a step that depends on an earlier step's output still gets a plan. ``when``
is decided now when it needs only ``vars``/``env``; otherwise it says "at run
time". The request is the provider type's own: its ``request_builder`` (made from the
rendered provider block, without credentials) gives the record a run keeps
(``request_body``) and the HTTP request it sends (``build_request``: where it goes and
its headers, each credential as ``***``).

With ``--remote`` (off by default: by default plan sends nothing), the providers are built
as ``run`` builds them (secrets read) and each catalog/saved action's definition is fetched,
or read from the cache (engine/remote_check.py): a literal input that does not match is an
error (exit 2), and each step shows the action's name and version (``action``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from engine.errors import Problem
from engine.model import Runbook, Step
from engine.preflight import preflight, secret_references
from engine.providers.base import ActionCall, ProviderError, RequestBuilder
from engine.providers.registry import PluginRequests, provider_class
from engine.templating import REDACTED, Templates, field_name, is_template, iter_templates, step_templates, truthy
from engine.validation import load_checked
from engine.vars import cli_var_names, resolve_vars

if TYPE_CHECKING:
    from engine.remote_check import RemoteCheck, Resolved

__all__ = ["plan", "build_plan"]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EXPRESSION = re.compile(r"\{\{(.*?)\}\}", re.S)


class _NeedsRun(Exception):
    """A template computed with a value only a run knows."""


class _Unknown:
    """A value only a run knows (``steps.x.output.id``): lookups go deeper, anything else
    raises :class:`_NeedsRun`, so the template is shown as a placeholder instead."""

    __slots__ = ("_path", "_known")

    def __init__(self, path: tuple[Any, ...], known: Mapping[str, Any] | None = None) -> None:
        self._path = path
        self._known = known or {}

    def _child(self, key: Any) -> Any:
        if key in self._known:
            return self._known[key]
        return _Unknown(self._path + (key,))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._child(name)

    def __getitem__(self, key: Any) -> Any:
        return self._child(key)

    def _needs_run(self, *args: Any) -> Any:
        raise _NeedsRun(_placeholder(self))

    __str__ = __bool__ = __len__ = __iter__ = __contains__ = _needs_run
    __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = _needs_run
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _needs_run
    __truediv__ = __rtruediv__ = __mod__ = __rmod__ = __int__ = __float__ = _needs_run
    __hash__ = object.__hash__


def _placeholder(unknown: _Unknown) -> str:
    """``<steps.contact.output.id>``: the lookup, written the plain way."""
    path = unknown._path
    text = str(path[0])
    for part in path[1:]:
        text += f".{part}" if isinstance(part, str) and _IDENT.match(part) else f"[{part!r}]"
    return f"<{text}>"


def _materialize(value: Any) -> Any:
    """``value`` with every :class:`_Unknown` inside replaced by its placeholder text."""
    if isinstance(value, _Unknown):
        return _placeholder(value)
    if isinstance(value, dict):
        return {k: _materialize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_materialize(v) for v in value]
    return value


def _has_unknown(value: Any) -> bool:
    if isinstance(value, _Unknown):
        return True
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_unknown(v) for v in value)
    return False


class _Planner:
    """Renders a runbook's templates as far as they can be before a run."""

    def __init__(self, runbook: Runbook, templates: Templates, variables: Mapping[str, Any],
                 environ: Mapping[str, str], resolved: Mapping[str, Resolved] | None = None) -> None:
        self.runbook = runbook
        self.resolved = resolved or {}
        self.templates = templates
        self.environ = environ
        self.variables = variables
        self.problems: list[Problem] = []
        self.context: dict[str, Any] = {
            "vars": variables,
            "steps": _Unknown(("steps",)),
            "secrets": _Unknown(("secrets",)),  # never the environment: values are not read
            "env": environ,
            "run": _Unknown(("run",), {"dry_run": False}),
        }
        self._builders: dict[str, RequestBuilder | None] = {}
        self._unknown_names: frozenset[str] = frozenset()  # a for_each item not known before the run

    def _problem(self, path: tuple[Any, ...], source: str, message: str) -> str:
        unset = [v for v in self.templates.compile(source).analysis.vars if v not in self.variables]
        if unset:  # validation already warned about it, at the same place
            return f"<error: vars.{unset[0]} is not set>"
        self.problems.append(self.runbook.source.problem(
            path, f"{self._label(path)}: fails at run time: {message}", severity="warning"))
        return f"<error: {message}>"

    def _label(self, path: tuple[Any, ...]) -> str:
        """``steps[1] (notify) input.text``, as validation names a field."""
        if len(path) >= 2 and path[0] in ("steps", "finally") and isinstance(path[1], int):
            steps = self.runbook.steps if path[0] == "steps" else self.runbook.finally_steps
            return f"{path[0]}[{path[1]}] ({steps[path[1]].id}) {_where(path[2:])}"
        return _where(path)

    def _raw(self, source: str) -> Any:
        """Render ``source`` with the plan context; exceptions are not translated."""
        return self.templates.compile(source).render(self.templates, self.context)

    def _deferred(self, source: str) -> bool:
        names = self.templates.compile(source).analysis.names
        return "steps" in names or "run" in names or bool(names & self._unknown_names)

    def template(self, source: str, path: tuple[Any, ...]) -> Any:
        """One template string, rendered as far as it can be."""
        if self.templates.compile(source).analysis.tainted:
            return REDACTED
        try:
            return _materialize(self._raw(source))
        except Exception as exc:  # jinja2 raises many types; _NeedsRun is ours
            if not isinstance(exc, _NeedsRun) and not self._deferred(source):
                return self._problem(path, source, _describe(exc))
        return self._by_expression(source, path)

    def _by_expression(self, source: str, path: tuple[Any, ...]) -> Any:
        """Each ``{{ expression }}`` on its own: known ones rendered, the others placeholders."""
        matches = list(_EXPRESSION.finditer(source))
        if "{%" in source or "{#" in source or not matches:
            return f"<{source.strip()}>"
        lone = len(matches) == 1 and matches[0].span() == (0, len(source))
        pieces: list[str] = []
        pos = 0
        for match in matches:
            pieces.append(source[pos:match.start()])
            pos = match.end()
            expression = match.group(1).strip()
            value: Any
            try:
                value = self._raw("{{ " + expression + " }}")
            except Exception as exc:
                if not isinstance(exc, _NeedsRun) and not self._deferred("{{ " + expression + " }}"):
                    return self._problem(path, source, _describe(exc))
                value = _Unknown((expression,))  # shown as <expression>
            if lone:
                return _materialize(value)
            pieces.append(_placeholder(value) if isinstance(value, _Unknown)
                          else f"<{expression}>" if _has_unknown(value) else str(value))
        pieces.append(source[pos:])
        return "".join(pieces)

    def value(self, value: Any, path: tuple[Any, ...]) -> Any:
        """Every template inside ``value`` rendered as far as it can be."""
        if isinstance(value, str):
            return self.template(value, path) if is_template(value) else value
        if isinstance(value, dict):
            return {k: self.value(v, path + (k,)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, path + (i,)) for i, v in enumerate(value)]
        return value

    def when(self, step: Step) -> dict[str, Any]:
        if step.when is None:
            return {"decided": True, "runs": True, "expression": None}
        if isinstance(step.when, bool):
            return {"decided": True, "runs": step.when, "expression": str(step.when).lower()}
        source = str(self.templates.condition(step.when))  # a str (a bool returned above)
        expression = _expression_text(source)
        if self.templates.compile(source).analysis.tainted:
            return {"decided": False, "runs": None, "expression": expression,
                    "note": "at run time (it reads secrets)"}
        try:
            value = self._raw(source)
        except Exception as exc:
            if isinstance(exc, _NeedsRun) or self._deferred(source):
                return {"decided": False, "runs": None, "expression": expression, "note": "at run time"}
            message = self._problem(step.path + ("when",), source, _describe(exc))
            return {"decided": False, "runs": None, "expression": expression, "note": message}
        if _has_unknown(value):
            return {"decided": False, "runs": None, "expression": expression, "note": "at run time"}
        return {"decided": True, "runs": truthy(value), "expression": expression}

    def provider_config(self, name: str) -> dict[str, Any]:
        spec = self.runbook.providers[name]
        config = self.value(spec.config, spec.path)
        return config if isinstance(config, dict) else {}

    def builder(self, name: str, type_name: str) -> RequestBuilder | None:
        """The request rules of provider ``name``, from its block as rendered here (so a
        value read from a secret is ``***``); None for a type that cannot show them (a
        plugin that cannot be built from that block, which is a warning)."""
        if name not in self._builders:
            try:
                self._builders[name] = provider_class(type_name).request_builder(
                    name, self.provider_config(name), env=self.environ)
            except ProviderError as exc:
                spec = self.runbook.providers[name]
                self.problems.append(self.runbook.source.problem(
                    spec.path or ("providers",), f"providers.{name}: plan cannot show its requests: {exc.message}",
                    severity="warning"))
                self._builders[name] = None
        return self._builders[name]

    def close(self) -> None:
        """Close the plugin providers built to show their requests."""
        for builder in self._builders.values():
            if isinstance(builder, PluginRequests):
                builder.close()

    def request(self, step: Step, call: ActionCall, deferred: bool) -> tuple[Any, str | None, Any, bool]:
        """(the request record, where it goes, its headers, whether ``with`` is in the record)."""
        builder = self.builder(step.provider, step.provider_type)
        if builder is None:  # the step as the runbook gives it
            body: dict[str, Any] = {"dispatch": {call.style: call.target}}
            if call.input is not None:
                body["input"] = call.input
            return body, None, None, False
        try:
            record = builder.request_body(call)
            wire = builder.build_request(call)
        except ProviderError as exc:
            # with earlier outputs still placeholders, the run may well build it
            if not deferred:
                where = step.path + ("dispatch",)
                self.problems.append(self.runbook.source.problem(
                    where, f"{self._label(where)}: fails at run time: {exc.message}", severity="warning"))
            return f"<error: {exc.message}>", None, None, True
        try:
            consumed = builder.request_body(call._replace(options={})) != record
        except ProviderError:
            consumed = True
        if wire is None:  # a plugin's own record; how it sends is its own
            return record, None, None, consumed
        return record, f"{wire.method} {wire.url}", wire.shown_headers(), consumed

    def step(self, step: Step) -> dict[str, Any]:
        """The plan of one step; of a for_each step, its item count (when it can be known) and
        the request of its first item."""
        if step.for_each is None:
            return self._step(step)
        fan_out = self.fan_out(step)
        try:
            return {**self._step(step), "for_each": fan_out}
        finally:
            for name in (step.item_name, "loop"):
                self.context.pop(name, None)
            self._unknown_names = frozenset()

    def fan_out(self, step: Step) -> dict[str, Any]:
        """Render ``for_each`` and put its first item (and ``loop``) in the context."""
        items = self.value(step.for_each, step.path + ("for_each",))
        if isinstance(items, dict):
            items = [{"key": k, "value": v} for k, v in items.items()]
        known = isinstance(items, list) and not _has_unknown(items)
        source = step.for_each if isinstance(step.for_each, str) else None
        planned = {"expression": _expression_text(source) if source else None,
                   "items": len(items) if known else None, "as": step.item_name,
                   "concurrency": step.concurrency, "fail_fast": step.fail_fast}
        if known and items:
            self.context[step.item_name] = items[0]
            self.context["loop"] = {"index": 1, "index0": 0, "length": len(items), "first": True,
                                    "last": len(items) == 1}
        else:
            self.context[step.item_name] = _Unknown((step.item_name,))
            self.context["loop"] = _Unknown(("loop",))
            self._unknown_names = frozenset({step.item_name, "loop"})
        return planned

    def call(self, step: Step) -> dict[str, Any]:
        """The plan of a step that calls a runbook: its inputs as far as they are known, and
        the called runbook planned with them (its steps under ``calls``)."""
        assert step.child is not None
        given = self.value(step.options, step.path + ("with",))
        given = given if isinstance(given, dict) else {}
        child_plan, problems = build_plan(step.child, self.templates, {**step.child.vars, **given}, self.environ)
        self.problems += problems
        return {
            **step.identity(),
            "runbook": step.target,
            "called": child_plan["runbook"],
            "with": given,
            "when": self.when(step),
            "uses": [f"steps.{s}" for src in _step_templates(step, self.templates)
                     for s in self.templates.compile(src).analysis.steps],
            "calls": child_plan["steps"],
            "finally": child_plan["finally"],
            "outputs": child_plan["outputs"],
        }

    def _step(self, step: Step) -> dict[str, Any]:
        if step.child is not None:
            return self.call(step)
        target = self.value(step.target, step.path + ("dispatch", step.style))
        inp = self.value(step.input, step.path + ("input",))
        options = self.value(step.options, step.path + ("with",))
        uses: dict[str, None] = {}
        secrets: dict[str, None] = {}
        for source in _step_templates(step, self.templates):
            analysis = self.templates.compile(source).analysis
            uses.update(dict.fromkeys(analysis.steps))
            secrets.update(dict.fromkeys(analysis.secrets))
        deferred = any(self._deferred(src) for value in (step.target, step.input, step.options)
                       for _, src in iter_templates(value))
        call = ActionCall(step.style, target, inp, options if isinstance(options, dict) else {})
        request, endpoint, headers, consumed = self.request(step, call, deferred)
        planned: dict[str, Any] = {
            **step.identity(),
            "endpoint": endpoint,
            "headers": headers,
            "when": self.when(step),
            "uses": [f"steps.{s}" for s in uses],
            "secrets": list(secrets),
            "request": request,
            "action": _action(self.resolved.get(step.id)),
            "timeout": step.timeout,
            "retry": {"attempts": step.retry.attempts, "backoff": step.retry.backoff,
                      "on": sorted(step.retry.on)},
            "continue_on_error": step.continue_on_error,
            "assert": [_expression_text(str(self.templates.condition(a))) for a in step.asserts],
        }
        if options and not consumed:
            planned["with"] = options
        if step.poll is not None and step.until is not None:
            until = step.until if isinstance(step.until, bool) else _expression_text(
                str(self.templates.condition(step.until)))
            planned["poll"] = {"until": until, "interval": step.poll.interval, "timeout": step.poll.timeout,
                               "backoff": step.poll.backoff}
        return planned


def _action(resolved: Resolved | None) -> dict[str, Any] | None:
    """What the remote check resolved the step's action to (``plan --remote``), else None."""
    if resolved is None:
        return None
    return {"name": resolved.name, "version": resolved.version, "cached": resolved.cached}


def _describe(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text if type(exc).__name__ in ("UndefinedError", "SecurityError") else f"{type(exc).__name__}: {text}"


def _where(path: tuple[Any, ...]) -> str:
    return field_name(path) or "runbook"


def _expression_text(source: str) -> str:
    match = _EXPRESSION.fullmatch(source.strip())
    return match.group(1).strip() if match else source


def _step_templates(step: Step, templates: Templates) -> list[str]:
    """What the step's request and ``when`` render (not its asserts and until, which read the step)."""
    return [src for path, src in step_templates(step.fields(), templates) if path[0] not in ("assert", "until")]


def build_plan(runbook: Runbook, templates: Templates, variables: Mapping[str, Any],
               environ: Mapping[str, str], resolved: Mapping[str, Resolved] | None = None,
               ) -> tuple[dict[str, Any], list[Problem]]:
    """The plan as data (what ``--json`` prints) and the problems a run would meet;
    ``resolved``: what the remote check resolved each step's action to (step id -> it)."""
    planner = _Planner(runbook, templates, variables, environ, resolved)
    try:
        steps = [planner.step(s) for s in runbook.steps]
        finally_steps = [planner.step(s) for s in runbook.finally_steps]
    finally:
        planner.close()
    outputs = {k: planner.value(v, ("outputs", k)) for k, v in runbook.outputs.items()}
    secrets = secret_references(runbook, templates)
    data = {
        "runbook": {"path": runbook.path, "name": runbook.name, "sha256": runbook.sha256},
        "inputs": [{"name": name, **{k: spec[k] for k in ("type", "required", "default", "description")
                                     if k in spec}, "value": variables.get(name)}
                   for name, spec in runbook.inputs.items()],
        "vars": dict(variables),
        "secrets": [{"name": name, "set": name in environ} for name in secrets],
        "steps": steps,
        "finally": finally_steps,
        "outputs": outputs,
    }
    return data, planner.problems


def plan(file: str, *, var_pairs: Sequence[str] = (), vars_files: Sequence[str] = (),
         json_output: bool = False, remote: RemoteCheck | None = None, stdout: TextIO = sys.stdout,
         stderr: TextIO = sys.stderr) -> int:
    """Print the plan of ``file``; 0, or LocatedErrors (exit 2) for an invalid runbook.

    Like ``run``, it knows every variable of the run: a ``vars.X`` nothing sets, or a
    ``--var`` the runbook does not know, is an error. ``remote`` (``--remote``): the remote
    input check, with these settings, as ``run`` makes it; what it finds is an error too.
    """
    templates = Templates()
    given = resolve_vars({}, vars_files, var_pairs)
    runbook, warnings = load_checked(file, templates, provided_vars=given, strict=True,
                                     cli_vars=cli_var_names(var_pairs))
    variables = {**runbook.vars, **given}
    resolved = _remote_check(runbook, templates, variables, remote) if remote is not None else None
    data, problems = build_plan(runbook, templates, variables, os.environ, resolved)
    problems = sorted(warnings + problems)
    if json_output:
        data["warnings"] = [{"file": p.file, "line": p.line, "col": p.col, "message": p.message}
                            for p in problems]
        stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
    else:
        from engine.report.plan_text import format_plan

        stdout.write(format_plan(data))
    for problem in problems:
        stderr.write(f"{problem}\n")
    return 0


def _remote_check(runbook: Runbook, templates: Templates, variables: Mapping[str, Any],
                  remote: RemoteCheck) -> Mapping[str, Resolved]:
    """The pre-flight of ``run`` with the remote check (secrets, providers, credentials, the
    actions' definitions): what each step's action resolved to; LocatedErrors (exit 2) for
    what ``run`` would refuse. Its providers are closed: nothing but the checks is sent."""
    from engine.session import new_run_info

    prepared = preflight(runbook, templates, vars=variables, environ=os.environ, run_info=new_run_info(),
                         remote=remote)
    for provider in prepared.providers.values():
        provider.close()
    return prepared.resolved or {}
