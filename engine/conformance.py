"""A quick yes/no check of JSON Schema conformance, so valid input never waits for jsonschema.

Importing jsonschema costs 50-100 ms, more than the rest of ``runbook validate``
on a small file. Most input is valid, so a checker (:class:`engine.schemas.SchemaChecker`)
first asks the :func:`predicate` of its schema, which compiles the keywords our schemas
use into closures, and builds a jsonschema validator only when the answer is not a plain
yes: to locate and word the problems, or for a keyword it does not know. It must never
say yes where jsonschema says no; ``tests/test_conformance.py`` compares the two on every
example and on thousands of mutated documents.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from functools import lru_cache
from typing import Any

__all__ = ["conforms", "predicate", "Same"]

Check = Callable[[Any], bool]

#: Keywords that say nothing about validity. ``x-messages`` is runbook's own: how a failure of a
#: keyword of that schema is worded (:func:`engine.schemas.schema_messages`); ``errorMessage`` is
#: yaml-language-server's (an editor's wording of the same failure).
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description",
                          "examples", "default", "format", "deprecated", "readOnly", "writeOnly",
                          "x-messages", "errorMessage"})
_KEYWORDS = frozenset({"type", "enum", "const", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
                       "minLength", "maxLength", "pattern", "minimum", "maximum", "exclusiveMinimum",
                       "exclusiveMaximum", "items", "minItems", "maxItems", "properties",
                       "additionalProperties", "required", "propertyNames", "minProperties", "maxProperties"})


class _Unsure(Exception):
    """A keyword this checker does not interpret: let jsonschema decide."""


def _always(value: Any) -> bool:
    return True


def _never(value: Any) -> bool:
    return False


def _unsure(value: Any) -> bool:
    raise _Unsure


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (isinstance(value, float) and value.is_integer())


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1.0 is 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    return type(a) is type(b) and a == b


def _all(checks: list[Check]) -> Check:
    """One check passed by the values that pass every one of ``checks``."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks
        return lambda value: first(value) and second(value)
    every = tuple(checks)

    def check(value: Any) -> bool:
        for one in every:
            if not one(value):
                return False
        return True

    return check


_CLASSES: dict[str, type] = {"string": str, "object": dict, "array": list, "boolean": bool, "null": type(None)}


def _type(arg: Any) -> Check:
    """The ``type`` keyword: an ``isinstance`` test, plus the number and integer rules."""
    names = [arg] if isinstance(arg, str) else arg
    if not all(isinstance(name, str) and (name in _CLASSES or name in ("number", "integer")) for name in names):
        return _unsure
    classes = tuple(_CLASSES[name] for name in names if name in _CLASSES)
    if "number" in names:
        numeric = _is_number
    elif "integer" in names:
        numeric = _is_integer
    else:
        return lambda value: isinstance(value, classes)
    if not classes:
        return numeric
    return lambda value: isinstance(value, classes) or numeric(value)


def _enum(options: Any) -> Check:
    """The ``enum`` keyword (and ``const``, one option) with JSON equality; strings by set lookup."""
    if not isinstance(options, list):
        return _unsure
    if all(isinstance(option, str) for option in options):
        names = frozenset(options)
        return lambda value: isinstance(value, str) and value in names
    return lambda value: any(_equal(value, option) for option in options)


def _bounds(schema: dict[str, Any], low: str, high: str) -> tuple[Any, Any]:
    """The least and greatest size a pair of keywords such as minItems and maxItems allow."""
    return schema.get(low, 0), schema.get(high, sys.maxsize)


def _string(schema: dict[str, Any], must_be: bool) -> Check | None:
    """The string keywords as one check (None: there are none); other values pass unless ``must_be``."""
    if not schema.keys() & {"minLength", "maxLength", "pattern"}:
        return None
    fewest, most = _bounds(schema, "minLength", "maxLength")
    search = re.compile(schema["pattern"]).search if "pattern" in schema else None

    def check(value: Any) -> bool:
        if not isinstance(value, str):
            return not must_be
        return fewest <= len(value) <= most and (search is None or search(value) is not None)

    return check


def _number(schema: dict[str, Any], must_be: bool) -> Check | None:
    """The number keywords as one check (None: there are none); other values pass unless ``must_be``."""
    if not schema.keys() & {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}:
        return None
    low, high = schema.get("minimum", -math.inf), schema.get("maximum", math.inf)
    above, below = schema.get("exclusiveMinimum", -math.inf), schema.get("exclusiveMaximum", math.inf)

    def check(value: Any) -> bool:
        if not _is_number(value):
            return not must_be
        return bool(low <= value <= high and above < value < below)

    return check


def _array(schema: dict[str, Any], must_be: bool) -> Check | None:
    """The array keywords as one check (None: there are none); other values pass unless ``must_be``."""
    if not schema.keys() & {"minItems", "maxItems", "items"}:
        return None
    fewest, most = _bounds(schema, "minItems", "maxItems")
    item = _unless_always(_compile(schema.get("items", True)))

    def check(value: Any) -> bool:
        if not isinstance(value, list):
            return not must_be
        return fewest <= len(value) <= most and (item is None or all(map(item, value)))

    return check


