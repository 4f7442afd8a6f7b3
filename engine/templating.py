"""The one sandboxed Jinja environment: compile, analyse, render, taint.

A string is a template when it holds ``{{``, ``{%`` or ``{#``; any other string
is passed through untouched, without Jinja. A string that is exactly one
``{{ expression }}`` yields the expression's native value (int, bool, list,
mapping, None); any other template yields a string. Every template source is
compiled at most once per process (:class:`Templates` caches by source).

Taint: a rendered value whose template names ``secrets`` (through any filter,
loop or concatenation) is tainted. :func:`render_value` returns both the real
value and a redacted twin in which every tainted value is ``***``, so what is
recorded never depends on finding a secret's text.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeAlias, TypeGuard

from engine.schemas import YAML11_BOOLEANS
from engine.template_limits import (
    LimitExceeded,
    Limits,
    NotData,
    budget,
    check_binop,
    check_call,
    check_data,
    guard_filter,
    limits_from_env,
    sized,
)

if TYPE_CHECKING:  # jinja2 is imported when a template needs it, not to validate lookups
    from jinja2 import nodes
    from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "FILTERS",
    "REDACTED",
    "CONTEXT_NAMES",
    "step_templates",
    "TemplateError",
    "Analysis",
    "field_name",
    "unsafe_attribute",
    "Templates",
    "is_template",
    "render_value",
    "truthy",
]

REDACTED = "***"
CONTEXT_NAMES = ("vars", "steps", "secrets", "env", "run")
_MARKERS = ("{{", "{%", "{#")


_FALSE_STRINGS = frozenset({"", "false", "0", "no", "off", "none", "null"})


def truthy(value: Any) -> bool:
    """Truth of a rendered condition (``when``, ``assert``); the strings "false", "0", "no",
    "off", "none", "null" and "" are false."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_STRINGS
    return bool(value)


def is_template(value: object) -> bool:
    """True when ``value`` is a string with template syntax."""
    # Most strings have no brace at all: one search decides them.
    return isinstance(value, str) and "{" in value and ("{{" in value or "{%" in value or "{#" in value)


def _b64encode(value: Any) -> str:
    raw = value if isinstance(value, bytes) else str(value).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def _b64decode(value: Any) -> str:
    return base64.b64decode(str(value)).decode("utf-8")


def _sha256(value: Any) -> str:
    return hashlib.sha256(str(value).encode("utf-8")).hexdigest()


def _from_json(value: Any) -> Any:
    return json.loads(str(value))


#: Filters added to Jinja's own (``tojson`` is built in).
FILTERS: dict[str, Callable[..., Any]] = {
    "b64encode": _b64encode,
    "b64decode": _b64decode,
    "sha256": _sha256,
    "from_json": _from_json,
}


class TemplateError(Exception):
    """A template that does not compile or does not render.

    ``path`` is the field that failed (keys and indexes below where rendering began) and
    ``detail`` the reason without it; ``str()`` is ``"input.text: detail"``.
    """

    def __init__(self, detail: str, path: tuple[Any, ...] = ()) -> None:
        super().__init__(detail)
        self.detail = detail
        self.path = path

    def __str__(self) -> str:
        where = field_name(self.path)
        return f"{where}: {self.detail}" if where else self.detail


def field_name(path: tuple[Any, ...]) -> str:
    """``input.items[0].id`` for the path ``("input", "items", 0, "id")``."""
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


#: Attributes the sandbox refuses whatever the object (besides every name starting with ``__``):
#: Python 2's function and method internals, frames and code of generators and coroutines, ``mro``.
UNSAFE_ATTRIBUTES = frozenset({
    "mro", "func_globals", "func_code", "func_closure", "func_defaults", "func_dict",
    "im_func", "im_self", "im_class", "gi_frame", "gi_code", "gi_yieldfrom",
    "cr_frame", "cr_code", "cr_await", "ag_frame", "ag_code", "ag_await",
})

