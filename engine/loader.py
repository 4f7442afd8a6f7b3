"""Safe YAML loading with positions: the only module that imports yaml.

The document is composed into nodes by PyYAML's (C, when available) parser and
turned into plain JSON-compatible values by :class:`_Builder`, which also records
the line and column of every key and value. Scalars follow YAML 1.2's core
schema: only ``true``/``false`` are booleans (``on``, ``yes``, ``off`` stay
strings), dates stay strings, ``012`` is twelve. Duplicate keys, aliases that
loop, unknown tags and multi-document files are errors, never guesses. So is what
JSON cannot carry (an integer beyond 64 bits, NaN, infinity: every value ends up in
a request or a manifest) and what would exhaust the machine: aliases that expand a
small file to millions of values (a "billion laughs"), or nesting deeper than
:data:`MAX_DEPTH`.
"""

from __future__ import annotations

import math
import re
from typing import Any, NamedTuple

from engine.errors import LocatedErrors, Problem


class _LazyPattern:
    """A regular expression compiled on first use."""

    def __init__(self, pattern: str, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[str] | None = None

    def __getattr__(self, name: str) -> Any:
        if self._compiled is None:
            self._compiled = re.compile(*self._args)
        return getattr(self._compiled, name)


#: PyYAML's pure-Python reader compiles this check over all of Unicode when yaml is imported:
#: about 10 ms, a tenth of `runbook validate`'s start-up. We parse with libyaml, which never
#: uses it; the pure-Python parser (no libyaml) compiles it on first use instead.
_READER_CHECK = "[^\x09\x0A\x0D\x20-\x7E\x85\xA0-\uD7FF\uE000-\uFFFD\U00010000-\U0010ffff]"


def _import_pyyaml() -> Any:
    """``import yaml``, with the reader's check compiled lazily (see ``_READER_CHECK``)."""
    compile_now = re.compile

    def compile_reader_check_lazily(pattern: Any, flags: int = 0) -> Any:
        if pattern == _READER_CHECK:
            return _LazyPattern(pattern, flags)
        return compile_now(pattern, flags)

    re.compile = compile_reader_check_lazily  # type: ignore[assignment]
    try:
        import yaml
    finally:
        re.compile = compile_now
    return yaml


yaml = _import_pyyaml()
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode  # noqa: E402
from yaml.resolver import BaseResolver  # noqa: E402

__all__ = ["Path", "SourceMap", "Document", "load_file", "load_text", "parse_scalar", "MAX_DEPTH"]

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
        if kind is not ScalarNode:
            return _SEQ if kind is SequenceNode else _MAP
        if implicit[0] and value[:1] in _IMPLICIT:
            for tag, regexp in _IMPLICIT[value[:1]]:
                if regexp.match(value):
                    return tag
        return _STR


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

    # The composer calls these two around every node, for path resolvers, which we do not
    # use. C callables of the same arity that do nothing save ~11% of composing's cost.
    descend_resolver = {}.get  # (parent, index): a look-up in an empty dict
    ascend_resolver = tuple  # (): returns ()


class SourceMap:
    """Where every key and value of a loaded document stands in its file."""

    # A plain class, not a dataclass: generating a dataclass's code costs start-up time.
    __slots__ = ("file", "values", "keys", "scalar_text")

    def __init__(self, file: str, values: dict[Path, tuple[int, int]] | None = None,
                 keys: dict[Path, tuple[int, int]] | None = None,
                 scalar_text: dict[Path, str] | None = None) -> None:
        self.file = file
        self.values: dict[Path, tuple[int, int]] = {} if values is None else values
        self.keys: dict[Path, tuple[int, int]] = {} if keys is None else keys
        self.scalar_text: dict[Path, str] = {} if scalar_text is None else scalar_text

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


class Document(NamedTuple):
    """A loaded YAML document: plain data plus its source map and raw text."""

    data: Any
    source: SourceMap
    text: str


#: The integers JSON carries everywhere: a signed 64-bit value. Beyond it most JSON readers
#: lose digits (JavaScript keeps 53 bits) and Python's own json refuses more than 4,300 digits.
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1


class _NotJson(ValueError):
    """A number YAML reads that JSON cannot carry; the message says why."""


def _short(text: str, width: int = 40) -> str:
    """``text`` cut to ``width`` characters (a 5,000-digit number does not fill the screen)."""
    text = text.strip()
    return text if len(text) <= width else f"{text[:width - 12]}… ({len(text):,} characters)"


def _int(text: str) -> int:
    t = text.replace("_", "").strip()
    sign, digits = (t[0], t[1:]) if t[:1] in ("+", "-") else ("", t)
    base = 10
    if digits[:2] in ("0o", "0x"):
        base, digits = (8 if digits[1] == "o" else 16), digits[2:]
    # 64 digits of any base >= 2 exceed 64 bits: refuse before converting (int() of a long
    # decimal costs quadratic time and stops at 4,300 digits; hex has no such limit).
    if len(digits.lstrip("0")) > 64 or not _INT_MIN <= (value := int(sign + digits, base)) <= _INT_MAX:
        raise _NotJson(f"{_short(text)} is too large to send as JSON (beyond the signed 64-bit range); "
                       "quote it to keep it as text")
    return value


def _float(text: str) -> float:
    if text.strip().lower().lstrip("+-") in (".nan", ".inf", "nan", "inf", "infinity"):  # `!!float nan` too
        raise _NotJson(f"{_short(text)} is not a JSON number (JSON has no NaN or Infinity); "
                       "quote it to keep it as text")
    value = float(text)
    if math.isinf(value):  # 1e400
        raise _NotJson(f"{_short(text)} is not a JSON number (it is too large: it reads as infinity); "
                       "quote it to keep it as text")
    return value


#: How deep lists and mappings may nest. Loading, validation, plans and runs walk values
#: recursively; 200 levels stay well inside Python's recursion limit in each of them, and
#: no runbook or vars file needs more than a dozen.
MAX_DEPTH = 200

#: How far aliases may expand a document: by at most ten times the values it writes out (an
#: anchored collection counts once, an alias as one value), plus 10,000. A bound proportional
#: to the file, not a fixed one: a runbook that merges ``<<: *defaults`` into each of its
#: thousands of steps expands to a few times its own size and stays allowed however large it
#: is, while a "billion laughs" (nine levels of ten aliases: under a hundred values written,
#: 10^9 once expanded, about a gigabyte) is refused after some 10,000 values, in milliseconds.
#: A fixed bound of, say, 1,000,000 would let a 1 KB file cost a second and hundreds of
#: megabytes (every value also gets a source-map entry) before refusal, and would refuse a
#: merely large file.
_EXPANSION_FACTOR = 10
_EXPANSION_ALLOWANCE = 10_000


class _TooLarge(Exception):
    """Aliases expanded the document past the bound; ``node`` is the alias target being copied."""

    def __init__(self, node: Node | None, limit: int, parsed: int) -> None:
        super().__init__(limit)
        self.node, self.limit, self.parsed = node, limit, parsed


def _count_nodes(root: Node) -> int:
    """How many values the document writes out: the root, and the items, keys and values of
    each collection, counted once however many aliases copy it (an alias counts as one)."""
    seen: set[int] = set()
    stack = [root]
    count = 1
    while stack:
        node = stack.pop()
        if type(node) is ScalarNode or id(node) in seen:
            continue
        seen.add(id(node))
        if type(node) is SequenceNode:
            count += len(node.value)
            stack.extend(node.value)
        elif type(node) is MappingNode:
            count += 2 * len(node.value)
            for pair in node.value:
                stack.extend(pair)
    return count


class _Builder:
    """Walks composed nodes into plain data, recording positions in a :class:`SourceMap`.

    The loops of :meth:`_mapping` and :meth:`_sequence` handle a string scalar
    themselves rather than through :meth:`build`: most nodes are such strings,
    and a Python call per node is a large part of the cost of loading.

    Aliases are bounded as they expand: an alias is the same node object as its anchor, so
    the builder builds that node again; each collection built adds its children to
    ``_built``, and the first build of a node also to ``_parsed``. Only an alias can push
    ``_built`` past ``_parsed`` (see ``_EXPANSION_FACTOR``).
    """

    def __init__(self, source: SourceMap, root: Node | None = None) -> None:
        self.source = source
        self.values = source.values
        self.keys = source.keys
        self.problems: list[Problem] = []
        self._active: set[int] = set()  # the collections being built: a cycle, and the depth
        self._seen: set[int] = set()  # the collections built at least once
        self._root = root
        self._built = self._parsed = 1
        self._exact = False  # whether _parsed is the count of the whole document
        self._expanding: Node | None = None  # the outermost node an alias is copying now
        self._too_deep = False

    def _error(self, node: Node, message: str) -> None:
        mark = node.start_mark
        self.problems.append(Problem(self.source.file, mark.line + 1, mark.column + 1, message))

    def build(self, node: Node, path: Path) -> Any:
        mark = node.start_mark
        self.values[path] = (mark.line + 1, mark.column + 1)
        if type(node) is ScalarNode:  # nodes are never subclassed: `is` is cheaper than isinstance
            return self._scalar(node, path)
        return self._collection(node, path)

    def _collection(self, node: Node, path: Path) -> Any:
        key = id(node)
        active = self._active
        if key in active:
            self._error(node, "this alias refers to itself")
            return None
        if len(active) >= MAX_DEPTH:
            if not self._too_deep:
                self._too_deep = True
                self._error(node, f"lists and mappings nested more than {MAX_DEPTH} levels deep")
            return None
        size = len(node.value) if type(node) is SequenceNode else 2 * len(node.value)
        self._built += size
        outermost = False
        if key not in self._seen:
            self._seen.add(key)
            if not self._exact:
                self._parsed += size
        else:  # an alias (or a merge) builds this node again
            if self._expanding is None:
                self._expanding, outermost = node, True
            if self._built - self._parsed > _EXPANSION_FACTOR * self._parsed + _EXPANSION_ALLOWANCE:
                self._check_expansion()
        active.add(key)
        try:
            if type(node) is SequenceNode:
                if node.tag != _SEQ:
                    self._error(node, f"unsupported YAML tag {node.tag!r}")
                return self._sequence(node, path)
            if type(node) is MappingNode:
                if node.tag != _MAP:
                    self._error(node, f"unsupported YAML tag {node.tag!r}")
                return self._mapping(node, path)
        finally:
            active.discard(key)
            if outermost:
                self._expanding = None
        self._error(node, "unsupported YAML node")  # pragma: no cover
        return None

    def _check_expansion(self) -> None:
        """Raise :class:`_TooLarge` when aliases expanded the document past the bound.

        Until now ``_parsed`` counted the values of the part built so far; the bound is on
        the whole document's, counted here once (only for a document that gets this far).
        """
        if not self._exact and self._root is not None:
            self._exact = True
            self._parsed = _count_nodes(self._root)
        limit = (_EXPANSION_FACTOR + 1) * self._parsed + _EXPANSION_ALLOWANCE
        if self._built > limit:
            raise _TooLarge(self._expanding, limit, self._parsed)

    def _scalar(self, node: ScalarNode, path: Path) -> Any:
        tag, text = node.tag, node.value
        if tag == _STR:
            return text
        self.source.scalar_text[path] = text
        try:
            if tag == _NULL:
                if text not in ("", "~", "null", "Null", "NULL"):  # `!!null x`: not a guess
                    raise ValueError(text)
                return None
            if tag == _BOOL:
                if text.lower() not in ("true", "false"):  # `!!bool yes`: YAML 1.2 has two booleans
                    raise ValueError(text)
                return text.lower() == "true"
            if tag == _INT:
                return _int(text)
            if tag == _FLOAT:
                return _float(text)
        except _NotJson as exc:
            self._error(node, str(exc))
            return text
        except ValueError:
            self._error(node, f"{_short(text)!r} is not a valid {tag.rsplit(':', 1)[-1]}")
            return text
        self._error(node, f"unsupported YAML tag {tag!r} (only plain YAML values are allowed)")
        return text

    def _sequence(self, node: SequenceNode, path: Path) -> list[Any]:
        values = self.values
        result: list[Any] = []
        for index, item in enumerate(node.value):
            item_path = path + (index,)
            mark = item.start_mark
            values[item_path] = (mark.line + 1, mark.column + 1)
            if type(item) is not ScalarNode:
                result.append(self._collection(item, item_path))
            elif item.tag == _STR:
                result.append(item.value)
            else:
                result.append(self._scalar(item, item_path))
        return result

    def _mapping(self, node: MappingNode, path: Path) -> dict[str, Any]:
        values, keys = self.values, self.keys
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if type(key_node) is not ScalarNode:
                self._error(key_node, "a mapping key must be a plain string")
                continue
            if key_node.tag == _MERGE:
                self._merge(value_node, path, merged)
                continue
            key = key_node.value
            # `result` holds this mapping's own keys only (`keys` also has merged ones, which
            # the mapping may override); the first line is looked up again, as errors are rare.
            if key in result:
                first = self._first_line(node, key)
                self._error(key_node, f"duplicate key {key!r} (first defined on line {first})")
                continue
            key_path = path + (key,)
            mark = key_node.start_mark
            keys[key_path] = (mark.line + 1, mark.column + 1)
            mark = value_node.start_mark
            values[key_path] = (mark.line + 1, mark.column + 1)
            if type(value_node) is not ScalarNode:
                result[key] = self._collection(value_node, key_path)
            elif value_node.tag == _STR:
                result[key] = value_node.value
            else:
                result[key] = self._scalar(value_node, key_path)
        if merged:
            return {**merged, **result}
        return result

    def _merge(self, node: Node, path: Path, merged: dict[str, Any]) -> None:
        """Add the keys of the mapping(s) ``node`` names to ``merged``; the first wins."""
        sources = node.value if type(node) is SequenceNode else [node]
        for src in sources:
            if type(src) is not MappingNode:
                self._error(src, "'<<' merges only mappings")
                continue
            built = self.build(src, path)
            if isinstance(built, dict):
                for k, v in built.items():
                    merged.setdefault(k, v)

    @staticmethod
    def _first_line(node: MappingNode, key: str) -> int:
        """The line of the first definition of ``key`` in ``node`` (rare: errors only)."""
        for key_node, _ in node.value:
            if type(key_node) is ScalarNode and key_node.tag != _MERGE and key_node.value == key:
                return key_node.start_mark.line + 1
        raise AssertionError(key)  # pragma: no cover - the key was found before


def _explain_syntax_error(text: str, line: int, col: int, what: str) -> tuple[int, int, str]:
    """The parser's message for the two commonest slips (a tab, an unquoted ``: ``) in plain words.

    libyaml and PyYAML word them differently ("found character that cannot start any token",
    "found character '\\t' ...", "found a tab character that violates indentation"; "mapping
    values are not allowed in this context" / "here"); the text at the mark tells them apart.
    """
    lines = re.split(r"\r\n|[\r\n\x85\u2028\u2029]", text)
    source = lines[line - 1] if 0 < line <= len(lines) else ""
    at = source[col - 1:col]
    if ("cannot start any token" in what and at == "\t") or "'\\t'" in what or "tab character" in what:
        if at != "\t" and "\t" in source:
            col = source.index("\t") + 1  # point at the tab itself
        if re.fullmatch(r"[ \t?:-]*", source[:col - 1]):
            return line, col, "a tab in the indentation: YAML indents with spaces only"
        return line, col, "a tab where YAML allows only spaces (YAML indents and separates with spaces only)"
    if what.startswith("mapping values are not allowed"):
        what = "mapping values are not allowed here"
        if re.search(r":[ \t]", source[:col - 1]):
            return line, col, (f"{what} (a ': ' inside an unquoted value starts a mapping: "
                               "quote the whole value)")
        return line, col, (f"{what} (the unquoted value above goes on over this line, so this ': ' is inside "
                           "it: indent this key like the keys beside it, or quote the value)")
    return line, col, what


def _alias_of(text: str, anchored: Node | None) -> tuple[int, int, str | None]:
    """(line, col, anchor) of the first alias of the anchor ``anchored`` stands at, or of the
    first alias of the document. Parses the text again: only for an error."""
    target = (anchored.start_mark.line, anchored.start_mark.column) if anchored is not None else None
    parser = _ParserBase(text)
    name: str | None = None
    first: tuple[int, int, str | None] | None = None
    try:
        while True:
            event = parser.get_event()
            if event is None or isinstance(event, yaml.StreamEndEvent):
                break
            anchor = getattr(event, "anchor", None)
            if anchor is None:
                continue
            mark = event.start_mark
            if isinstance(event, yaml.AliasEvent):
                if anchor == name:
                    return mark.line + 1, mark.column + 1, anchor
                if first is None:
                    first = (mark.line + 1, mark.column + 1, anchor)
            elif (mark.line, mark.column) == target:
                name = anchor
    finally:
        parser.dispose()
    if first is not None:
        return first
    mark = anchored.start_mark if anchored is not None else None  # pragma: no cover - an alias was found
    return (mark.line + 1, mark.column + 1, None) if mark else (1, 1, None)  # pragma: no cover


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
        else:
            line, col, what = _explain_syntax_error(text, line, col, what)
        raise LocatedErrors([Problem(file, line, col, f"YAML syntax error: {what}")]) from None
    except yaml.YAMLError as exc:
        raise LocatedErrors([Problem(file, 1, 1, f"YAML error: {exc}")]) from None
    except RecursionError:  # pragma: no cover - the pure-Python composer (libyaml stops at 1,000 levels)
        raise LocatedErrors([Problem(file, 1, 1, "YAML error: nested too deeply")]) from None
    finally:
        composer.dispose()
    if node is None:
        return Document(None, source, text)
    builder = _Builder(source, node)
    try:
        data = builder.build(node, ())
    except _TooLarge as exc:
        line, col, anchor = _alias_of(text, exc.node)
        copies = f" (each *{anchor} copies all of &{anchor})" if anchor else ""
        raise LocatedErrors([Problem(file, line, col, (
            f"YAML aliases expand this document past {exc.limit:,} values, from {exc.parsed:,} written "
            f"out{copies}: refused, as a 'billion laughs' would exhaust memory; write the values out "
            "instead of aliasing aliases"))]) from None
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
