"""Safe YAML loading with positions: the only module that imports yaml.

The document is parsed by PyYAML's (C, when available) parser and its events are
turned straight into plain JSON-compatible values by :class:`_Builder` (no node
tree), which also records the line and column of every key and value, or for a run
only those it reports (:class:`SparseSourceMap`). Scalars follow YAML 1.2's core
schema: only ``true``/``false`` are booleans (``on``, ``yes``, ``off`` stay
strings), dates stay strings, ``012`` is twelve. Duplicate keys, aliases that
loop, unknown tags and multi-document files are errors, never guesses. So is what
JSON cannot carry (an integer beyond 64 bits, NaN, infinity: every value ends up in
a request or a manifest) and what would exhaust the machine: aliases that expand a
small file to millions of values (a "billion laughs"), or nesting deeper than
:data:`MAX_DEPTH`.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable
from typing import Any, NamedTuple, TypeAlias

import yaml
from yaml.composer import ComposerError
from yaml.events import (
    AliasEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)
from yaml.nodes import ScalarNode, SequenceNode
from yaml.resolver import BaseResolver

from engine.errors import LocatedErrors, Problem

__all__ = ["Path", "SourceMap", "SparseSourceMap", "Document", "load_file", "load_text", "parse_scalar",
           "MAX_DEPTH"]

Path: TypeAlias = tuple[Any, ...]  # a path into the document: keys (str) and list indexes (int)

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

    class _ParserBase(  # type: ignore[no-redef]  # the same parser, where libyaml is missing
        yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer
    ):
        def __init__(self, stream: str) -> None:
            yaml.reader.Reader.__init__(self, stream)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)
            yaml.composer.Composer.__init__(self)


class SourceMap:
    """Where every key and value of a loaded document stands in its file."""

    # A plain class, not a dataclass: generating a dataclass's code costs start-up time.
    __slots__ = ("file", "values", "keys", "scalar_text")

    def __init__(self, file: str, values: dict[Path, tuple[int, int]] | None = None,
                 keys: dict[Path, tuple[int, int]] | None = None,
                 scalar_text: dict[Path, str] | None = None) -> None:
        self.file = file
        # (line, col); in a SparseSourceMap, one packed int (see _COLUMN_BITS)
        self.values: dict[Path, Any] = {} if values is None else values
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
                return self.values[p]  # type: ignore[no-any-return]  # (line, col) in this class
            p = p[:-1]
        return self.values.get((), (1, 1))  # type: ignore[no-any-return]  # (line, col) here

    def recorded(self, path: Path) -> tuple[int, int] | None:
        """The position recorded for the value at ``path`` itself (no parent's), if any."""
        return self.values.get(path)

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int, str]:
        """``(line, col, note)``: :meth:`position`, and what to add to a message about ``path``
        when that position is not exact (nothing here; see :class:`SparseSourceMap`)."""
        line, col = self.position(path, key=key)
        return line, col, ""

    def problem(self, path: Path, message: str, *, key: bool = False,
                severity: str = "error") -> Problem:
        line, col, note = self.locate(path, key=key)
        return Problem(self.file, line, col, message + note, severity)


#: A sparse source map packs a position in one int: ``line << _COLUMN_BITS | col`` (a tuple of
#: two ints costs three objects).
_COLUMN_BITS = 32
_COLUMN_MASK = (1 << _COLUMN_BITS) - 1

#: The plain words YAML 1.1 read as booleans, which the linter warns about when they are written
#: unquoted (``validation.YAML11_BOOLEANS``): a sparse load keeps their positions for it.
_YAML11_WORDS = frozenset({"yes", "no", "on", "off", "y", "n"})


def _kept(path: Path, text: str) -> bool:
    """Whether a sparse load records the position of the string ``text`` at ``path``, more than
    two levels down: what a run's errors name (a template; a step's ``provider``, ``when``, an
    ``assert`` and its dispatch style) and a YAML 1.1 boolean word (the linter reads how it was
    written)."""
    if "{" in text:
        return True
    depth = len(path)
    if (depth == 3 and path[2] in ("provider", "when")) or (depth == 4 and path[2] in ("dispatch", "assert")):
        return True
    return len(text) <= 3 and text.lower() in _YAML11_WORDS