#: Methods that change a list, mapping or set in place: the immutable sandbox refuses to call them.
MUTATING_METHODS = frozenset({
    "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", "update",
    "setdefault", "popitem", "add", "discard", "difference_update", "intersection_update",
    "symmetric_difference_update", "appendleft", "extendleft", "popleft", "rotate",
})


def unsafe_attribute(name: object) -> TypeGuard[str]:
    """Whether the sandbox would refuse the attribute ``name`` (``__class__``, ``mro``, ...)."""
    return isinstance(name, str) and (name.startswith("__") or name in UNSAFE_ATTRIBUTES)


class Analysis(NamedTuple):
    """What a template refers to, found in its syntax tree without rendering it.

    ``step_refs`` holds each constant lookup below ``steps`` (``("contact", "output", "id")``,
    at most three keys); ``filters`` and ``tests`` the names it applies; ``unsafe`` the
    attributes the sandbox would refuse and ``mutating`` the in-place methods it calls.
    """

    names: frozenset[str]
    steps: tuple[str, ...]
    secrets: tuple[str, ...]
    vars: tuple[str, ...]
    dynamic_steps: bool
    dynamic_secrets: bool
    dynamic_vars: bool = False
    step_refs: tuple[tuple[Any, ...], ...] = ()
    filters: tuple[str, ...] = ()
    tests: tuple[str, ...] = ()
    unsafe: tuple[str, ...] = ()
    mutating: tuple[str, ...] = ()

    @property
    def tainted(self) -> bool:
        return "secrets" in self.names


_Path: TypeAlias = tuple[Any, ...]  # (context name, ((is_attribute, key), ...))


def _simple_path(node: nodes.Node) -> _Path | None:
    """``steps.a.output['id']`` as a path, or None for anything that needs Jinja."""
    from jinja2 import nodes

    ops: list[tuple[bool, Any]] = []
    while True:
        if isinstance(node, nodes.Getattr):
            ops.append((True, node.attr))
            node = node.node
        elif (isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const)
              and type(node.arg.value) in (str, int)):
            ops.append((False, node.arg.value))
            node = node.node
        elif isinstance(node, nodes.Name) and node.ctx == "load" and node.name in CONTEXT_NAMES:
            return node.name, tuple(reversed(ops))
        else:
            return None


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_KEY = r"""(?:\.[A-Za-z_][A-Za-z0-9_]*|\[\s*(?:'[^'\\]*'|"[^"\\]*"|[0-9]+)\s*\])"""
_LOOKUP = re.compile(r"\{\{\s*(" + _IDENT + r")(" + _KEY + r"*)\s*\}\}")
_KEYS = re.compile(_KEY)


#: The context names, each the one string object every lookup's parts hold.
_ROOTS = {name: name for name in CONTEXT_NAMES}


def _key(token: str, shared: dict[Any, Any]) -> tuple[bool, Any]:
    """One step of a lookup: ``(True, "output")`` for ``.output``, ``(False, 0)`` for ``[0]``; the
    same tuple (and string) as every other template that ``shared`` has seen it in."""
    if token.startswith("."):
        key: tuple[bool, Any] = (True, sys.intern(token[1:]))
    else:
        inner = token[1:-1].strip()
        key = (False, sys.intern(inner[1:-1]) if inner[0] in "'\"" else int(inner))
    known: tuple[bool, Any] = shared.setdefault(key, key)
    return known


