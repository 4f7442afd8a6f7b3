"""The text backstop of secret redaction: known secret values scrubbed from whatever is printed or kept.

The first line of defence is taint (:mod:`engine.templating`): every value rendered from a
template that reads ``secrets`` is recorded as ``***`` whatever its text. This module
catches what taint cannot see: a secret a provider echoes back, a token the engine minted,
a value computed from a secret (``| reverse``, ``| b64encode``, ``| list``) that a service
sends back. Every such value is learned with :meth:`Redactor.add` as it is rendered.

How a value is searched for depends on its length, so that short values do not blank out
unrelated text while short secrets still do not leak:

- 8 characters or more: anywhere, and its JSON-escaped and base64 forms too;
- 4 to 7 characters: as a whole token (not inside a longer run of letters and digits:
  ``Bearer pw12x`` is scrubbed, ``xpw12xy`` is not);
- 1 to 3 characters: only a string that is exactly the value.

A list or mapping computed from a secret (``{{ secrets.KEY | list }}``) is scrubbed where the
same list or mapping comes back whole. The backstop cannot recognise a secret transformed by
the service itself (hashed, re-encoded, cut in pieces); taint covers what the engine renders.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from typing import Any

__all__ = ["Redactor", "REDACTED"]

REDACTED = "***"

_COMPACT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=False, default=str)


class Redactor:
    """Known secret values, scrubbed from everything recorded or printed (thread-safe)."""

    #: Values at least this long are found anywhere in a text.
    MIN_LENGTH = 8
    #: Values at least this long (and shorter than MIN_LENGTH) are found as whole tokens.
    MIN_TOKEN = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()  # found anywhere
        self._tokens: set[str] = set()  # found as whole tokens
        self._whole: set[str] = set()  # found as a whole string only
        self._structures: set[str] = set()  # compact JSON of lists and mappings
        self._searched: tuple[str, ...] = ()
        self._pattern: Any = None

    def add(self, value: Any) -> None:
        """Learn a secret value: a string, or the strings inside a list or mapping (and the
        list or mapping itself, in case it comes back whole)."""
        if isinstance(value, (dict, list, tuple)):
            self._add_structure(value)
            for item in value.values() if isinstance(value, dict) else value:
                self.add(item)
            return
        if not isinstance(value, str) or not value:
            return
        with self._lock:
            if value in self._values or value in self._tokens or value in self._whole:
                return
            if len(value) >= self.MIN_LENGTH:
                raw = value.encode("utf-8")
                self._values |= {value, json.dumps(value, ensure_ascii=False)[1:-1],
                                 base64.b64encode(raw).decode("ascii").rstrip("="),
                                 base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")}
            elif len(value) >= self.MIN_TOKEN:
                self._tokens.add(value)
            else:
                self._whole.add(value)
            self._changed()

    def _add_structure(self, value: Any) -> None:
        if not value:
            return
        try:
            text = _COMPACT.encode(list(value) if isinstance(value, tuple) else value)
        except (TypeError, ValueError):
            return
        with self._lock:
            if text not in self._structures:
                self._structures.add(text)
                self._changed()

    def _changed(self) -> None:
        self._pattern = None
        self._searched = (*self._values, *self._tokens, *self._structures,
                          *(json.dumps(v, ensure_ascii=False) for v in self._whole))

    def __bool__(self) -> bool:
        return bool(self._searched)

    def _regex(self) -> Any:
        with self._lock:
            if self._pattern is None:
                # longest first, so a secret containing another is replaced whole
                alternatives = [re.escape(v) for v in sorted(self._values | self._structures, key=len, reverse=True)]
                alternatives += [rf"(?<![A-Za-z0-9]){re.escape(v)}(?![A-Za-z0-9])"
                                 for v in sorted(self._tokens, key=len, reverse=True)]
                self._pattern = re.compile("|".join(alternatives)) if alternatives else None
            return self._pattern

    def found_in(self, text: str) -> bool:
        """Whether any known secret (or a form of it) may occur in ``text``: a cheap test that
        can say yes for a text that :meth:`text` then leaves as it is, never no for one it changes."""
        # One substring search per form: 3-8x faster than the alternation regex, even for 100 forms.
        return any(value in text for value in self._searched)

    def text(self, text: str) -> str:
        """``text`` with every known secret replaced by ``***``."""
        if text in self._whole:
            return REDACTED
        if not self.found_in(text):
            return text
        pattern = self._regex()
        return pattern.sub(REDACTED, text) if pattern is not None else text

    def scrub(self, value: Any) -> Any:
        """A copy of ``value`` with every known secret replaced by ``***``."""
        if not self._searched:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, (dict, list)):
            if self._structures and value and _COMPACT.encode(value) in self._structures:
                return REDACTED
            if isinstance(value, dict):
                return {self.text(str(k)): self.scrub(v) for k, v in value.items()}
            return [self.scrub(v) for v in value]
        return value
