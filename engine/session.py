"""What a run or a replay needs around its steps: a run id, where its manifest goes, and the
emulator and the checked providers for as long as it lasts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from engine.clock import now_rfc3339
from engine.manifest import new_run_id
from engine.model import Runbook
from engine.preflight import Prepared, preflight
from engine.templating import Templates

__all__ = ["default_manifest_path", "new_run_info", "prepared_run"]


def default_manifest_path(run_id: str) -> str:
    """``.runbook/runs/<run id>.json`` under the current directory."""
    return os.path.join(".runbook", "runs", f"{run_id}.json")


def new_run_info() -> dict[str, Any]:
    """The ``run`` context of templates: a new id and the start time."""
    return {"id": new_run_id(), "started_at": now_rfc3339(), "dry_run": False}


@contextlib.contextmanager
def prepared_run(runbook: Runbook, templates: Templates, variables: dict[str, Any],
                 run_info: dict[str, Any], emulate: bool) -> Iterator[Prepared]:
    """The emulator (with ``--emulate``) and the checked providers, for the length of a run;
    on the way out every provider's connections are closed and the emulator stopped."""
    emulator = None
    if emulate:
        from engine import emulator as emulator_mod

        emulator = emulator_mod.start("127.0.0.1", 0)
    try:
        prepared = preflight(runbook, templates, vars=variables, environ=os.environ,
                             run_info=run_info, emulator_url=emulator.url if emulator else None)
        # httpx is imported now, before step 1, not on the first send: a rate limit spaces the
        # first attempts, which a 50 ms import would otherwise bunch together
        import engine.providers._http  # noqa: F401
        try:
            yield prepared
        finally:
            for provider in prepared.providers.values():
                provider.close()
    finally:
        if emulator is not None:
            emulator.stop()