def _lex_lookups(source: str, shared: dict[Any, Any] | None = None) -> tuple[Any, ...] | None:
    """The parts of a template made only of text and ``{{ name.key['k'][0] }}`` lookups.

    The same parts Jinja's parser would give, found by one
    regular expression; None for anything else, which then goes to Jinja. The keys'
    tuples are the ones in ``shared``, when given: a runbook of 20,000 steps lexes
    20,000 templates, most of them made of the same few keys (``.output``).
    """
    shared = {} if shared is None else shared
    parts: list[Any] = []
    pos = 0
    for match in _LOOKUP.finditer(source):
        text = source[pos:match.start()]
        if text:
            if any(m in text for m in _MARKERS):
                return None
            parts.append(text)
        root = _ROOTS.get(match.group(1))
        if root is None:
            return None
        parts.append((root, tuple(_key(k, shared) for k in _KEYS.findall(match.group(2)))))
        pos = match.end()
    tail = source[pos:]
    if tail:
        if any(m in tail for m in _MARKERS):
            return None
        parts.append(tail)
    return tuple(parts) if pos else None


def _tree_paths(tree: nodes.Template) -> tuple[list[_Path], set[str], bool]:
    """Lookups on a name by a constant key, names used otherwise (as ``(name, ())``),
    the names loaded, and whether the template assigns any name."""
    from jinja2 import nodes

    paths: list[_Path] = []
    uses: dict[str, int] = {}
    stores = False
    node: Any  # jinja2's nodes declare their fields untyped
    for node in tree.find_all((nodes.Name, nodes.Getattr, nodes.Getitem)):
        if isinstance(node, nodes.Name):
            if node.ctx == "load":
                uses[node.name] = uses.get(node.name, 0) + 1
            else:
                stores = True
        elif isinstance(node.node, nodes.Name) and node.node.ctx == "load":
            if isinstance(node, nodes.Getattr):
                paths.append((node.node.name, ((True, node.attr),)))
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                paths.append((node.node.name, ((False, node.arg.value),)))
    for name, count in uses.items():
        if count > sum(1 for n, _ in paths if n == name):
            paths.append((name, ()))
    return paths, set(uses), stores


def _analysis(paths: list[_Path], names: frozenset[str], chains: list[_Path] | None = None,
              filters: tuple[str, ...] = (), tests: tuple[str, ...] = (),
              unsafe: tuple[str, ...] = (), mutating: tuple[str, ...] = ()) -> Analysis:
    """Keys looked up by constant name on ``steps``, ``secrets`` and ``vars`` (in order, once
    each), whether ``steps``, ``secrets`` or ``vars`` is used any other way, and the constant
    lookups below ``steps`` (``chains``: whole lookup paths; ``paths`` when not given)."""
    found: dict[str, dict[str, None]] = {"steps": {}, "secrets": {}, "vars": {}}
    dynamic: set[str] = set()
    for name, ops in paths:
        keys = found.get(name)
        if keys is None:
            continue
        if ops and isinstance(ops[0][1], str):
            keys[ops[0][1]] = None
        else:
            dynamic.add(name)
    refs: dict[tuple[Any, ...], None] = {}
    bad: dict[str, None] = dict.fromkeys(unsafe)
    for name, ops in paths if chains is None else chains:
        for _, key in ops:
            if unsafe_attribute(key):
                bad[key] = None
        if name == "steps" and ops and isinstance(ops[0][1], str):
            refs[tuple(key for _, key in ops[:3])] = None
    # `steps.a.output.id` looks up `steps.a` too: keep the longest lookups only.
    refs = {ref: None for ref in refs
            if not any(len(other) > len(ref) and other[:len(ref)] == ref for other in refs)}
    return Analysis(names=names, steps=tuple(found["steps"]), secrets=tuple(found["secrets"]),
                    vars=tuple(found["vars"]), dynamic_steps="steps" in dynamic,
                    dynamic_secrets="secrets" in dynamic, dynamic_vars="vars" in dynamic,
                    step_refs=tuple(refs), filters=filters, tests=tests, unsafe=tuple(bad),
                    mutating=mutating)


