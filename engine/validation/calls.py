"""Steps that call another runbook (``runbook:``, SPEC §12), checked with their caller.

A called runbook is loaded and checked like the caller (recursively): a missing file, a cycle
or a depth over :data:`MAX_CALL_DEPTH` is an error at the line of ``runbook:``; the called
file's own errors are reported at their own lines; the call's ``with:`` gives the called
runbook's inputs, so an unknown or a missing required input, or a literal value its input
refuses, is an error at ``with:``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from typing import Any

from engine.errors import LocatedErrors, Problem
from engine.loader import Document, Path, load_file
from engine.schemas import checker, schema_messages, suggest
from engine.templating import contains_template
from engine.validation.common import items, label
from engine.validation.inputs import input_value_schema

__all__ = ["MAX_CALL_DEPTH", "called_path", "call_problems", "with_messages"]

#: How deep runbooks may call runbooks.
MAX_CALL_DEPTH = 8


def called_path(caller_file: str, ref: str) -> str:
    """The file a ``runbook:`` reference names: relative to the calling file's folder."""
    return os.path.normpath(os.path.join(os.path.dirname(caller_file), ref))


def _calls(doc: Document) -> Iterator[tuple[Path, dict[str, Any]]]:
    for section in ("steps", "finally"):
        for i, step in enumerate(items(doc.data.get(section))):
            if isinstance(step, dict) and isinstance(step.get("runbook"), str):
                yield (section, i), step


def call_problems(doc: Document, check: Any, stack: tuple[str, ...]) -> list[Problem]:
    """The problems of ``doc``'s calls: each called file checked with ``check(doc, stack=...)``
    (the caller's own checks, recursively), and each call's ``with:`` against its inputs.
    ``stack`` holds the real paths of the runbooks being called, the caller last."""
    problems: list[Problem] = []

    def error(where: Path, message: str) -> None:
        problems.append(doc.source.problem(where, f"{label(doc.data, where)}: {message}"))

    for path, step in _calls(doc):
        ref = step["runbook"]
        at = path + ("runbook",)
        target = called_path(doc.source.file, ref)
        real = os.path.realpath(target)

        if real in stack:
            chain = " -> ".join(os.path.relpath(p) for p in (*stack[stack.index(real):], real))
            error(at, f"{ref!r} is a cycle: {chain}")
            continue
        if len(stack) >= MAX_CALL_DEPTH:
            error(at, f"{ref!r} would be the {len(stack) + 1}th runbook in one chain of calls; at most "
                  f"{MAX_CALL_DEPTH} may call each other")
            continue
        if not os.path.isfile(target):
            error(at, f"no runbook at {target} (a path relative to {os.path.dirname(doc.source.file) or '.'})")
            continue
        try:
            child = load_file(target)
        except LocatedErrors as exc:
            problems.extend(exc.problems)
            error(at, f"the called runbook {target} does not load (see its errors)")
            continue
        found = check(child, stack=(*stack, real))
        problems.extend(found)
        if any(p.severity == "error" for p in found):
            error(at, f"the called runbook {target} is not valid (see its errors)")
            continue
        inputs = child.data.get("inputs") if isinstance(child.data.get("inputs"), dict) else {}
        given = step.get("with")
        for where, message in with_messages(inputs, given if isinstance(given, dict) else {}, path + ("with",)):
            error(where, message)
    return problems


def with_messages(inputs: Mapping[str, Any], given: Mapping[str, Any],
                  base: Path) -> list[tuple[Path, str]]:
    """What is wrong with a call's ``with:`` (``given``) for the called runbook's ``inputs``:
    unknown names, missing required ones, values their inputs refuse (a template is checked
    once rendered, at run time). Each with the path it is about."""
    found: list[tuple[Path, str]] = []
    for name in given:
        if name not in inputs:
            known = sorted(inputs)
            found.append((base + (name,), f"the called runbook has no input {name!r}{suggest(str(name), known)}; "
                                          f"its inputs: {', '.join(known) or 'none'}"))
    for name, spec in inputs.items():
        if not isinstance(spec, dict):
            continue
        if name not in given:
            if spec.get("required") is True:
                found.append((base, f"the called runbook's input {name!r} is required: give it in with:"))
            continue
        value = given[name]
        schema = input_value_schema(spec)
        if schema and not contains_template(value):
            found += [(base + (name,), f"input {name!r}: {m.text}") for m in schema_messages(checker(schema), value)]
    return found
