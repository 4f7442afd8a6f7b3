"""``runbook status ID``: a run's progress (a workflow query) or a batch's runs per status."""

from __future__ import annotations

import asyncio
import sys
from typing import Any, TextIO

from engine.errors import RunbookError
from engine.temporal.client import Connection

__all__ = ["status"]


def status(ident: str, *, connection: Connection | None = None, json_output: bool = False,
           stdout: TextIO = sys.stdout) -> int:
    """Print the progress of run ``runbook/<batch>/<key>`` or of batch ``<batch>``."""
    return asyncio.run(_status(ident, connection or Connection(), json_output, stdout))


async def runs_of(client: Any, batch: str) -> list[Any]:
    """The workflow executions of a batch (their ids start ``runbook/<batch>/``)."""
    from engine.temporal.runs import workflow_id

    prefix = workflow_id(batch, "")
    query = f'WorkflowType = "runbook" AND WorkflowId STARTS_WITH "{prefix}"'
    return [execution async for execution in client.list_workflows(query)]


async def run_status(client: Any, ident: str) -> dict[str, Any]:
    """The ``status`` query of a run, with its Temporal state."""
    from temporalio.service import RPCError

    handle = client.get_workflow_handle(ident)
    try:
        description = await handle.describe()
        progress: dict[str, Any] = await handle.query("status")
    except RPCError as exc:
        raise RunbookError(f"{ident}: no such run: {exc.message}") from None
    progress["workflow"] = description.status.name.lower() if description.status else None
    return progress


async def _status(ident: str, connection: Connection, json_output: bool, stdout: TextIO) -> int:
    import json

    from engine.temporal.client import connect
    from engine.temporal.runs import split_id, workflow_id

    client = await connect(connection)
    batch, key = split_id(ident)
    if key is not None:
        progress = await run_status(client, workflow_id(batch, key))
        if json_output:
            stdout.write(json.dumps(progress, indent=2) + "\n")
            return 0
        line = f"{workflow_id(batch, key)}  run {progress['run_id']}  {progress['status']}  " \
               f"step {min(progress['done'] + 1, progress['total'])} of {progress['total']}"
        if progress["current"]:
            line += f"  current: {progress['current']}"
        if progress.get("items"):
            items = progress["items"]
            line += f"  items: {items['done']}/{items['total']} done, {items['failed']} failed, " \
                    f"{items['in_flight']} in flight"
        steps = ", ".join(f"{n} {s}" for s, n in progress["steps"].items())
        stdout.write(line + (f"  ({steps})" if steps else "") + "\n")
        return 0
    executions = await runs_of(client, batch)
    if not executions:
        raise RunbookError(f"no runs of batch {batch!r} (a run's id is runbook/<batch>/<key>)")
    counts: dict[str, int] = {}
    for execution in executions:
        state = execution.status.name.lower() if execution.status else "unknown"
        if state == "completed":
            memo = await execution.memo()
            state = str(memo.get("status") or "completed")
        counts[state] = counts.get(state, 0) + 1
    if json_output:
        stdout.write(json.dumps({"batch": batch, "runs": len(executions), "status": counts}, indent=2) + "\n")
        return 0
    stdout.write(f"batch {batch}: {len(executions)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
                 + "\n")
    return 0