def _tree_facts(tree: nodes.Template) -> tuple[list[_Path], tuple[str, ...], tuple[str, ...],
                                               tuple[str, ...], tuple[str, ...]]:
    """Every constant lookup chain on a context name, the filters and tests applied, the
    unsafe attributes looked up (on anything) and the in-place methods called."""
    from jinja2 import nodes

    chains: list[_Path] = []
    unsafe: dict[str, None] = {}
    node: Any  # jinja2's nodes declare their fields untyped
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        key = node.attr if isinstance(node, nodes.Getattr) else (
            node.arg.value if isinstance(node.arg, nodes.Const) else None)
        if unsafe_attribute(key):
            unsafe[key] = None
        path = _simple_path(node)
        if path is not None:
            chains.append(path)
    filters = tuple(dict.fromkeys(f.name for f in tree.find_all(nodes.Filter)))
    tests = tuple(dict.fromkeys(t.name for t in tree.find_all(nodes.Test)))
    mutating = tuple(dict.fromkeys(
        call.node.attr for call in tree.find_all(nodes.Call)
        if isinstance(call.node, nodes.Getattr) and call.node.attr in MUTATING_METHODS
    ))
    return chains, filters, tests, tuple(unsafe), mutating


class _Compiled:
    """One template source: its analysis and how to render it.

    Most runbook templates are lookups (``{{ steps.a.output.id }}``) inside
    text. Those are rendered by walking the path, never compiled: items of
    plain mappings and lists directly, anything else with the sandbox's own
    ``getattr``/``getitem`` (the same lookups, checks and errors as Jinja's
    generated code). Any other template is compiled by Jinja once, on first use.
    """

    __slots__ = ("source", "analysis", "_expression", "_template", "_parts", "_lone")

    def __init__(self, source: str, analysis: Analysis, expression: str | None,
                 parts: tuple[Any, ...] | None) -> None:
        self.source = source
        self.analysis = analysis
        self._expression: Any = expression
        self._template: Any = None
        self._parts = parts
        self._lone = expression is not None and parts is not None and len(parts) == 1

    @staticmethod
    def _lookup(templates: Templates, context: Mapping[str, Any], path: _Path) -> Any:
        name, ops = path
        value = context.get(name, _MISSING)
        for is_attribute, key in ops:
            # JSON data, the usual case: a key of a mapping, an index of a list. The
            # sandbox returns the same item, so Jinja is neither needed nor imported.
            if isinstance(value, dict) and key in value:
                value = value[key]
            elif isinstance(value, list) and not is_attribute and type(key) is int and key < len(value):
                value = value[key]
            else:
                return _sandboxed_lookup(templates.env, context, path)
        if value is _MISSING:
            return _sandboxed_lookup(templates.env, context, path)
        return value

    def render(self, templates: Templates, context: Mapping[str, Any]) -> Any:
        """The rendered value (native for a lone expression, else a string)."""
        parts = self._parts
        if parts is not None:
            if self._lone:
                return self._lookup(templates, context, parts[0])
            return "".join(
                p if isinstance(p, str) else str(self._lookup(templates, context, p)) for p in parts
            )
        from jinja2 import Undefined

        env = templates.env
        limits = templates.limits
        if self._expression is not None:
            if isinstance(self._expression, str):
                self._expression = env.compile_expression(
                    self._expression, undefined_to_none=False
                )
            with budget(limits):
                value = self._expression(context)
            if isinstance(value, Undefined):
                value._fail_with_undefined_error()
            return check_data(value, limits)
        if self._template is None:
            self._template = env.from_string(self.source)
        pieces: list[str] = []
        size = 0
        with budget(limits):
            for piece in self._template.generate(context):
                size += len(piece)
                if size > limits.max_size:
                    raise LimitExceeded(f"the rendered text is over the limit of {limits.max_size:,} "
                                        "characters (RUNBOOK_TEMPLATE_MAX_SIZE)")
                pieces.append(piece)
        return "".join(pieces)


_MISSING = object()