def _dotted(path: Path) -> str:
    """``steps[3].input.n``: a path as a note names it."""
    if not path:
        return "the document"
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class SparseSourceMap(SourceMap):
    """The positions a run reports, each packed in one int, and no key positions: a full map of a
    runbook of 20,000 steps costs more memory than the runbook's data (``load_text(sparse=True)``).

    It records where every node at most two levels down stands (``steps[3]``, ``providers.crm``,
    ``outputs.x``), and, further down, each step's dispatch style and the strings :func:`_kept`
    names: the templates, each step's ``provider``, ``when`` and asserts, the YAML 1.1 boolean
    words. That is where the errors of a run are located (a provider's error at the dispatch
    style), so a run seldom needs any other position. It keeps the texts of non-string scalars for
    validation, which drops them (:meth:`for_run`) once the runbook passes.

    Any other position is found by loading the file again, in full, once, after checking that its
    text is still the one that was loaded (its sha256, given by :meth:`for_run`): every position a
    run reports is exact. If the file has changed (or cannot be read), the position given is the
    nearest recorded parent's, and :meth:`locate` says so: it does not point at a line that may no
    longer hold the field. Before :meth:`for_run` it falls back without a word or a read: only
    validation looks then, and whatever it finds is located again on a full load.
    """

    __slots__ = ("_sha256", "_full")

    def __init__(self, file: str) -> None:
        super().__init__(file)
        self._sha256: str | None = None
        self._full: SourceMap | bool | None = None  # the full map; False: the file could not give it

    def for_run(self, sha256: str) -> None:
        """Ready the map for a run of the text whose hash is ``sha256``: positions not recorded are
        read from the file from now on, and the scalar texts only validation reads are dropped."""
        self._sha256 = sha256
        self.scalar_text = {}

    def recorded(self, path: Path) -> tuple[int, int] | None:
        packed = self.values.get(path)
        return None if packed is None else (packed >> _COLUMN_BITS, packed & _COLUMN_MASK)

    def position(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        line, col, _ = self.locate(path, key=key)
        return line, col

    def locate(self, path: Path, *, key: bool = False) -> tuple[int, int, str]:
        p = tuple(path)
        if not key:
            exact = self.recorded(p)
            if exact is not None:
                return exact[0], exact[1], ""
        full = self._complete()
        if full is not None:
            line, col = full.position(p, key=key)
            return line, col, ""
        if not key:
            p = p[:-1]
        while p and p not in self.values:
            p = p[:-1]
        line, col = self.recorded(p) or (1, 1)
        if self._sha256 is None:
            return line, col, ""
        return line, col, (f" (approximate: {self.file} has changed since the run read it, "
                           f"so this is where {_dotted(p)} starts)")

    def _complete(self) -> SourceMap | None:
        """The file's full map, loaded on the first call, if the file still holds the text run."""
        if self._full is None and self._sha256 is not None:
            self._full = False
            try:
                text = _read(self.file)
                if hashlib.sha256(text.encode("utf-8")).hexdigest() == self._sha256:
                    source = load_text(text, self.file).source
                    self._full = SourceMap(self.file, source.values, source.keys)
            except LocatedErrors:  # unreadable now (the text run loaded without a problem)
                pass
        return self._full if isinstance(self._full, SourceMap) else None


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
    """Aliases expanded the document past the bound; ``anchor`` is the one whose copy was under way."""

    def __init__(self, anchor: str, limit: int, parsed: int) -> None:
        super().__init__(limit)
        self.anchor, self.limit, self.parsed = anchor, limit, parsed


def _count_values(text: str) -> int:
    """How many values ``text`` writes out: each scalar, alias, list and mapping once (the root,
    and the items, keys and values of each collection; an alias counts as one value).

    Parses the text again (only for a document whose aliases copy this many values), raising
    what composing all of it would have raised before any value was built: a syntax error, an
    undefined alias, a duplicate anchor, a second document.
    """
    parser: Any = _ParserBase(text)  # libyaml's events are untyped; the loops test type(event)
    anchors: dict[str, Any] = {}
    count = documents = 0
    try:
        while True:
            event = parser.get_event()
            kind = type(event)
            if kind is StreamEndEvent:
                return count
            if kind is DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise ComposerError("expected a single document in the stream", None,
                                        "but found another document", event.start_mark)
            elif kind is ScalarEvent or kind is AliasEvent or kind is MappingStartEvent or kind is SequenceStartEvent:
                count += 1
                anchor = event.anchor
                if anchor is None:
                    continue
                if kind is AliasEvent:
                    if anchor not in anchors:
                        raise ComposerError(None, None, "found undefined alias", event.start_mark)
                elif anchor in anchors:
                    raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence", anchors[anchor],
                                        "second occurrence", event.start_mark)
                else:
                    anchors[anchor] = event.start_mark
    finally:
        parser.dispose()


