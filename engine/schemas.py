"""JSON Schema in one place: the schema files, their checkers and how a failure is worded.

:func:`validator` (a shipped file) and :func:`checker` (a schema given as data, such as a
plugin provider's) are the only builders of a :class:`SchemaChecker`; both caches are
bounded. :func:`schema_messages` is the only wording of a checker's errors: the runbook's
schema pass (``engine.validation.schema``) locates each message in the file, and preflight
names the field of a rendered provider configuration with it.

A message is chosen by the keyword that failed and the failing schema's ``x-messages``
annotation (``{"pattern": "{value} is not a duration ..."}``: keyword -> wording, with
``{value}``, the value as Python writes it, and ``{keys}``, the keys of a mapping), else
by the keyword alone (:data:`_WORDINGS`), else jsonschema's own message.

Nothing here imports jsonschema until a value does not conform (:mod:`engine.conformance`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cache, lru_cache
from pathlib import Path as FilePath
from typing import TYPE_CHECKING, Any

from engine.conformance import Same, predicate

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError

    from engine.loader import Path

    #: How one failed keyword is worded (None: jsonschema's own message says it better).
    _Wording = Callable[[ValidationError, Path, Mapping[Path, str]], "list[SchemaMessage] | None"]

__all__ = [
    "schema_dir", "load_schema", "validator", "checker", "SchemaChecker", "SchemaMessage",
    "schema_messages", "suggest", "YAML11_BOOLEANS", "YAML12_BOOLEANS", "bool_fix",
]


def schema_dir() -> FilePath:
    """The schemas folder: inside the installed package, or at the repository top level."""
    here = FilePath(__file__).resolve().parent
    installed = here / "schemas"
    if (installed / "runbook.schema.json").is_file():
        return installed
    return here.parent / "schemas"


@cache  # one entry per shipped file (runbook, manifest, one per built-in provider type)
def load_schema(relative: str) -> dict[str, Any]:
    """Parse a schema file such as ``runbook.schema.json`` or ``providers/http.json``."""
    with open(schema_dir() / relative, encoding="utf-8") as fh:
        schema: dict[str, Any] = json.load(fh)
    return schema


def _inline_refs(node: Any, defs: dict[str, Any], expanding: frozenset[str] = frozenset()) -> Any:
    """``node`` with every local ``#/$defs/X`` reference replaced by its definition, except a
    reference inside its own definition (a manifest step holds its called runbook's steps),
    which stays a reference for jsonschema to resolve against the ``$defs`` kept at the top.
    A reference beside other keywords (a property's own title and description, which editors
    show instead of the definition's) becomes the first schema of an ``allOf``, as it means.

    It spares jsonschema a reference lookup per step and property (a third of validation time).
    """
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            name = ref[len("#/$defs/"):]
            if name in expanding:
                return node
            if len(node) == 1:
                return _inline_refs(defs[name], defs, expanding | {name})
            rest = {k: v for k, v in node.items() if k != "$ref"}
            rest["allOf"] = [{"$ref": ref}, *rest.get("allOf", ())]
            return _inline_refs(rest, defs, expanding)
        return {k: _inline_refs(v, defs, expanding) for k, v in node.items() if k != "$defs"}
    if isinstance(node, list):
        return [_inline_refs(v, defs, expanding) for v in node]
    return node


class SchemaChecker:
    """A Draft 2020-12 schema with jsonschema's ``iter_errors``, imported only when needed.

    Build one with :func:`validator` or :func:`checker`, which keep it.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._conforms: Callable[[Any], bool] | None = None
        self._validator: Draft202012Validator | None = None

    def iter_errors(self, instance: Any) -> Iterator[ValidationError]:
        """jsonschema's errors for ``instance``; none, without jsonschema, when it conforms."""
        if self._conforms is None:
            self._conforms = predicate(self.schema)
        if self._conforms(instance):
            return iter(())
        if self._validator is None:
            from jsonschema import Draft202012Validator

            self._validator = Draft202012Validator(self.schema)
        return self._validator.iter_errors(instance)


@lru_cache(maxsize=16)  # keyed by a shipped file and a key in it: eight are used
def validator(relative: str, pointer: str = "") -> SchemaChecker:
    """The checker of a schema file (or of a key path inside it, ``"config"``), built once."""
    schema = load_schema(relative)
    for part in filter(None, pointer.split("/")):
        schema = schema[part]
    defs = schema.get("$defs", {})
    inlined = _inline_refs(schema, defs)
    if defs and '"$ref"' in json.dumps(inlined):  # a recursive definition is left as a reference
        inlined["$defs"] = defs
    return SchemaChecker(inlined)


@lru_cache(maxsize=32)  # bounded: schemas come from plugins, any number of them
def _checker_of(key: Same) -> SchemaChecker:
    return SchemaChecker(key.value)


def checker(schema: dict[str, Any]) -> SchemaChecker:
    """The checker of ``schema``, a schema given as data (a provider type's config or options
    schema), kept for the next call with the same object. ``schema`` must not change."""
    return _checker_of(Same(schema))


# --- Words: how a value is named in a message ------------------------------------------

#: Plain scalars that YAML 1.1 (PyYAML's default, older tools) reads as booleans; in
#: YAML 1.2, which runbook follows, they are strings.
YAML11_BOOLEANS = frozenset({"yes", "no", "on", "off", "y", "n"})
YAML12_BOOLEANS = "in YAML 1.2, which runbook reads, only true and false are booleans"

_JSON_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def bool_fix(word: str) -> str:
    """The YAML 1.2 boolean that a YAML 1.1 word (``yes``, ``off``) meant."""
    return "true" if word.lower() in ("yes", "on", "y") else "false"


def suggest(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` when a candidate is close to ``word``, else ``""``."""
    match = _close(word, candidates)
    return f" (did you mean {match!r}?)" if match is not None else ""


def _close(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to ``word``, if one is close enough."""
    import difflib  # only a runbook with a mistake needs it

    match = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return match[0] if match else None


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


# --- Wording: one message per problem of a checker's errors -----------------------------


class SchemaMessage:
    """One problem a schema finds: ``field`` is what the message names, ``at`` where it
    points (the field, or an unknown key of it, then ``key`` is true)."""

    # A plain class: making a NamedTuple costs a millisecond of ``runbook validate``'s start-up.
    __slots__ = ("field", "text", "at", "key")

    def __init__(self, field: Path, text: str, at: Path, key: bool = False) -> None:
        self.field, self.text, self.at, self.key = field, text, at, key

    def __repr__(self) -> str:
        return f"SchemaMessage({self.field!r}, {self.text!r}, {self.at!r}, key={self.key!r})"


def schema_messages(
    schema_checker: SchemaChecker,
    instance: Any,
    base: Path = (),
    *,
    written: Mapping[Path, str] | None = None,
    skip: Callable[[Any], bool] | None = None,
) -> list[SchemaMessage]:
    """Every problem of ``instance``, worded; paths start with ``base``.

    ``written`` is how each scalar was written in the file, for the hint to quote it;
    errors about a value ``skip`` accepts (a template, checked once rendered) are left out.
    """
    errors = [err for err in schema_checker.iter_errors(instance) if skip is None or not skip(err.instance)]
    meant = _meant_keys(errors)
    found: list[SchemaMessage] = []
    for err in errors:
        at = tuple(err.absolute_path)
        if at in meant and _missing_keys(err, schema_checker.schema) & meant[at]:
            continue  # the unknown key there is this missing one misspelt: its message says so
        found.extend(_describe(err, base + at, written or {}))
    return found


def _meant_keys(errors: list[ValidationError]) -> dict[tuple[Any, ...], set[str]]:
    """Per mapping, the known keys its unknown keys look like misspellings of (``provder``: provider)."""
    meant: dict[tuple[Any, ...], set[str]] = {}
    for err in errors:
        if err.validator != "additionalProperties" or not isinstance(err.schema, Mapping):
            continue
        if isinstance(err.instance, dict):
            allowed = list(err.schema.get("properties", {}))
            for key in err.instance:
                if key not in allowed and (match := _close(str(key), allowed)) is not None:
                    meant.setdefault(tuple(err.absolute_path), set()).add(match)
    return meant


def _missing_keys(err: ValidationError, root: Any) -> set[str]:
    """The keys whose absence is all that ``err`` is about: a ``required`` one's missing keys (and,
    in an ``else``, the keys its ``if`` asks for), a ``oneOf``/``anyOf`` of ``required``
    branches none of which is there; else none."""
    value = err.instance
    if not isinstance(value, dict):
        return set()
    if err.validator == "required" and isinstance(err.validator_value, list):
        missing = {key for key in err.validator_value if key not in value}
        where = list(err.absolute_schema_path)[:-1]
        if where and where[-1] == "else":
            try:
                condition = root
                for part in where[:-1]:
                    condition = condition[part]
                condition = condition["if"]
            except (KeyError, IndexError, TypeError):
                return missing
            if isinstance(condition, dict):  # a step's runbook: decides whether it needs a provider
                missing |= set(condition.get("required", ()))
        return missing
    if err.validator in ("oneOf", "anyOf") and isinstance(err.validator_value, list):
        keys: set[str] = set()
        for branch in err.validator_value:
            required = branch.get("required") if isinstance(branch, dict) else None
            if not required:
                return set()  # a branch that asks for no key: not only a matter of absence
            keys.update(required)
        return keys if not keys & value.keys() else set()
    return set()


def _describe(err: ValidationError, path: Path, written: Mapping[Path, str]) -> list[SchemaMessage]:
    """The messages of one jsonschema error at ``path``: the schema's ``x-messages`` wording
    of the failed keyword, else the keyword's, else jsonschema's message."""
    text = _annotated(err)
    if text is not None:
        return [SchemaMessage(path, text, path)]
    wording = _WORDINGS.get(str(err.validator))
    found = wording(err, path, written) if wording is not None else None
    return found if found is not None else [SchemaMessage(path, err.message, path)]


def _annotated(err: ValidationError) -> str | None:
    """The failing schema's own wording of the failed keyword (``x-messages``), if any."""
    messages = err.schema.get("x-messages") if isinstance(err.schema, Mapping) else None
    text = messages.get(str(err.validator)) if isinstance(messages, dict) else None
    if not isinstance(text, str):
        return None
    value = err.instance
    keys = ", ".join(map(str, value)) if isinstance(value, dict) and value else "none"
    try:
        return text.format(value=repr(value), keys=keys)
    except (KeyError, IndexError, ValueError, AttributeError):  # a placeholder we do not give
        return None


def _additional(err: ValidationError, path: Path, written: Mapping[Path, str]) -> list[SchemaMessage] | None:
    if not isinstance(err.instance, dict):
        return None
    allowed = list(err.schema.get("properties", {})) if isinstance(err.schema, Mapping) else []
    return [SchemaMessage(path, f"unknown key {key!r}{suggest(key, allowed)}", path + (key,), key=True)
            for key in err.instance if key not in allowed]


def _required(err: ValidationError, path: Path, written: Mapping[Path, str]) -> list[SchemaMessage] | None:
    if not isinstance(err.instance, dict):
        return None
    required: Any = err.validator_value
    return [SchemaMessage(path, f"missing required key {key!r}", path)
            for key in required if key not in err.instance]


def _type(err: ValidationError, path: Path, written: Mapping[Path, str]) -> list[SchemaMessage]:
    """``expected a string, got the number 1.0``, and how to write what YAML read otherwise."""
    expected: Any = err.validator_value
    value = err.instance
    names = [expected] if isinstance(expected, str) else list(expected)
    text = f"expected {' or '.join(_JSON_NAMES.get(n, n) for n in names)}, got {_kind(value)}"
    source = written.get(path)
    if "string" in names and source is not None:
        text += f"; quote it to keep it as text: \"{source}\""
        if isinstance(value, (bool, int, float)):
            text += f" (YAML reads an unquoted {source} as {_kind(value)})"
    elif "boolean" in names and isinstance(value, str) and value.lower() in YAML11_BOOLEANS:
        text += f" ({value!r}): {YAML12_BOOLEANS}; write {bool_fix(value)}"
    return [SchemaMessage(path, text, path)]


def _enum(err: ValidationError, path: Path, written: Mapping[Path, str]) -> list[SchemaMessage]:
    allowed: Any = err.validator_value
    options = [str(o) for o in allowed]
    value = err.instance
    hint = suggest(value, options) if isinstance(value, str) else ""
    return [SchemaMessage(path, f"{value!r} is not one of {', '.join(options)}{hint}", path)]


def _const(err: ValidationError, path: Path, written: Mapping[Path, str]) -> list[SchemaMessage]:
    """``must be 1, got '1'``, and for a quoted number, to write it without quotes."""
    want: Any = err.validator_value
    value = err.instance
    text = f"must be {want!r}, got {value!r}"
    written_as = (repr(want), f"{want}.0") if isinstance(want, int) and not isinstance(want, bool) else ()
    if isinstance(value, str) and value.strip() in written_as:
        name = f"{path[-1]}: " if path and isinstance(path[-1], str) else ""
        text += f"; write {name}{want!r}, without quotes"
    return [SchemaMessage(path, text, path)]


def _pattern(err: ValidationError, path: Path, written: Mapping[Path, str]) -> list[SchemaMessage]:
    return [SchemaMessage(path, f"{err.instance!r} does not match the pattern {err.validator_value}", path)]


#: The wording of a failed keyword without an ``x-messages`` one.
_WORDINGS: dict[str, _Wording] = {
    "additionalProperties": _additional,
    "required": _required,
    "type": _type,
    "enum": _enum,
    "const": _const,
    "pattern": _pattern,
}
