"""Run variables: runbook defaults < ``--vars-file`` < ``--var KEY=VALUE`` (later wins)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from engine.errors import LocatedErrors, Problem, RunbookError
from engine.loader import load_file, parse_scalar

__all__ = ["parse_var", "resolve_vars", "cli_var_names"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_var(pair: str) -> tuple[str, Any]:
    """``KEY=VALUE`` with VALUE read as a YAML scalar or flow collection."""
    key, sep, text = pair.partition("=")
    if not sep or not _NAME.match(key):
        raise RunbookError(
            f"--var {pair!r}: expected KEY=VALUE with KEY made of letters, digits and _"
        )
    try:
        value = parse_scalar(text, f"--var {key}")
    except LocatedErrors as exc:
        detail = exc.problems[0].message if exc.problems else "invalid value"
        raise RunbookError(f"--var {key}: {detail} (quote the value to pass it as text)") from None
    if isinstance(value, (dict, list)) and not text.lstrip().startswith(("{", "[")):
        value = text  # "a: b" is text on a command line, not a block mapping
    return key, value


def _vars_files(vars_files: str | Sequence[str] | None) -> tuple[str, ...]:
    if vars_files is None:
        return ()
    return (vars_files,) if isinstance(vars_files, str) else tuple(vars_files)


def resolve_vars(defaults: Mapping[str, Any], vars_files: str | Sequence[str] | None,
                 pairs: Iterable[str]) -> dict[str, Any]:
    """The run's variables, merged in order of precedence: ``defaults``, then each vars file
    in turn (a later file wins key by key), then each ``--var``."""
    merged = dict(defaults)
    for vars_file in _vars_files(vars_files):
        doc = load_file(vars_file)
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            raise LocatedErrors([Problem(vars_file, 1, 1, "a vars file is a mapping of names to values")])
        merged.update(doc.data)
    for pair in pairs:
        key, value = parse_var(pair)
        merged[key] = value
    return merged


def cli_var_names(pairs: Iterable[str]) -> tuple[str, ...]:
    """The names ``--var`` sets (each once, in order)."""
    return tuple(dict.fromkeys(parse_var(pair)[0] for pair in pairs))
