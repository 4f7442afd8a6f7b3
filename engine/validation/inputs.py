"""Declared inputs (SPEC §12): their declarations, and the values a run is given.

Each input under ``inputs:`` is a small JSON Schema (``type``, ``enum``, ``minimum``,
``maximum``, ``pattern``) plus ``default``, ``required`` and ``description``. The values a
run is given (``--var``, ``--vars-file``, a batch row, a caller's ``with:``) are checked
against them before anything is sent, each problem located at the input's declaration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import Problem
from engine.loader import Document
from engine.schemas import checker, schema_messages

__all__ = ["input_problems", "inputs_schema", "input_value_schema"]

#: The keys of an input that constrain its value (the rest say how it is given and shown).
_CONSTRAINTS = ("type", "enum", "minimum", "maximum", "pattern")


def input_value_schema(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON Schema a value of the input ``spec`` must meet."""
    return {k: spec[k] for k in _CONSTRAINTS if k in spec}


def inputs_schema(inputs: Mapping[str, Mapping[str, Any]], title: str | None = None) -> dict[str, Any]:
    """The runbook's inputs as one JSON Schema of the mapping a run is given
    (``runbook schema inputs FILE``)."""
    properties: dict[str, Any] = {}
    for name, spec in inputs.items():
        prop = input_value_schema(spec)
        for key in ("description", "default"):
            if key in spec:
                prop[key] = spec[key]
        properties[name] = prop
    schema: dict[str, Any] = {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"}
    if title:
        schema["title"] = title
    schema["properties"] = properties
    required = [name for name, spec in inputs.items() if spec.get("required")]
    if required:
        schema["required"] = required
    return schema


def _inputs(doc: Document) -> dict[str, dict[str, Any]]:
    inputs = doc.data.get("inputs") if isinstance(doc.data, dict) else None
    if not isinstance(inputs, dict):
        return {}
    return {name: spec for name, spec in inputs.items() if isinstance(spec, dict)}


def input_problems(doc: Document, given: Mapping[str, Any] | None = None, *, strict: bool = False) -> list[Problem]:
    """What is wrong with the inputs' declarations and, with ``given`` (the values a run is
    given), with those values; with ``strict`` (every value of the run is known), a required
    input that is not given."""
    inputs = _inputs(doc)
    if not inputs:
        return []
    source, problems = doc.source, []
    defaults = doc.data.get("vars") if isinstance(doc.data.get("vars"), dict) else {}
    for name, spec in inputs.items():
        base = ("inputs", name)
        if name in defaults:
            problems.append(source.problem(base, f"inputs.{name}: {name!r} is also under vars: a name is an "
                                                 "input or an untyped variable, not both", key=True))
        if spec.get("required") is True and "default" in spec:
            problems.append(source.problem(base + ("default",), f"inputs.{name}: a required input has no "
                                                                "default (drop one of the two)", key=True))
        elif "default" in spec:
            problems += _value_problems(doc, name, spec, spec["default"], base + ("default",), "its default")
        if given is not None and name in given:
            problems += _value_problems(doc, name, spec, given[name], base, "the value given")
        elif strict and spec.get("required") is True:
            problems.append(source.problem(base, f"inputs.{name}: input {name!r} is required: give the run "
                                                 f"--var {name}=VALUE (or --vars-file)", key=True))
    return problems


def _value_problems(doc: Document, name: str, spec: Mapping[str, Any], value: Any, at: tuple[Any, ...],
                    what: str) -> list[Problem]:
    schema = input_value_schema(spec)
    if not schema:
        return []
    try:
        messages = schema_messages(checker(schema), value)
    except Exception as exc:  # a pattern that is not a regular expression, say
        return [doc.source.problem(("inputs", name), f"inputs.{name}: not a usable schema: {exc}", key=True)]
    return [doc.source.problem(at, f"inputs.{name}: {what}: {m.text}") for m in messages]