def _object(schema: dict[str, Any], must_be: bool) -> Check | None:
    """The object keywords as one check (None: there are none); other values pass unless ``must_be``.

    ``properties`` and ``additionalProperties`` are checked in one pass over the
    object's own members.
    """
    if not schema.keys() & {"minProperties", "maxProperties", "required", "propertyNames",
                            "properties", "additionalProperties"}:
        return None
    fewest, most = _bounds(schema, "minProperties", "maxProperties")
    required = tuple(schema.get("required", ()))
    name = _unless_always(_compile(schema.get("propertyNames", True)))
    # None: no check. A property anything satisfies maps to None too, so it still is not "additional".
    known = {key: _unless_always(_compile(sub)) for key, sub in schema.get("properties", {}).items()}
    additional = _unless_always(_compile(schema.get("additionalProperties", True)))
    members = additional is not None or any(known.values())

    def check(value: Any) -> bool:
        if not isinstance(value, dict):
            return not must_be
        if not fewest <= len(value) <= most:
            return False
        for key in required:
            if key not in value:
                return False
        if name is not None and not all(map(name, value)):
            return False
        if members:
            for key, member in value.items():
                sub = known.get(key, additional)
                if sub is not None and not sub(member):
                    return False
        return True

    return check


def _unless_always(check: Check) -> Check | None:
    return None if check is _always else check


def _combinators(schema: dict[str, Any]) -> list[Check]:
    """The checks of ``allOf``, ``anyOf``, ``oneOf``, ``not`` and ``if``/``then``/``else``."""
    checks: list[Check] = []
    if "allOf" in schema:
        checks.append(_all([_compile(sub) for sub in schema["allOf"]]))
    if "anyOf" in schema:
        branches = tuple(_compile(sub) for sub in schema["anyOf"])

        def any_of(value: Any) -> bool:
            for branch in branches:
                if branch(value):
                    return True
            return False

        checks.append(any_of)
    if "oneOf" in schema:
        choices = tuple(_compile(sub) for sub in schema["oneOf"])

        def one_of(value: Any) -> bool:
            matched = False
            for choice in choices:
                if choice(value):
                    if matched:
                        return False
                    matched = True
            return matched

        checks.append(one_of)
    if "not" in schema:
        negated = _compile(schema["not"])
        checks.append(lambda value: not negated(value))
    if "if" in schema:  # without an if, then and else say nothing
        condition = _compile(schema["if"])
        then, otherwise = _compile(schema.get("then", True)), _compile(schema.get("else", True))
        checks.append(lambda value: then(value) if condition(value) else otherwise(value))
    return checks


def _compile(schema: Any) -> Check:
    """``schema`` as one predicate, its keywords read here once instead of on every call.

    A schema with a keyword this checker does not know (or cannot read) compiles
    to a check that raises :class:`_Unsure`, so the answer is "ask jsonschema"
    exactly when that schema is reached.
    """
    if schema is True:
        return _always
    if schema is False:
        return _never
    if not isinstance(schema, dict) or not schema.keys() - _ANNOTATIONS <= _KEYWORDS:
        return _unsure
    try:
        checks: list[Check] = []
        only = schema.get("type")
        if isinstance(only, list) and len(only) == 1:
            only = only[0]
        typed = "type" in schema
        for kind, compile_kind in (("string", _string), ("number", _number), ("array", _array),
                                   ("object", _object)):
            if check := compile_kind(schema, must_be=kind == only):
                checks.append(check)
                typed = typed and kind != only  # the type check is part of this kind's check
        if typed:
            checks.insert(0, _type(schema["type"]))
        if "enum" in schema:
            checks.append(_enum(schema["enum"]))
        if "const" in schema:
            checks.append(_enum([schema["const"]]))
        return _all(checks + _combinators(schema))
    except (AttributeError, TypeError, re.error):
        return _unsure


def predicate(schema: Any) -> Check:
    """``schema`` compiled once into a yes/no check: True only when a value surely conforms
    (False: ask jsonschema). ``schema`` must not change afterwards."""
    check = _compile(schema)

    def surely(value: Any) -> bool:
        try:
            return check(value)
        except _Unsure:
            return False

    return surely


class Same:
    """A cache key that is ``value`` itself, by identity (a schema is a dict, which is not
    hashable); the key keeps ``value`` alive, so its id is not reused while it is cached."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __hash__(self) -> int:
        return id(self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Same) and other.value is self.value


@lru_cache(maxsize=32)  # bounded: a caller may hand over any number of schemas
def _predicate_of(key: Same) -> Check:
    return predicate(key.value)


def conforms(schema: Any, value: Any) -> bool:
    """True only when ``value`` surely conforms to ``schema`` (False: ask jsonschema).

    ``schema`` is compiled on first use (the last 32 are kept) and must not change afterwards.
    """
    return _predicate_of(Same(schema))(value)