def _resolve(text: str) -> str:
    """The tag of a plain scalar (as :class:`_Core12Resolver` resolves it)."""
    for tag, regexp in _IMPLICIT.get(text[:1], ()):
        if regexp.match(text):
            return tag
    return _STR


#: Strings up to this long are one object however often the document repeats them (provider
#: names, dispatch ids, keys: a runbook of 20,000 steps repeats each 20,000 times).
_SHARED_LENGTH = 24


class _Builder:
    """Builds plain data straight from the parser's events, recording positions in a :class:`SourceMap`.

    The document's node tree never exists: composed, it costs several times the data (each node
    an object with two marks), for a moment only, but that moment is the peak of a long run. What
    the tree gave for free is done here, with the same results:

    * An anchored node's events are recorded as they are read (aliases inside it stay aliases),
      and an alias replays them, so each copy is built, checked and located (at the anchor's
      text) like the node it copies. A collection being built whose anchor an alias names is a
      cycle: "this alias refers to itself". An undefined alias, a duplicate anchor and a second
      document raise the composer's own errors.
    * Aliases are bounded as they expand (see ``_EXPANSION_FACTOR``): ``_copied`` counts the values
      they copy, against ``_written``, the values the document writes out, counted as its
      collections end (a lower bound) until the copies pass it, then counted over the whole text.
    * A node that is not built (a key that is a collection, the value of a duplicate key, a list
      nested too deep) is read past by :meth:`_skip`, which still defines the anchors inside it.

    A ``sparse`` builder records only the positions :class:`SparseSourceMap` keeps, and no key
    positions. The loops of :meth:`_mapping` and :meth:`_sequence` handle a scalar without an
    anchor themselves rather than through :meth:`_node`: most events are such scalars, and a
    Python call per event is a large part of the cost of loading. They read each event through
    ``self._next``, which is the parser's own ``get_event`` except while an alias is replayed or
    an anchored node recorded (:meth:`_slow_next`).
    """

    def __init__(self, source: SourceMap, parse: Callable[[], Any], text: str, *, sparse: bool) -> None:
        self.source = source
        self.values: dict[Path, Any] = source.values
        self.keys = source.keys
        self.scalar_text = source.scalar_text
        self.full = not sparse
        self.problems: list[Problem] = []
        self._text = text
        self._parse = parse
        self._next = parse
        self._replay: list[list[Any]] = []  # [events, index of the next one] of each alias being replayed
        self._recording: list[list[Any]] = []  # the events so far of each anchored collection being read
        self._anchors: dict[str, list[Any]] = {}  # anchor -> the events of its node
        self._sizes: dict[str, int] = {}  # anchor -> the values an alias of it copies
        self._open: dict[str, Any] = {}  # anchor -> first event, of the anchored collections being built
        self._strings: dict[str, str] = {}
        self._depth = 0
        self._too_deep = False
        self._copied = 0
        self._written = 1
        self._exact = False  # whether _written is the count of the whole document
        self._outermost = ""  # the anchor of the outermost alias being replayed

    def _error(self, event: Any, message: str) -> None:
        mark = event.start_mark
        self.problems.append(Problem(self.source.file, mark.line + 1, mark.column + 1, message))

    def document(self) -> Any:
        """The value of the stream's one document (None for an empty stream)."""
        event = self._parse()
        if type(event) is StreamStartEvent:
            event = self._parse()
        if type(event) is StreamEndEvent:
            return None
        start = event  # DocumentStartEvent
        data = self._node(self._next(), ())
        self._next()  # DocumentEndEvent
        event = self._parse()
        if type(event) is not StreamEndEvent:
            raise ComposerError("expected a single document in the stream", start.start_mark,
                                "but found another document", event.start_mark)
        return data

    # -- events ---------------------------------------------------------------------------------

    def _slow_next(self) -> Any:
        """The next event while an alias is replayed (its recorded events) or an anchored node is
        read (the parser's, recorded)."""
        replay = self._replay
        while replay:
            frame = replay[-1]
            events, index = frame
            if index < len(events):
                frame[1] = index + 1
                return events[index]
            replay.pop()
        event = self._parse()
        for events in self._recording:
            events.append(event)
        if not self._recording:
            self._next = self._parse
        return event

    def _target(self, alias: Any) -> Any:
        """The first event of the node ``alias`` names (an anchored node being built, or read)."""
        anchor = alias.anchor
        opened = self._open.get(anchor)
        if opened is not None:
            return opened
        events = self._anchors.get(anchor)
        if events is None:
            raise ComposerError(None, None, "found undefined alias", alias.start_mark)
        return events[0]

    def _alias(self, alias: Any) -> Any:
        """The first event of the node ``alias`` names, the others queued to be replayed; None
        (reported) for an alias inside the node it names."""
        target = self._target(alias)
        anchor = alias.anchor
        if anchor in self._open:
            self._error(target, "this alias refers to itself")
            return None
        events = self._anchors[anchor]
        if len(events) > 1:
            if not self._replay:
                self._outermost = anchor
            self._copied += self._sizes[anchor]
            if self._copied > _EXPANSION_FACTOR * self._written + _EXPANSION_ALLOWANCE:
                self._check_expansion()
            self._replay.append([events, 1])
            self._next = self._slow_next
        return target

    def _check_expansion(self) -> None:
        """Raise :class:`_TooLarge` when aliases copy more than the bound allows. Until now
        ``_written`` counted what was read so far; the bound is on the whole document's count,
        counted here once (only for a document that gets this far)."""
        if not self._exact:
            self._exact = True
            self._written = _count_values(self._text)
        if self._copied > _EXPANSION_FACTOR * self._written + _EXPANSION_ALLOWANCE:
            raise _TooLarge(self._outermost, (_EXPANSION_FACTOR + 1) * self._written + _EXPANSION_ALLOWANCE,
                            self._written)

    def _new_anchor(self, event: Any) -> bool:
        """Whether ``event`` defines its anchor (False: an alias replays it); a second definition
        is the composer's error."""
        anchor = event.anchor
        recorded = self._anchors.get(anchor)
        if recorded is not None and recorded[0] is event:
            return False
        first = recorded[0] if recorded is not None else self._open.get(anchor)
        if first is not None:
            raise ComposerError(f"found duplicate anchor {anchor!r}; first occurrence", first.start_mark,
                                "second occurrence", event.start_mark)
        return True

    def _anchor_scalar(self, event: Any) -> None:
        if self._new_anchor(event):
            self._anchors[event.anchor] = [event]
            self._sizes[event.anchor] = 0

    def _open_anchor(self, event: Any) -> list[Any] | None:
        """Mark the anchored collection ``event`` starts as being built; record its events when it
        is read for the first time (their list; None when an alias replays it)."""
        events = None
        if self._new_anchor(event):
            events = [event]
            self._recording.append(events)
            self._next = self._slow_next
        self._open[event.anchor] = event
        return events

    def _close_anchor(self, anchor: str, events: list[Any] | None) -> None:
        del self._open[anchor]
        if events is not None:
            self._recording.pop()  # the innermost: recordings nest as their nodes do
            self._anchors[anchor] = events
            self._sizes[anchor] = sum(1 for e in events if type(e) is not MappingEndEvent
                                      and type(e) is not SequenceEndEvent) - 1
            if not self._recording and not self._replay:
                self._next = self._parse

    def _skip(self, event: Any) -> None:
        """Read past the node ``event`` starts, unbuilt: nothing in it is checked, located or
        counted, but its anchors are defined (the composer defined them) for an alias further on,
        and its aliases must name one."""
        depth = 0
        anchored: list[tuple[int, str, list[Any] | None]] = []
        while True:
            kind = type(event)
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                depth += 1
                if event.anchor is not None:
                    anchored.append((depth, event.anchor, self._open_anchor(event)))
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                if anchored and anchored[-1][0] == depth:
                    _, anchor, events = anchored.pop()
                    self._close_anchor(anchor, events)
                depth -= 1
            elif kind is ScalarEvent and event.anchor is not None:
                self._anchor_scalar(event)
            elif kind is AliasEvent:
                self._target(event)  # an undefined alias is the composer's error, built or not
            if depth == 0:
                return
            event = self._next()

    # -- values ---------------------------------------------------------------------------------

    def _node(self, event: Any, path: Path) -> Any:
        """The value of the node ``event`` starts (an alias: of the node it names), its position recorded."""
        kind = type(event)
        if kind is AliasEvent:
            event = self._alias(event)
            if event is None:
                return None
            kind = type(event)
        mark = event.start_mark
        if kind is ScalarEvent:
            if self.full:
                self.values[path] = (mark.line + 1, mark.column + 1)
            elif len(path) <= 2 or _kept(path, event.value):
                self.values[path] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
            if event.anchor is not None:
                self._anchor_scalar(event)
            return self._scalar(event, path)
        if self.full:
            self.values[path] = (mark.line + 1, mark.column + 1)
        elif len(path) <= 2 or (len(path) == 4 and path[2] == "dispatch"):  # `api: {...}`
            self.values[path] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
        return self._collection(event, path)

    def _collection(self, event: Any, path: Path) -> Any:
        if self._depth >= MAX_DEPTH:
            if not self._too_deep:
                self._too_deep = True
                self._error(event, f"lists and mappings nested more than {MAX_DEPTH} levels deep")
            self._skip(event)
            return None
        anchor = event.anchor
        events = self._open_anchor(event) if anchor is not None else None
        tag = event.tag
        self._depth += 1
        if type(event) is SequenceStartEvent:
            if tag is not None and tag != "!" and tag != _SEQ:
                self._error(event, f"unsupported YAML tag {tag!r}")
            value: Any = self._sequence(path)
        else:
            if tag is not None and tag != "!" and tag != _MAP:
                self._error(event, f"unsupported YAML tag {tag!r}")
            value = self._mapping(path)
        self._depth -= 1
        if anchor is not None:
            self._close_anchor(anchor, events)
        return value

    def _scalar(self, event: Any, path: Path) -> Any:
        text = event.value
        tag = event.tag
        if tag is None or tag == "!":
            tag = _resolve(text) if event.implicit[0] else _STR
        if tag == _STR:
            return self._strings.setdefault(text, text) if len(text) <= _SHARED_LENGTH else text
        self.scalar_text[path] = text
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
            self._error(event, str(exc))
            return text
        except ValueError:
            self._error(event, f"{_short(text)!r} is not a valid {tag.rsplit(':', 1)[-1]}")
            return text
        self._error(event, f"unsupported YAML tag {tag!r} (only plain YAML values are allowed)")
        return text

    def _sequence(self, path: Path) -> list[Any]:
        values, full, strings = self.values, self.full, self._strings
        shallow = len(path) < 2  # its items are at most two levels down
        fresh = not self._replay
        result: list[Any] = []
        index = 0
        while True:
            item = self._next()
            kind = type(item)
            if kind is ScalarEvent and item.anchor is None:
                item_path = path + (index,)
                text = item.value
                mark = item.start_mark
                if full:
                    values[item_path] = (mark.line + 1, mark.column + 1)
                elif shallow or _kept(item_path, text):
                    values[item_path] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
                if item.tag is None and (not item.implicit[0] or text[:1] not in _IMPLICIT):  # a string
                    result.append(strings.setdefault(text, text) if len(text) <= _SHARED_LENGTH else text)
                else:
                    result.append(self._scalar(item, item_path))
            elif kind is SequenceEndEvent:
                if fresh:
                    self._written += index
                return result
            else:
                result.append(self._node(item, path + (index,)))
            index += 1

    def _mapping(self, path: Path) -> dict[str, Any]:
        values, keys, full, strings = self.values, self.keys, self.full, self._strings
        shallow = len(path) < 2  # its values are at most two levels down
        fresh = not self._replay
        result: dict[str, Any] = {}
        merged: dict[str, Any] = {}
        apart: list[tuple[list[str], tuple[dict[Path, Any], ...]]] = []  # see _merge_one
        pairs = 0
        while True:
            key_event = self._next()
            kind = type(key_event)
            if kind is MappingEndEvent:
                break
            pairs += 1
            if kind is not ScalarEvent or key_event.anchor is not None:
                key_event = self._key(key_event)
                if key_event is None:  # a list or a mapping: reported, its value not built
                    self._skip(self._next())
                    continue
            key = key_event.value
            tag = key_event.tag
            if (tag is None and key == "<<" and key_event.implicit[0]) or tag == _MERGE:
                self._merge(self._next(), path, merged, apart)
                continue
            key = strings.setdefault(key, key)
            value_event = self._next()
            # `result` holds this mapping's own keys only (merged ones it may override). A sparse
            # load records no key: one with a problem is loaded again in full, which words it.
            if key in result:
                first = keys[path + (key,)][0] if full else 0
                self._error(key_event, f"duplicate key {key!r} (first defined on line {first})")
                self._skip(value_event)
                continue
            key_path = path + (key,)
            mark: Any  # libyaml's mark (typed optional, never None on an event)
            if full:
                mark = key_event.start_mark
                keys[key_path] = (mark.line + 1, mark.column + 1)
            if type(value_event) is ScalarEvent and value_event.anchor is None:
                text = value_event.value
                mark = value_event.start_mark
                if full:
                    values[key_path] = (mark.line + 1, mark.column + 1)
                elif shallow or _kept(key_path, text):
                    values[key_path] = (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)
                if value_event.tag is None and (not value_event.implicit[0] or text[:1] not in _IMPLICIT):
                    result[key] = strings.setdefault(text, text) if len(text) <= _SHARED_LENGTH else text
                else:
                    result[key] = self._scalar(value_event, key_path)
            else:
                result[key] = self._node(value_event, key_path)
        if fresh:
            self._written += 2 * pairs
        if merged:
            self._keep_merged_positions(path, apart, result)
            return {**merged, **result}
        return result

    def _key(self, event: Any) -> Any:
        """The scalar event of a key that is an alias or has an anchor; None (reported) for a key
        that is a list or a mapping (or an alias of one), which is read past."""
        kind = type(event)
        if kind is AliasEvent:
            event = self._target(event)  # a scalar copies nothing: no replay
            if type(event) is ScalarEvent:
                return event
            self._error(event, "a mapping key must be a plain string")
            return None
        if kind is ScalarEvent:
            self._anchor_scalar(event)
            return event
        self._error(event, "a mapping key must be a plain string")
        self._skip(event)
        return None

    def _merge(self, event: Any, path: Path, merged: dict[str, Any],
               apart: list[tuple[list[str], tuple[dict[Path, Any], ...]]]) -> None:
        """Add the keys of the mapping(s) a ``<<`` names to ``merged`` (the first wins) and their
        positions to ``apart``. ``event`` starts its value: a mapping, a list of mappings, or an
        alias of either."""
        kind = type(event)
        if kind is AliasEvent and type(self._target(event)) is SequenceStartEvent:
            event = self._alias(event)
            if event is None:
                return
            kind = SequenceStartEvent
        if kind is not SequenceStartEvent:
            self._merge_one(event, path, merged, apart)
            return
        anchor = event.anchor
        events = self._open_anchor(event) if anchor is not None else None
        while type(item := self._next()) is not SequenceEndEvent:
            self._merge_one(item, path, merged, apart)
        if anchor is not None:
            self._close_anchor(anchor, events)

    def _merge_one(self, event: Any, path: Path, merged: dict[str, Any],
                   apart: list[tuple[list[str], tuple[dict[Path, Any], ...]]]) -> None:
        """Merge one mapping. Its positions (and scalar texts) are recorded apart, with the keys
        it adds (those no earlier merge has): :meth:`_keep_merged_positions` keeps those of the
        keys the mapping does not set itself, so that positions say where each value of the
        data is written, and the merging mapping's own position stays its own."""
        kind = type(event)
        if kind is AliasEvent:
            target = self._target(event)
            if type(target) is not MappingStartEvent:
                self._error(target, "'<<' merges only mappings")
                return
        elif kind is not MappingStartEvent:
            self._error(event, "'<<' merges only mappings")
            self._skip(event)
            return
        tables = self.values, self.keys, self.scalar_text
        self.values, self.keys, self.scalar_text = {}, {}, {}
        built = self._node(event, path)
        recorded = self.values, self.keys, self.scalar_text
        self.values, self.keys, self.scalar_text = tables
        if not isinstance(built, dict):
            return
        added = [k for k in built if k not in merged]
        for k in added:
            merged[k] = built[k]
        apart.append((added, recorded))

    def _keep_merged_positions(self, path: Path, apart: list[tuple[list[str], tuple[dict[Path, Any], ...]]],
                               own: dict[str, Any]) -> None:
        depth = len(path)
        for added, recorded in apart:
            keep = {k for k in added if k not in own}
            if keep:
                tables: tuple[dict[Path, Any], ...] = (self.values, self.keys, self.scalar_text)
                for table, positions in zip(tables, recorded, strict=True):
                    for p, position in positions.items():
                        if len(p) > depth and p[depth] in keep:
                            table[p] = position


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


