"""``python -m tests.planted_bug ARGS``: the ``runbook`` CLI with a bug planted in the engine.

The built-in Membrane provider's ``send`` raises a RuntimeError quoting its call's ``key``
input reversed (so the message holds a value rendered from a secret). A plugin's exceptions
are the plugin's failure (error type ``plugin``, exit 1), so this is how the tests reach
the engine's own internal-error path: one line, exit 3, the traceback with ``--debug``,
secrets redacted. Nothing else of the engine is changed.
"""

from __future__ import annotations

import sys
from typing import Any

from engine.cli import main
from engine.providers.membrane import MembraneProvider


def _buggy_send(self: MembraneProvider, call: Any, timeout: float | None) -> Any:
    raise RuntimeError("engine bug holding " + str((call.input or {}).get("key", ""))[::-1])


if __name__ == "__main__":
    MembraneProvider.send = _buggy_send  # type: ignore[method-assign]
    sys.exit(main())