def _sandboxed_lookup(env: ImmutableSandboxedEnvironment, context: Mapping[str, Any], path: _Path) -> Any:
    """Walk ``path`` with the sandbox's ``getattr``/``getitem``: the same checks and errors as
    Jinja's generated code, for whatever is not plain JSON data (or is missing)."""
    from jinja2 import Undefined, UndefinedError

    name, ops = path
    if name not in context:
        raise UndefinedError(f"{name!r} is undefined")
    value = context[name]
    for is_attribute, key in ops:
        value = env.getattr(value, key) if is_attribute else env.getitem(value, key)
        if isinstance(value, Undefined):
            value._fail_with_undefined_error()
    return value


#: Jinja globals a runbook has a use for; ``cycler``, ``joiner``, ``lipsum`` and ``namespace``
#: are removed (objects that are not data, and the makings of a loop that doubles a value).
KEPT_GLOBALS = ("range", "dict")


def _make_environment(limits: Limits) -> ImmutableSandboxedEnvironment:
    """The one sandbox: ``a.b`` on a mapping reads the key ``b`` first, and what a render may
    build is bounded (:mod:`engine.template_limits`).

    Jinja looks up attributes before items, so ``vars.items`` or
    ``steps.x.output.keys`` would be dict methods; runbooks address JSON data,
    where the key is what anyone means.
    """
    from jinja2 import StrictUndefined, Undefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Environment(ImmutableSandboxedEnvironment):
        # Intercepted operators are also never folded into constants at compile time,
        # so `'a' * 10**9` is refused when it runs instead of built while compiling.
        intercepted_binops = frozenset({"*", "**", "+", "%"})

        def getattr(self, obj: Any, attribute: str) -> Any:
            if isinstance(obj, Mapping) and attribute in obj:
                return obj[attribute]
            return super().getattr(obj, attribute)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            check_binop(operator, left, right, limits)
            return sized(super().call_binop(context, operator, left, right), limits)

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
            check_call(__obj, args, kwargs, limits)
            return sized(super().call(__context, __obj, *args, **kwargs), limits)

    def finalize(value: Any) -> Any:
        """What a ``{{ }}`` inside text may print: data, never an object's repr."""
        if isinstance(value, Undefined):
            return value
        return check_data(value, limits)

    env = Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True,
                      finalize=finalize)
    env.filters.update(FILTERS)
    env.filters = {name: guard_filter(name, func, limits) for name, func in env.filters.items()}
    env.globals = {name: env.globals[name] for name in KEPT_GLOBALS}
    return env


#: How many plain lookups :meth:`Templates.forget_lookups` keeps compiled.
RECENT_LOOKUPS = 64

#: The sets of context names lookups use (a few: they are subsets of CONTEXT_NAMES), shared.
_NAME_SETS: dict[frozenset[str], frozenset[str]] = {}


