"""The linter: warnings about what is valid but probably not what the author meant.

``vars.X`` that no default, ``--vars-file`` or ``--var`` sets, and YAML 1.1 habits
(``yes``, ``0123``, ``1.10``) that YAML 1.2, which runbook reads, reads otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from engine.errors import Problem
from engine.loader import Document, Path
from engine.providers.registry import type_info
from engine.schemas import YAML11_BOOLEANS, YAML12_BOOLEANS, bool_fix, suggest
from engine.templating import TemplateError, Templates, iter_templates, step_templates, unsafe_attribute
from engine.validation.common import items, label

__all__ = ["lint_document"]

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
            for i, step in enumerate(items(data.get(section))):
                if not isinstance(step, dict):
                    continue
                yield from step_templates(step, self.templates, (section, i))
        if isinstance(data.get("outputs"), dict):
            yield from iter_templates(data["outputs"], ("outputs",))

    def check_vars(self) -> None:
        defaults, inputs = self.data.get("vars"), self.data.get("inputs")
        declared = (set(defaults) if isinstance(defaults, dict) else set()) | (
            set(inputs) if isinstance(inputs, dict) else set())
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
                message=f"--var {name}: this runbook neither declares vars.{name} under "
                        f"{'vars: or inputs:' if inputs else 'vars:'} nor uses "
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
            for i, step in enumerate(items(data.get(section))):
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
                                f"({YAML12_BOOLEANS}): write {bool_fix(value)} for a boolean, "
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
