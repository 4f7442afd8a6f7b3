"""A small JSON Schema check (stdlib only) for the emulator's catalog actions.

It covers what the emulated catalog's schemas use (``type``, ``properties``, ``required``,
``additionalProperties``, ``items``, ``enum``, ``minLength``, ``minimum``, ``maximum``), and
Pipedream's ``configurable_props`` (``name``, ``type``, ``optional``). The engine's own
remote check (engine/remote_check.py) uses jsonschema; this one is what the service side
of the emulator answers with, so both agree on the catalog.
"""

from __future__ import annotations

from typing import Any

__all__ = ["schema_problems", "props_problems", "PROP_TYPES"]

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}

#: Pipedream prop type -> the JSON types its value may have (app props: an object).
PROP_TYPES: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "string[]": ("array",),
    "integer": ("integer",),
    "integer[]": ("array",),
    "boolean": ("boolean",),
    "object": ("object",),
    "app": ("object",),
    "any": (),
}


def _is(value: Any, json_type: str) -> bool:
    if json_type in ("integer", "number") and isinstance(value, bool):
        return False
    if json_type == "integer" and isinstance(value, float):
        return value.is_integer()
    return isinstance(value, _JSON_TYPES.get(json_type, (object,)))


def schema_problems(schema: Any, value: Any, path: str = "input") -> list[str]:
    """What in ``value`` does not match ``schema``, one message a problem (empty: it matches)."""
    if not isinstance(schema, dict):
        return []
    wanted = schema.get("type")
    if wanted is not None:
        types = wanted if isinstance(wanted, list) else [wanted]
        if not any(_is(value, str(t)) for t in types):
            return [f"{path}: expected {' or '.join(map(str, types))}, got {_json_type(value)}"]
    problems: list[str] = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{path}: must be one of {schema['enum']!r}")
    if isinstance(value, str) and isinstance(schema.get("minLength"), int) and len(value) < schema["minLength"]:
        problems.append(f"{path}: shorter than {schema['minLength']} characters")
    if _is(value, "number"):
        if isinstance(schema.get("minimum"), (int, float)) and value < schema["minimum"]:
            problems.append(f"{path}: less than {schema['minimum']}")
        if isinstance(schema.get("maximum"), (int, float)) and value > schema["maximum"]:
            problems.append(f"{path}: more than {schema['maximum']}")
    if isinstance(value, dict):
        properties = schema.get("properties") or {}
        for name in schema.get("required") or []:
            if name not in value:
                problems.append(f"{path}: '{name}' is required")
        for name, item in value.items():
            if name in properties:
                problems.extend(schema_problems(properties[name], item, f"{path}.{name}"))
            elif schema.get("additionalProperties") is False:
                problems.append(f"{path}: '{name}' is not a property of this action")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            problems.extend(schema_problems(schema["items"], item, f"{path}[{index}]"))
    return problems


def props_problems(props: list[dict[str, Any]], configured: Any) -> list[str]:
    """What in ``configured`` (configured_props) does not match a component's props."""
    if configured is None:
        configured = {}
    if not isinstance(configured, dict):
        return [f"configured_props: expected object, got {_json_type(configured)}"]
    problems: list[str] = []
    for prop in props:
        name, kind = prop.get("name"), prop.get("type")
        if not isinstance(name, str) or prop.get("readOnly") or kind in ("alert", "dir", "$.interface.http"):
            continue
        if name not in configured:
            if not prop.get("optional") and "default" not in prop:
                problems.append(f"configured_props: '{name}' is required")
            continue
        allowed = PROP_TYPES.get(str(kind), ())
        value = configured[name]
        if allowed and not any(_is(value, t) for t in allowed):
            problems.append(f"configured_props.{name}: expected {kind}, got {_json_type(value)}")
    return problems


def _json_type(value: Any) -> str:
    for name in ("null", "boolean", "integer", "number", "string", "array", "object"):
        if _is(value, name) and not (name == "integer" and isinstance(value, float)):
            return name
    return type(value).__name__
