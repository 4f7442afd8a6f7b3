"""Safe YAML loading with positions: the only module that imports yaml.

The document is composed into nodes by PyYAML's (C, when available) parser and
turned into plain JSON-compatible values by :func:`_build`, which also records
the line and column of every key and value. Scalars follow YAML 1.2's core
schema: only ``true``/``false`` are booleans (``on``, ``yes``, ``off`` stay
strings), dates stay strings, ``012`` is twelve. Duplicate keys, aliases that
loop, unknown tags and multi-document files are errors, never guesses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from engine.errors import LocatedErrors, Problem

__all__ = ["Path", "SourceMap", "Document", "load_file", "load_text", "parse_scalar"]

Path = tuple  # a path into the document: keys (str) and list indexes (int)

_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_MERGE = "tag:yaml.org,2002:merge"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


_IMPLICIT: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _tag, _regexp, _first in [
    (_NULL, r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    (_BOOL, r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    (_INT, r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        _FLOAT,
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+0123456789."),
    ),
    (_MERGE, r"^<<$", ["<"]),
]:
    for _char in _first:
        _IMPLICIT.setdefault(_char, []).append((_tag, re.compile(_regexp)))


class _Core12Resolver(BaseResolver):
    """Implicit scalar types of the YAML 1.2 core schema (and ``<<`` merges).

    A plain scalar is matched only against the types its first character can
    start (PyYAML's own resolver does the same, with more overhead per call).
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is ScalarNode:
            if implicit[0]:
                for tag, regexp in _IMPLICIT.get(value[:1], ()):
                    if regexp.match(value):
                        return tag
            return _STR
        return _SEQ if kind is SequenceNode else _MAP


if getattr(yaml, "__with_libyaml__", False):
    from yaml._yaml import CParser as _ParserBase
else:  # pragma: no cover - pure-Python fallback

    class _ParserBase(  # type: ignore[no-redef]
        yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)


class _Composer(_ParserBase, _Core12Resolver):  # type: ignore[misc, valid-type]
    def __init__(self, stream: str) -> None:
        _ParserBase.__init__(self, stream)
        _Core12Resolver.__init__(self)


@dataclass
class SourceMap:
    """Where every key and value of a loaded document stands in its file."""

    file: str
    values: dict[Path, tuple[int, int]] = field(default_factory=dict)
    keys: dict[Path, tuple[int, int]] = field(default_factory=dict)
    scalar_text: dict[Path, str] = field(default_factory=dict)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The (line, col) of ``path``, falling back to its nearest known parent."""
        table = self.keys if key else self.values
        p = tuple(path)
        while p:
            if p in table:
                return table[p]
            if p in self.values:
                return self.values[p]
            p = p[:-1]
        return self.values.get((), (1, 1))

    def problem(self, path: Path, message: str, *, key: bool = False,
                severity: str = "error") -> Problem:
        line, col = self.position(path, key=key)
        return Problem(self.file, line, col, message, severity)


@dataclass
class Document:
    """A loaded YAML document: plain data plus its source map and raw text."""

    data: Any
    source: SourceMap
    text: str


def _int(text: str) -> int:
    t = text.replace("_", "")
    if t.startswith("0o"):
        return int(t[2:], 8)
    if t.startswith("0x"):
        return int(t[2:], 16)
    return int(t)


def _float(text: str) -> float:
    t = text.lower()
    if t.endswith(".inf"):
        return float("-inf") if t.startswith("-") else float("inf")
    if t == ".nan":
        return float("nan")
    return float(text)


class _Builder:
    def __init__(self, source: SourceMap) -> None:
        self.source = source
        self.problems: list[Problem] = []
        self._active: set[int] = set()

    def _pos(self, node: Node) -> tuple[int, int]:
        return node.start_mark.line + 1, node.start_mark.column + 1

    def _error(self, node: Node, message: str) -> None:
        line, col = self._pos(node)
        self.problems.append(Problem(self.source.file, line, col, message))

    def build(self, node: Node, path: Path) -> Any:
        self.source.values[path] = self._pos(node)
        if isinstance(node, ScalarNode):
            return self._scalar(node, path)
        if id(node) in self._active:
            self._error(node, "this alias refers to itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, SequenceNode):
                if node.tag != _SEQ:
                    self._error(node, f"unsupported YAML tag {node.tag!r}")
                return [self.build(item, path + (i,)) for i, item in enumerate(node.value)]
            if isinstance(node, MappingNode):
                if node.tag != _MAP:
                    self._error(node, f"unsupported YAML tag {node.tag!r}")
                return self._mapping(node, path)
        finally:
            self._active.discard(id(node))
        self._error(node, "unsupported YAML node")  # pragma: no cover
        return None

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        tag, text = node.tag, node.value
        if tag == _STR:
            return text
        self.source.scalar_text[path] = text
        try:
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return text.lower() == "true"
            if tag == _INT:
                return _int(text)
            if tag == _FLOAT:
                return _float(text)
        except ValueError:
            self._error(node, f"{text!r} is not a valid {tag.rsplit(':', 1)[-1]}")
            return text
        self._error(node, f"unsupported YAML tag {tag!r} (only plain YAML values are allowed)")
        return text

    def _key(self, node: Node) -> str | None:
        if not isinstance(node, ScalarNode):
            self._error(node, "a mapping key must be a plain string")
            return None
        return node.value

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
                for src in sources:
                    if not isinstance(src, MappingNode):
                        self._error(src, "'<<' merges only mappings")
                        continue
                    built = self.build(src, path)
                    if isinstance(built, dict):
                        for k, v in built.items():
                            merged.setdefault(k, v)
                continue
            key = self._key(key_node)
            if key is None:
                continue
            if key in seen:
                self._error(key_node, f"duplicate key {key!r} (first defined on line {seen[key]})")
                continue
            seen[key] = key_node.start_mark.line + 1
            self.source.keys[path + (key,)] = self._pos(key_node)
            result[key] = self.build(value_node, path + (key,))
        if merged:
            return {**merged, **result}
        return result


def load_text(text: str, file: str) -> Document:
    """Load one YAML document from ``text``; every problem raises :class:`LocatedErrors`."""
    source = SourceMap(file)
    composer = _Composer(text)
    try:
        node = composer.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        what = exc.problem or exc.context or "invalid YAML"
        if "expected a single document" in str(exc):
            what = "only one YAML document per file (remove the '---' separator)"
        raise LocatedErrors([Problem(file, line, col, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise LocatedErrors([Problem(file, 1, 1, f"YAML error: {exc}")]) from None
    finally:
        composer.dispose()
    if node is None:
        return Document(None, source, text)
    builder = _Builder(source)
    data = builder.build(node, ())
    if builder.problems:
        raise LocatedErrors(builder.problems)
    return Document(data, source, text)


def load_file(path: str) -> Document:
    """Read and load ``path``; an unreadable file is a located error at 1:1."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LocatedErrors([Problem(path, 1, 1, f"cannot read file: {reason}")]) from None
    return load_text(text, path)


def parse_scalar(text: str, origin: str) -> Any:
    """Parse a ``--var`` value as a YAML scalar or flow collection (``3`` is an int)."""
    if text == "":
        return ""
    return load_text(text, origin).data
