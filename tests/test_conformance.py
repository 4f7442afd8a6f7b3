"""engine.conformance never says yes where jsonschema says no (and agrees on the rest)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine.conformance import conforms
from engine.loader import load_file
from engine.schemas import load_schema, validator
from tests.conftest import ROOT

SCHEMAS = ["runbook.schema.json", "manifest.schema.json"]
EXAMPLES = sorted((ROOT / "runbooks").glob("*.yml"))
ODD_VALUES: list[Any] = [None, True, False, 0, 1, 1.0, 1.5, -3, "", "x", "30s", "5xx", "0ms",
                         "GET", "proj_abc", [], [1], ["connection"], {}, {"a": 1}, {"id": "x"}]


def mutate(value: Any, rng: random.Random) -> Any:
    """One random change somewhere inside ``value``."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        choice = rng.random()
        if choice < 0.15:
            del value[key]
        elif choice < 0.25:
            value[key + "x"] = rng.choice(ODD_VALUES)
        elif choice < 0.5:
            value[key] = copy.deepcopy(rng.choice(ODD_VALUES))
        else:
            value[key] = mutate(value[key], rng)
        return value
    if isinstance(value, list) and value and rng.random() < 0.7:
        i = rng.randrange(len(value))
        if rng.random() < 0.2:
            value.pop(i)
        else:
            value[i] = mutate(value[i], rng)
        return value
    return copy.deepcopy(rng.choice(ODD_VALUES))


def documents() -> list[Any]:
    docs = [load_file(str(p)).data for p in EXAMPLES]
    manifest = json.loads((ROOT / "tests" / "data" / "manifest.json").read_text())
    return docs + [manifest]


@pytest.mark.parametrize("name", SCHEMAS)
def test_agrees_with_jsonschema_on_mutated_documents(name: str) -> None:
    schema = validator(name).schema
    reference = Draft202012Validator(load_schema(name))
    rng = random.Random(20261123)
    seeds = [d for d in documents() if ("manifest_version" in d) == (name == "manifest.schema.json")]
    assert seeds
    checked = disagreements = 0
    for i in range(1500):
        doc = copy.deepcopy(seeds[i % len(seeds)])
        for _ in range(rng.randint(0, 3)):
            doc = mutate(doc, rng)
        expected = reference.is_valid(doc)
        got = conforms(schema, doc)
        assert not (got and not expected), f"said valid, jsonschema disagrees: {doc}"
        disagreements += got != expected
        checked += 1
    assert disagreements == 0, f"{disagreements} of {checked} valid documents sent to jsonschema"


def test_a_reference_beside_a_propertys_help_is_inlined_as_an_all_of() -> None:
    run_timeout = validator("runbook.schema.json").schema["properties"]["run_timeout"]
    assert "$ref" not in json.dumps(run_timeout)
    assert run_timeout["title"] == "Run timeout" and run_timeout["allOf"][0]["pattern"]
    assert conforms(run_timeout, "30s") and not conforms(run_timeout, "soon")


def test_every_example_conforms_without_jsonschema() -> None:
    for doc in documents():
        name = "manifest.schema.json" if "manifest_version" in doc else "runbook.schema.json"
        assert conforms(validator(name).schema, doc)


