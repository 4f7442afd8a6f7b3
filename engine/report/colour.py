"""Colour for what a person reads on a terminal: ``--color auto|always|never`` and ``NO_COLOR``.

``auto`` (the default) colours a stream that is a terminal (not ``TERM=dumb``) unless the
``NO_COLOR`` environment variable is set to anything but the empty string
(https://no-color.org); ``always`` colours whatever the stream and whatever ``NO_COLOR``
says (a CI log that renders ANSI colours); ``never`` does not. Colour only marks what the
text already says (``ok``, ``FAIL``, ``warning:``), so nothing is lost without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TextIO

__all__ = ["MODES", "Palette", "PLAIN", "palette_for"]

#: The values of ``--color``.
MODES = ("auto", "always", "never")

#: SGR parameters per role.
_CODES = {
    "succeeded": "32",  # green
    "failed": "1;31",  # bold red
    "interrupted": "33",  # yellow
    "skipped": "2",  # dim
    "not_run": "2",
    "warning": "33",
    "error": "31",
}


class Palette:
    """Paints text by role (a step status, ``error``, ``warning``) when ``enabled``."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def paint(self, text: str, role: str) -> str:
        """``text`` in the colour of ``role`` (a role without one: as it is)."""
        code = _CODES.get(role)
        if not self.enabled or code is None or not text:
            return text
        return f"\x1b[{code}m{text}\x1b[0m"


#: The palette of a stream that gets no colour.
PLAIN = Palette(False)


def palette_for(mode: str, stream: TextIO, environ: Mapping[str, str] | None = None) -> Palette:
    """The palette ``--color MODE`` gives ``stream``."""
    if mode not in MODES:
        raise ValueError(f"unknown colour mode {mode!r}")
    if mode != "auto":
        return Palette(mode == "always")
    env = os.environ if environ is None else environ
    if env.get("NO_COLOR"):
        return PLAIN
    try:
        return Palette(stream.isatty() and env.get("TERM") != "dumb")
    except (AttributeError, ValueError):  # no isatty, or closed
        return PLAIN
