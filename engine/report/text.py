"""Text every output shares: escaping for each place text is written, and the few phrases
every report prints the same way.

Provider text (an error message, a log line) can hold anything: an ANSI escape sequence,
a carriage return, NUL, a ``%`` or a ``|``. Each medium is given it here, escaped for that
medium, so an output never writes a raw value:

- :func:`visible`: a terminal or a CI log (control characters as ``\\x1b``-style escapes);
- :func:`xml`: XML 1.0 text and attribute values (characters XML cannot carry, escaped the
  same way; ElementTree escapes ``<``, ``&`` and quotes);
- :func:`workflow_message`, :func:`workflow_property`: a GitHub workflow command;
- :func:`markdown_prose`, :func:`markdown_code`: a Markdown table cell or paragraph.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "escape_controls", "visible", "xml", "workflow_message", "workflow_property",
    "markdown_prose", "markdown_code", "markdown_lines", "json_text", "duration", "provider_label", "error_line",
    "recorded_error_line", "plural",
]

# Patterns, not compiled ones: re compiles each on its first use (and caches it), so that
# `validate`, which imports this module and never writes XML, does not pay for compiling them.
# C0 controls but tab and line feed, DEL, C1 controls: what moves a terminal's cursor or
# starts an escape sequence.
_CONTROL = r"[\x00-\x08\x0b-\x1f\x7f-\x9f]"
# Characters XML 1.0 cannot carry, even escaped (ANSI escapes in provider logs, NUL, ...).
_NOT_XML = "[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"


def _escaped(match: re.Match[str]) -> str:
    return match.group(0).encode("unicode_escape").decode("ascii")


def escape_controls(text: str) -> str:
    """``text`` with each control character written as its escape (``\\x1b``, ``\\r``)."""
    return re.sub(_CONTROL, _escaped, text)


def visible(text: str, indent: str = "        ") -> str:
    """Provider text made safe for a terminal or a CI log: control characters (an escape
    sequence, a carriage return) shown as ``\\x1b``, continuation lines indented."""
    return escape_controls(text).replace("\n", "\n" + indent)


def xml(value: Any) -> str:
    """Text XML 1.0 can hold: characters it cannot are written as ``\\x1b``-style escapes."""
    return re.sub(_NOT_XML, _escaped, str(value))


def workflow_message(text: str) -> str:
    """A workflow command's message: %, CR and LF escaped."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def workflow_property(text: str) -> str:
    """A workflow command's property value: also ``:`` and ``,``, which end it."""
    return workflow_message(text).replace(":", "%3A").replace(",", "%2C")


def markdown_prose(text: str) -> str:
    """Prose in a Markdown cell, paragraph or heading, shown as written: ``<``, ``>`` and ``&`` as
    entities (no raw HTML), the characters Markdown reads as markup (backticks, emphasis, links,
    strike-through, a table's pipes) backslash-escaped, the text on one line."""
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = re.sub(r"([\\`*_\[\]~|!#])", r"\\\1", text)
    return text.replace("\r", "").replace("\n", " ")


def markdown_code(text: str, limit: int = 300, *, table: bool = True) -> str:
    """Text as a Markdown code span on one line, at most ``limit`` characters (in a table
    cell, pipes escaped too: GitHub splits cells before it reads code spans); empty text is no
    span at all.

    A code span shows its text literally (no entity or backslash is read inside it), so the
    text is not escaped; its fence is one backtick longer than the longest run of backticks in
    it, with a space inside each end when the text starts or ends with a backtick (CommonMark
    strips one such space).
    """
    text = escape_controls(text)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    text = text.replace("\r", "").replace("\n", " ")
    if table:
        text = text.replace("|", "\\|")
    if not text:
        return ""
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text[0] == "`" or text[-1] == "`" or (text[0] == text[-1] == " " and text.strip()) else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def markdown_lines(text: str, limit: int = 1000) -> list[str]:
    """Text of several lines (validation's problems, one a line) as one code span per line,
    each at most ``limit`` characters; blank lines dropped."""
    return [markdown_code(line, limit, table=False) for line in text.splitlines() if line.strip()]


def json_text(value: Any) -> str:
    """A recorded value (a request, an output) as compact JSON, non-ASCII kept."""
    return json.dumps(value, ensure_ascii=False, default=str)


def duration(ms: int | None) -> str:
    """``12 ms``, or ``12.3 s`` from ten seconds on."""
    ms = ms or 0
    return f"{ms} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def provider_label(provider: str, provider_type: str) -> str:
    """``crm (membrane)``, or just ``membrane`` when the provider is named after its type."""
    return provider if provider == provider_type else f"{provider} ({provider_type})"


def error_line(type_: str, message: str, http_status: int | None = None, location: str | None = None) -> str:
    """``FILE:LINE:COL: type (HTTP n): message``, as every output words a step's error."""
    status = f" (HTTP {http_status})" if http_status else ""
    where = f"{location}: " if location else ""
    return f"{where}{type_}{status}: {message}"


def recorded_error_line(error: Mapping[str, Any], *, located: bool = True) -> str:
    """:func:`error_line` of a step's error as the manifest records it."""
    return error_line(error.get("type", "error"), error.get("message", ""), error.get("http_status"),
                      error.get("location") if located else None)


def plural(n: int, word: str) -> str:
    """``1 error``, ``2 errors``."""
    return f"{n} {word}{'' if n == 1 else 's'}"
