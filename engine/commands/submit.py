"""``runbook submit``: validate as ``run`` does, then start one Temporal workflow per run."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from engine.errors import RunbookError
from engine.model import EXIT_CODES, Runbook, Status
from engine.report.colour import PLAIN, Palette
from engine.temporal.client import Connection

__all__ = ["submit"]


def submit(file: str, *, var_pairs: Sequence[str] = (), vars_files: Sequence[str] = (),
           batch_file: str | None = None, batch: str | None = None, wait: bool = False,
           manifest_path: str | None = None, connection: Connection | None = None,
           heartbeat_timeout: float | None = None, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr,
           palette: Palette = PLAIN) -> int:
    """Check ``file`` (and every row's variables) as ``run`` does, exit 2 on a problem with nothing
    started; start a workflow per run; with ``wait``, wait for them and exit as ``run`` would
    (``palette``: the step lines' colours).

    Secrets and credentials are the workers' (they are checked where the steps run), so the
    pre-flight of ``run`` is not made here.
    """
    from engine.manifest import new_run_id
    from engine.session import checked_runbook
    from engine.temporal import spec
    from engine.temporal.runs import batch_of, read_rows, workflow_id
    from engine.validation import load_checked
    from engine.vars import cli_var_names

    runbook, templates, given, git, _ = checked_runbook(file, var_pairs, vars_files, stderr)  # as run does
    rows = read_rows(batch_file) if batch_file else [("1", {})]
    checked: set[frozenset[str]] = set()
    for _, row in rows:  # a row's variables are checked as --var values would be
        names = frozenset(row)
        if names and names not in checked:
            checked.add(names)
            load_checked(file, templates, provided_vars={**given, **row}, strict=True,
                         cli_vars=cli_var_names(var_pairs) + tuple(sorted(names)))
    with open(file, encoding="utf-8") as fh:
        text = fh.read()
    if batch is None:
        batch = batch_of(runbook.sha256, rows, given) if batch_file else new_run_id()
    connection = connection or Connection()
    queue = connection.queue
    kwargs = {} if heartbeat_timeout is None else {"heartbeat_timeout": heartbeat_timeout}
    jobs = [(workflow_id(batch, key), spec.job(runbook, templates, text, vars={**runbook.vars, **given, **row},
                                               task_queue=queue, git=git, batch=batch, key=key, **kwargs))
            for key, row in rows]
    return asyncio.run(_submit(runbook, jobs, wait, manifest_path, connection, stdout, stderr, palette))


async def _submit(runbook: Runbook, jobs: list[tuple[str, dict[str, Any]]], wait: bool, manifest_path: str | None,
                  connection: Connection, stdout: TextIO, stderr: TextIO, palette: Palette) -> int:
    from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
    from temporalio.exceptions import WorkflowAlreadyStartedError

    from engine.temporal import WORKFLOW
    from engine.temporal.client import connect

    client = await connect(connection)
    started, already = 0, 0

    async def start(ident: str, job: dict[str, Any]) -> None:
        nonlocal started, already
        try:
            await client.start_workflow(WORKFLOW, job, id=ident, task_queue=connection.queue,
                                        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                                        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                                        memo={"batch": job["batch"], "key": job["key"], "runbook": runbook.name})
            started += 1
        except WorkflowAlreadyStartedError:
            already += 1

    for first in range(0, len(jobs), 50):
        await asyncio.gather(*(start(ident, job) for ident, job in jobs[first:first + 50]))
    batch = jobs[0][1]["batch"]
    if len(jobs) == 1:
        ident = jobs[0][0]
        stdout.write(f"submitted {ident}\n" if started else
                     f"{ident} was already submitted: started nothing (its run goes on as it was)\n")
    else:
        note = f"; {already} already submitted, not started again" if already else ""
        stdout.write(f"batch {batch}: started {started} of {len(jobs)} runs{note}\n")
    stdout.write(f"  status:  runbook status {batch if len(jobs) > 1 else jobs[0][0]}\n")
    stdout.flush()
    if not wait:
        return 0
    return await _wait(client, runbook, [ident for ident, _ in jobs], manifest_path, stdout, stderr, palette)


async def _wait(client: Any, runbook: Runbook, idents: list[str], manifest_path: str | None,
                stdout: TextIO, stderr: TextIO, palette: Palette) -> int:
    """Wait for each run in turn, printing its step lines as its steps finish (as ``run`` does);
    write its manifest; the exit code."""
    from engine.files import atomic_write
    from engine.session import default_manifest_path

    worst = 0
    for ident in idents:
        printer = RunPrinter(runbook, stdout, palette)
        try:
            manifest = await follow(client.get_workflow_handle(ident), printer)
        except Exception as exc:  # the workflow failed, was terminated or cancelled
            stderr.write(f"{ident}: the workflow did not finish: {exc}\n")
            worst = max(worst, 3)
            continue
        path = manifest_path if manifest_path and len(idents) == 1 else default_manifest_path(manifest["run"]["id"])
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        atomic_write(path, (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode())
        printer.finished(manifest, path)
        status = Status(manifest["run"]["status"])
        code = EXIT_CODES[status]
        if any((s.get("error") or {}).get("type") == "internal" for s in manifest["steps"]):
            code = 3
        worst = code if worst == 0 or code == 130 else worst
    return worst


#: How often ``--wait`` asks a run for the steps it finished (a query: it writes no history).
FOLLOW_EVERY = 0.3


async def follow(handle: Any, printer: RunPrinter, every: float = FOLLOW_EVERY) -> dict[str, Any]:
    """A run's manifest once it finishes; meanwhile its ``steps`` query every ``every`` seconds,
    whose new records ``printer`` prints. A query that fails (no worker has the run yet) or is
    slow is asked again later; the result does not wait for it."""
    from datetime import timedelta

    from engine.temporal.packing import unpacked

    result: asyncio.Future[Any] = asyncio.ensure_future(handle.result())
    while not (await asyncio.wait([result], timeout=every))[0]:
        query = asyncio.ensure_future(handle.query("steps", printer.printed, rpc_timeout=timedelta(seconds=10)))
        await asyncio.wait([result, query], return_when=asyncio.FIRST_COMPLETED)
        if not query.done():
            query.cancel()
        elif query.exception() is None:
            printer.steps(unpacked(query.result()))
    manifest: dict[str, Any] = unpacked(result.result())
    printer.steps(manifest["steps"][printer.printed:])
    return manifest


class RunPrinter:
    """The step lines ``run`` prints, from a run's records as they come, then its summary."""

    def __init__(self, runbook: Runbook, stdout: TextIO, palette: Palette = PLAIN) -> None:
        from engine.redaction import Redactor
        from engine.report.console import ConsoleReporter

        self.runbook, self.stdout = runbook, stdout
        self.console = ConsoleReporter(stdout, Redactor(), runbook, progress=False, palette=palette)
        self.printed = 0  # the run's (top-level) records printed so far

    def steps(self, records: list[dict[str, Any]]) -> None:
        """Print the lines of the next records of the run (a called runbook's nested in its call's)."""
        self._lines(self.runbook, records)
        self.printed += len(records)

    def _lines(self, of: Runbook, records: list[dict[str, Any]]) -> None:
        from engine.temporal.runs import result_of

        steps = {s.id: s for s in of.steps + of.finally_steps}
        for record in records:
            step = steps.get(record["id"])
            if step is None:
                raise RunbookError(f"the manifest records step {record['id']!r}, which the runbook does not have")
            if step.child is not None and record.get("children") is not None:
                self.console.call_started(step)  # a called runbook's steps: onboard › make
                self._lines(step.child, record["children"])
            for item in record.get("items") or []:
                self.console.item_finished(result_of(step, item))
            self.console.step_finished(result_of(step, record))

    def finished(self, manifest: dict[str, Any], path: str) -> None:
        """The run's error, if any, and its summary line (``failed: 2 succeeded, 1 failed``)."""
        counts: dict[str, int] = {}
        for record in manifest["steps"]:
            counts[record["status"]] = counts.get(record["status"], 0) + 1
        if manifest["run"].get("error"):
            self.stdout.write(f"error: {manifest['run']['error']}\n")
        self.console.run_finished(Status(manifest["run"]["status"]), counts, path)
