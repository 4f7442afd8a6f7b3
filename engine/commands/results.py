"""``runbook results ID --out DIR``: one manifest per run of a batch (or of one run)."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any, TextIO

from engine.errors import RunbookError
from engine.temporal.client import Connection

__all__ = ["results"]


def results(ident: str, out: str, *, connection: Connection | None = None, stdout: TextIO = sys.stdout) -> int:
    """Write ``DIR/<row key>.json`` for each run: its manifest (``run.status: running`` and the
    steps so far for a run not finished yet). Exit 1 when a run failed or is not finished."""
    return asyncio.run(_results(ident, out, connection or Connection(), stdout))


async def manifest_of(client: Any, ident: str) -> dict[str, Any] | None:
    """A run's manifest: its result when finished, else what its ``manifest`` query says so far."""
    from temporalio.client import WorkflowExecutionStatus

    from engine.temporal.packing import unpacked

    handle = client.get_workflow_handle(ident)
    description = await handle.describe()
    if description.status == WorkflowExecutionStatus.COMPLETED:
        manifest: dict[str, Any] = unpacked(await handle.result())
        return manifest
    if description.status == WorkflowExecutionStatus.RUNNING:
        return unpacked(await handle.query("manifest"))  # type: ignore[no-any-return]  # JSON of the query
    return None


async def _results(ident: str, out: str, connection: Connection, stdout: TextIO) -> int:
    from engine.commands.status import runs_of
    from engine.files import atomic_write
    from engine.temporal.client import connect
    from engine.temporal.runs import file_name, split_id, workflow_id

    client = await connect(connection)
    batch, key = split_id(ident)
    if key is not None:
        idents = [workflow_id(batch, key)]
    else:
        idents = sorted(execution.id for execution in await runs_of(client, batch))
        if not idents:
            raise RunbookError(f"no runs of batch {batch!r} (a run's id is runbook/<batch>/<key>)")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise RunbookError(f"--out {out}: cannot create it: {exc.strerror or exc}") from None
    code, written = 0, 0
    manifests = await asyncio.gather(*(manifest_of(client, i) for i in idents))
    for run, manifest in zip(idents, manifests, strict=True):
        if manifest is None:
            stdout.write(f"{run}: the workflow ended without a manifest (terminated, cancelled or failed)\n")
            code = 1
            continue
        path = os.path.join(out, file_name(split_id(run)[1] or run))
        atomic_write(path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
        written += 1
        if manifest["run"]["status"] != "succeeded":
            code = 1
    stdout.write(f"wrote {written} manifest{'s' if written != 1 else ''} to {out}\n")
    return code