class Templates:
    """Compiles, analyses and renders template strings; each source at most once.

    Jinja itself is imported only when a template needs it: validating a
    runbook whose templates are all plain lookups never loads it.
    """

    def __init__(self, limits: Limits | None = None) -> None:
        self._env: ImmutableSandboxedEnvironment | None = None
        self._cache: dict[str, _Compiled] = {}
        self._recent: dict[str, _Compiled] | None = None  # see forget_lookups
        self._unused: dict[str, _Compiled] = {}  # the lookups compiled before, not yet used since
        self._shared: dict[Any, Any] = {}  # the lookup keys of the templates lexed (see _lex_lookups)
        self._lock = threading.Lock()
        self.limits = limits or limits_from_env()

    def forget_lookups(self) -> None:
        """From now on keep only the last :data:`RECENT_LOOKUPS` plain lookups used, and every
        template Jinja has to render.

        ``run`` calls it after pre-flight. Validation compiled every template, and a run renders
        them step after step, most once: keeping the lookups of a 20,000-step runbook to the end
        costs some 25 MiB. Each is dropped instead once the run has used it (it is lexed again,
        a regular expression, if it falls out of the recent ones and is used again), so that the
        memory the steps' outputs take as the run goes on is the memory its templates leave.
        """
        self._unused = {source: c for source, c in self._cache.items() if c._parts is not None}
        self._cache = {source: c for source, c in self._cache.items() if c._parts is None}
        self._recent = {}
        self._shared = {}

    @property
    def env(self) -> ImmutableSandboxedEnvironment:
        """The sandboxed Jinja environment (made on first use)."""
        if self._env is None:
            self._env = _make_environment(self.limits)
        return self._env

    def compile(self, source: str) -> _Compiled:
        """Parse ``source`` (raising :class:`TemplateError`) and cache it."""
        compiled = self._cache.get(source)
        if compiled is not None:
            return compiled
        recent = self._recent
        if recent is not None:
            compiled = recent.get(source) or self._unused.pop(source, None)
            if compiled is not None:
                self._remember(source, compiled, recent)
                return compiled
        parts = _lex_lookups(source, self._shared)
        if parts is not None:
            paths = [p for p in parts if not isinstance(p, str)]
            names = frozenset(p[0] for p in paths)
            analysis = _analysis(paths, _NAME_SETS.setdefault(names, names))
            lone = len(parts) == 1 and source.startswith("{{") and source.endswith("}}")
            # A lookup renders by walking its parts: whether it is a lone expression matters, its
            # text (which Jinja would compile) does not.
            compiled = _Compiled(source, analysis, "" if lone else None, parts)
            if recent is None:
                self._cache[source] = compiled
            else:
                self._remember(source, compiled, recent)
            return compiled
        from jinja2 import TemplateSyntaxError, meta, nodes

        try:
            tree = self.env.parse(source)
        except TemplateSyntaxError as exc:
            raise TemplateError(f"template syntax error: {exc.message}") from None
        paths, loads, stores = _tree_paths(tree)
        stores = stores or tree.find(nodes.Macro) is not None  # a macro's name is declared too
        names = frozenset(meta.find_undeclared_variables(tree)) if stores else frozenset(loads)
        chains, filters, tests, unsafe, mutating = _tree_facts(tree)
        analysis = _analysis(paths, names, chains, filters, tests, unsafe, mutating)
        expression = None
        body = tree.body
        if (
            source.startswith("{{")
            and source.endswith("}}")
            and len(body) == 1
            and isinstance(body[0], nodes.Output)
            and len(body[0].nodes) == 1
            and not isinstance(body[0].nodes[0], nodes.TemplateData)
        ):
            expression = source[2:-2]
        compiled = _Compiled(source, analysis, expression, None)
        self._cache[source] = compiled
        return compiled

    def _remember(self, source: str, compiled: _Compiled, recent: dict[str, _Compiled]) -> None:
        """Make ``source`` the most recent of the lookups kept (see :meth:`forget_lookups`)."""
        with self._lock:  # the items of a fan-out render on many threads
            if recent.pop(source, None) is None and len(recent) >= RECENT_LOOKUPS:
                del recent[next(iter(recent))]  # the least recently used
            recent[source] = compiled

    def condition(self, source: str | bool) -> str | bool:
        """A ``when``/``assert`` expression as a template: bare expressions get ``{{ }}``."""
        if isinstance(source, bool) or is_template(source):
            return source
        return "{{ " + source + " }}"

    def render(self, source: str, context: Mapping[str, Any]) -> Any:
        """Render one template string to its (native, for a lone expression) value."""
        compiled = self.compile(source)
        try:
            return compiled.render(self, context)
        except Exception as exc:  # jinja2 raises many types; all mean "did not render"
            raise TemplateError(_describe(exc)) from None


def _describe(exc: Exception) -> str:
    name = type(exc).__name__
    text = str(exc) or name
    if isinstance(exc, NotData):
        return f"renders to {text}"
    if name in ("UndefinedError", "SecurityError", "LimitExceeded"):
        return text
    if isinstance(exc, RecursionError):
        return "the template calls itself too deeply (a macro without an end?)"
    return f"{name}: {text}"


