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
    """The ``status`` query of a run, with its Temporal state (``workflow``); each called
    runbook running (``calls``) with its own, at every depth of calls."""
    from temporalio.service import RPCError

    handle = client.get_workflow_handle(ident)
    try:
        description = await handle.describe()
        progress: dict[str, Any] = await handle.query("status")
    except RPCError as exc:
        raise RunbookError(f"{ident}: no such run: {exc.message}") from None
    progress["workflow"] = description.status.name.lower() if description.status else None
    progress["calls"] = await asyncio.gather(*(_call_status(client, call) for call in progress.get("calls") or []))
    return progress


async def _call_status(client: Any, call: dict[str, Any]) -> dict[str, Any]:
    """A running call's step, item and child workflow, and that workflow's :func:`run_status`
    (only ``workflow: starting`` while no worker has started it)."""
    try:
        return {**call, **await run_status(client, call["workflow_id"])}
    except RunbookError:
        return {**call, "workflow": "starting"}


def _progress_line(progress: dict[str, Any]) -> str:
    """``running  step 2 of 4  current: slow  items: ...  (1 succeeded)``."""
    line = f"{progress['status']}  step {min(progress['done'] + 1, progress['total'])} of {progress['total']}"
    if progress["current"]:
        line += f"  current: {progress['current']}"
    if progress.get("items"):
        items = progress["items"]
        line += f"  items: {items['done']}/{items['total']} done, {items['failed']} failed, " \
                f"{items['in_flight']} in flight"
    steps = ", ".join(f"{n} {s}" for s, n in progress["steps"].items())
    return line + (f"  ({steps})" if steps else "")


def _call_lines(calls: list[dict[str, Any]], depth: int = 1) -> list[str]:
    """Under a run's line, each called runbook running (``  mid: runbook/B/K/mid  running ...``),
    its own calls under it."""
    lines = []
    for call in calls:
        name = call["step"] + (f"[{call['index']}]" if call.get("index") is not None else "")
        state = _progress_line(call) if "status" in call else call["workflow"]
        lines.append(f"{'  ' * depth}{name}: {call['workflow_id']}  {state}")
        lines += _call_lines(call.get("calls") or [], depth + 1)
    return lines


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
        lines = [f"{workflow_id(batch, key)}  run {progress['run_id']}  {_progress_line(progress)}",
                 *_call_lines(progress["calls"])]
        stdout.write("".join(line + "\n" for line in lines))
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
