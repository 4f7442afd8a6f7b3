"""A quick yes/no check of JSON Schema conformance, so valid input never waits for jsonschema.

Importing jsonschema costs 50-100 ms, more than the rest of ``runbook validate``
on a small file. Most input is valid, so :class:`SchemaChecker` first asks
:func:`conforms`, a small interpreter of the keywords our schemas use, and
builds a jsonschema validator only when the answer is not a plain yes: to
locate and word the problems, or for a keyword it does not know. It must never
say yes where jsonschema says no; ``tests/test_conformance.py`` compares the two
on every example and on thousands of mutated documents.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Any

__all__ = ["conforms", "SchemaChecker"]

_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "$defs", "title", "description",
                          "examples", "default", "format", "deprecated", "readOnly", "writeOnly"})


class _Unsure(Exception):
    """A keyword this checker does not interpret: let jsonschema decide."""


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if name == "number":
        return _is_number(value)
    if name == "integer":
        return _is_number(value) and (isinstance(value, int) or float(value).is_integer())
    raise _Unsure(name)


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: true is not 1, 1.0 is 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _check(schema: Any, value: Any) -> bool:
    if schema is True:
        return True
    if schema is False:
        return False
    for key, arg in schema.items():
        if key in _ANNOTATIONS:
            continue
        if key == "type":
            if not any(_is_type(value, t) for t in ([arg] if isinstance(arg, str) else arg)):
                return False
        elif key == "properties":
            if isinstance(value, dict) and not all(
                    _check(sub, value[k]) for k, sub in arg.items() if k in value):
                return False
        elif key == "additionalProperties":
            if isinstance(value, dict):
                if "patternProperties" in schema:
                    raise _Unsure(key)
                known = schema.get("properties", {})
                if not all(_check(arg, v) for k, v in value.items() if k not in known):
                    return False
        elif key == "required":
            if isinstance(value, dict) and not all(k in value for k in arg):
                return False
        elif key == "enum":
            if not any(_equal(value, option) for option in arg):
                return False
        elif key == "const":
            if not _equal(value, arg):
                return False
        elif key == "pattern":
            if isinstance(value, str) and not _regex(arg).search(value):
                return False
        elif key in _BOUNDS:
            kinds, test = _BOUNDS[key]
            if kinds(value) and not test(value, arg):
                return False
        elif key == "items":
            if isinstance(value, list) and not all(_check(arg, v) for v in value):
                return False
        elif key == "propertyNames":
            if isinstance(value, dict) and not all(_check(arg, k) for k in value):
                return False
        elif key == "allOf":
            if not all(_check(sub, value) for sub in arg):
                return False
        elif key == "anyOf":
            if not any(_check(sub, value) for sub in arg):
                return False
        elif key == "oneOf":
            if sum(1 for sub in arg if _check(sub, value)) != 1:
                return False
        elif key == "not":
            if _check(arg, value):
                return False
        else:
            raise _Unsure(key)
    return True


def _sized(kind: type) -> Any:
    return lambda v: isinstance(v, kind)


_BOUNDS: dict[str, tuple[Any, Any]] = {
    "minimum": (_is_number, lambda v, a: v >= a),
    "maximum": (_is_number, lambda v, a: v <= a),
    "exclusiveMinimum": (_is_number, lambda v, a: v > a),
    "exclusiveMaximum": (_is_number, lambda v, a: v < a),
    "minLength": (_sized(str), lambda v, a: len(v) >= a),
    "maxLength": (_sized(str), lambda v, a: len(v) <= a),
    "minItems": (_sized(list), lambda v, a: len(v) >= a),
    "maxItems": (_sized(list), lambda v, a: len(v) <= a),
    "minProperties": (_sized(dict), lambda v, a: len(v) >= a),
    "maxProperties": (_sized(dict), lambda v, a: len(v) <= a),
}


def conforms(schema: Any, value: Any) -> bool:
    """True only when ``value`` surely conforms to ``schema`` (False: ask jsonschema)."""
    try:
        return _check(schema, value)
    except _Unsure:
        return False


class SchemaChecker:
    """A Draft 2020-12 schema with jsonschema's ``iter_errors``, imported only when needed."""

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._validator: Any = None

    def iter_errors(self, instance: Any) -> Iterator[Any]:
        """jsonschema's errors for ``instance``; none, without jsonschema, when it conforms."""
        if conforms(self.schema, instance):
            return iter(())
        if self._validator is None:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(self.schema)
        return self._validator.iter_errors(instance)