def _first_alias(text: str, anchor: str) -> tuple[int, int]:
    """(line, col) of the first alias of ``anchor`` in ``text``. Parses the text again: only for an error."""
    parser: Any = _ParserBase(text)  # libyaml's events are untyped; the loops test type(event)
    try:
        while type(event := parser.get_event()) is not StreamEndEvent:
            if type(event) is AliasEvent and event.anchor == anchor:
                mark: Any = event.start_mark  # typed optional, never None on an event
                return mark.line + 1, mark.column + 1
    finally:
        parser.dispose()
    return 1, 1  # pragma: no cover - the anchor was copied by an alias


def load_text(text: str, file: str, *, sparse: bool = False) -> Document:
    """Load one YAML document from ``text``; every problem raises :class:`LocatedErrors`.

    ``sparse`` records only the positions a run reports (:class:`SparseSourceMap`). A document
    with a problem is then loaded again in full, so that each is worded as a full load words it.
    """
    source = SparseSourceMap(file) if sparse else SourceMap(file)
    parser: Any = _ParserBase(text)  # libyaml's events are untyped; the loops test type(event)
    builder = _Builder(source, parser.get_event, text, sparse=sparse)
    try:
        data = builder.document()
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
    except RecursionError:  # pragma: no cover - building recurses about three calls a level (MAX_DEPTH)
        raise LocatedErrors([Problem(file, 1, 1, "YAML error: nested too deeply")]) from None
    except _TooLarge as exc:
        line, col = _first_alias(text, exc.anchor)
        raise LocatedErrors([Problem(file, line, col, (
            f"YAML aliases expand this document past {exc.limit:,} values, from {exc.parsed:,} written "
            f"out (each *{exc.anchor} copies all of &{exc.anchor}): refused, as a 'billion laughs' would "
            "exhaust memory; write the values out instead of aliasing aliases"))]) from None
    finally:
        parser.dispose()
    if builder.problems:
        if sparse:
            return load_text(text, file)  # raises them
        raise LocatedErrors(builder.problems)
    return Document(data, source, text)


def _read(path: str) -> str:
    """The text of ``path``; an unreadable file is a located error at 1:1."""
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise LocatedErrors([Problem(path, 1, 1, f"cannot read file: {reason}")]) from None


def load_file(path: str, *, sparse: bool = False) -> Document:
    """Read and load ``path`` (``sparse``: see :func:`load_text`); an unreadable file is a located
    error at 1:1."""
    return load_text(_read(path), path, sparse=sparse)


def parse_scalar(text: str, origin: str) -> Any:
    """Parse a ``--var`` value as a YAML scalar or flow collection (``3`` is an int)."""
    if text == "":
        return ""
    return load_text(text, origin).data