@pytest.mark.parametrize(
    ("schema", "value", "expected"),
    [
        ({"type": "integer"}, 1.0, True),
        ({"type": "integer"}, True, False),
        ({"const": 1}, True, False),
        ({"const": 1}, 1.0, True),
        ({"enum": ["a", 1]}, "a", True),
        ({"pattern": "^a"}, 3, True),
        ({"patternProperties": {"a": {}}}, {}, False),  # unknown keyword: ask jsonschema
        ({"type": ["number", "string"], "exclusiveMinimum": 0}, 0, False),
        ({"type": ["number", "string"], "exclusiveMinimum": 0}, "0", True),
        ({"type": "number", "minimum": 1}, True, False),
        ({"minimum": 1}, True, True),
        ({"maxLength": 2}, "abc", False),
        ({"minProperties": 1}, {}, False),
        ({"required": ["a"]}, [], True),
        ({"required": ["a"]}, {}, False),
        ({"enum": [1, True, None, [1], {"a": 1}]}, 1.0, True),
        ({"enum": [1, True, None, [1], {"a": 1}]}, [1.0], True),
        ({"enum": [1, True, None, [1], {"a": 1}]}, 0, False),
        ({"enum": [1, True, None, [1], {"a": 1}]}, {"a": True}, False),
        # boolean schemas
        (True, None, True),
        (False, None, False),
        ({"not": True}, 1, False),
        ({"properties": {"a": False}}, {}, True),
        ({"properties": {"a": False}}, {"a": 1}, False),
        ({"properties": {"a": True}, "additionalProperties": False}, {"a": 1}, True),
        ({"properties": {"a": True}, "additionalProperties": False}, {"b": 1}, False),
        ({"items": False}, [], True),
        ({"items": False}, [1], False),
        # nested oneOf / anyOf
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, False),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1.5, True),
        ({"anyOf": [{"oneOf": [{"const": 1}, {"const": 2}]}, {"type": "string"}]}, 2, True),
        ({"anyOf": [{"oneOf": [{"const": 1}, {"const": 2}]}, {"type": "string"}]}, 3, False),
        ({"oneOf": [{"anyOf": [{"type": "string"}, {"type": "null"}]}, {"const": None}]}, None, False),
        ({"oneOf": [{"anyOf": [{"type": "string"}, {"type": "null"}]}, {"const": None}]}, "a", True),
        # an unknown keyword (or one we cannot read) makes us unsure only where it is reached
        ({"anyOf": [{"type": "string"}, {"dependentSchemas": {}, "type": "object"}]}, "x", True),
        ({"anyOf": [{"type": "string"}, {"dependentSchemas": {}, "type": "object"}]}, {}, False),
        # if/then/else (a step with runbook: has no provider; any other step needs one)
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"required": ["c"]}}, {"a": 1, "b": 2},
         True),
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"required": ["c"]}}, {"a": 1}, False),
        ({"if": {"required": ["a"]}, "then": {"required": ["b"]}, "else": {"required": ["c"]}}, {"c": 1}, True),
        ({"if": {"required": ["a"]}, "else": {"required": ["c"]}}, {}, False),
        ({"then": {"required": ["b"]}}, {}, True),
        ({"properties": {"a": {"dependentRequired": {}}}}, {}, True),
        ({"properties": {"a": {"dependentRequired": {}}}}, {"a": 1}, False),
        ({"anyOf": [{"type": "string"}, {"pattern": "("}]}, "x", True),
        ({"type": ["string", "uuid"]}, 3, False),
        ({"additionalProperties": False, "patternProperties": {"^a": {}}}, {"ab": 1}, False),
        # errorMessage is yaml-language-server's wording: an annotation
        ({"required": ["a"], "errorMessage": "needs a"}, {"a": 1}, True),
        ({"required": ["a"], "errorMessage": "needs a"}, {}, False),
        # exactly one of two keys (a dispatch style), as oneOf of required and false properties
        ({"oneOf": [{"required": ["a"], "allOf": [{"properties": {"b": False}}]},
                    {"required": ["b"], "allOf": [{"properties": {"a": False}}]}]}, {"a": 1}, True),
        ({"oneOf": [{"required": ["a"], "allOf": [{"properties": {"b": False}}]},
                    {"required": ["b"], "allOf": [{"properties": {"a": False}}]}]}, {"a": 1, "b": 2}, False),
        ({"oneOf": [{"required": ["a"], "allOf": [{"properties": {"b": False}}]},
                    {"required": ["b"], "allOf": [{"properties": {"a": False}}]}]}, {}, False),
        # a reference is left to jsonschema (engine.schemas inlines the local ones first)
        ({"$ref": "#/$defs/x", "$defs": {"x": {"type": "string"}}}, "s", False),
        # prefixItems changes what items means: never decide a "not" on items alone
        ({"not": {"items": {"type": "string"}, "prefixItems": [{"type": "integer"}]}}, [1], False),
    ],
)
def test_keywords(schema: Any, value: Any, expected: bool) -> None:
    assert conforms(schema, value) is expected
    if expected:
        assert Draft202012Validator(schema).is_valid(value)