def render_value(
    value: Any,
    templates: Templates,
    context: Mapping[str, Any],
    path: tuple[Any, ...] | str = (),
    on_tainted: Callable[[Any], None] | None = None,
) -> tuple[Any, Any]:
    """Render every template inside ``value``; return ``(real, redacted)``.

    Values without templates are returned as they are (not copied). Each
    tainted value is also handed to ``on_tainted`` (so that a provider echoing
    it back can be scrubbed too). Errors are raised as :class:`TemplateError`
    whose ``path`` is ``path`` followed by the keys down to the failing string.
    """
    try:
        return _render_value(value, templates, context, on_tainted)
    except TemplateError as exc:
        exc.path = ((path,) if isinstance(path, str) else tuple(path)) + exc.path
        raise


def _render_value(value: Any, templates: Templates, context: Mapping[str, Any],
                  on_tainted: Callable[[Any], None] | None) -> tuple[Any, Any]:
    # The failing field's path is built on the way out of an error only, not for every value.
    if isinstance(value, str):
        if not is_template(value):
            return value, value
        try:
            real = templates.render(value, context)
        except TemplateError as exc:
            if templates.compile(value).analysis.tainted:
                # its message could quote a value computed from a secret: keep only the kind
                kind = exc.detail.split(":", 1)[0] if ":" in exc.detail else "error"
                raise TemplateError(f"{kind} (the details are withheld: this template reads secrets)") from None
            raise
        if templates.compile(value).analysis.tainted:
            if on_tainted is not None:
                on_tainted(real)
            return real, REDACTED
        return real, real
    if isinstance(value, dict):
        real_d: dict[str, Any] = {}
        red_d: dict[str, Any] = {}
        for k, v in value.items():
            try:
                real_d[k], red_d[k] = _render_value(v, templates, context, on_tainted)
            except TemplateError as exc:
                exc.path = (k,) + exc.path
                raise
        return real_d, red_d
    if isinstance(value, list):
        real_l: list[Any] = []
        red_l: list[Any] = []
        for i, v in enumerate(value):
            try:
                r, d = _render_value(v, templates, context, on_tainted)
            except TemplateError as exc:
                exc.path = (i,) + exc.path
                raise
            real_l.append(r)
            red_l.append(d)
        return real_l, red_l
    return value, value


def contains_template(value: Any) -> bool:
    """True when any string inside ``value`` is a template."""
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(contains_template(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_template(v) for v in value)
    return False


def step_templates(step: Mapping[str, Any], templates: Templates,
                   base: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    """Every template of one step, given as its runbook fields (a step's mapping as written,
    or :meth:`~engine.model.Step.fields`): the one walk over them, in the order a run renders
    them. ``for_each``, ``dispatch``, ``input`` and ``with`` are walked for template strings;
    ``when``, each ``assert`` and ``until`` are conditions, a bare expression given its ``{{ }}``. Paths
    start with ``base``."""
    for key in ("for_each", "dispatch", "input", "with"):
        if key in step:
            yield from iter_templates(step[key], base + (key,))
    when = step.get("when")
    if isinstance(when, str) and when.strip().lower() not in YAML11_BOOLEANS:  # a word: validation's
        yield base + ("when",), str(templates.condition(when))  # a str stays a str
    asserts = step.get("assert")
    for i, expr in enumerate(asserts if isinstance(asserts, list) else ()):
        if isinstance(expr, str):
            yield base + ("assert", i), str(templates.condition(expr))
    until = step.get("until")
    if isinstance(until, str):
        yield base + ("until",), str(templates.condition(until))


def iter_templates(value: Any, path: tuple[Any, ...] = ()) -> Any:
    """Yield ``(path, source)`` for every template string inside ``value``."""
    if isinstance(value, str):
        if is_template(value):
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from iter_templates(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from iter_templates(v, path + (i,))
