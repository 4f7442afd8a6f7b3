"""``runbook replay``: send the requests a manifest recorded again, as they were."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from engine.errors import ManifestError, RunbookError
from engine.manifest import git_info, header, read_manifest
from engine.model import EXIT_CODES, Runbook, Status, Step
from engine.providers.base import ProviderError
from engine.recording import Recording
from engine.report import ReportOptions
from engine.runner import Runner
from engine.session import default_manifest_path, new_run_info, prepared_run
from engine.templating import REDACTED, Templates
from engine.validation import load_runbook

__all__ = ["replay"]


def _redacted(value: Any) -> bool:
    if isinstance(value, str):
        return REDACTED in value
    if isinstance(value, dict):
        return any(_redacted(v) for v in value.values())
    if isinstance(value, list):
        return any(_redacted(v) for v in value)
    return False


def replay(
    manifest_path: str,
    *,
    step_ids: Sequence[str] = (),
    item_indexes: Sequence[int] = (),
    from_run_log: str | None = None,
    out_path: str | None = None,
    emulate: bool = False,
    reports: ReportOptions | None = None,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """Re-send recorded requests (all, or ``step_ids``; of a for_each step, its items', or
    those of ``item_indexes``) and write a new manifest.

    ``reports``: the new manifest on stdout (``--json``) and any file report."""
    reports = reports or ReportOptions()
    previous = read_manifest(manifest_path)
    runbook_path = previous["runbook"]["path"]
    if not os.path.isfile(runbook_path):
        raise ManifestError(f"{manifest_path}: replay builds its providers from the runbook "
                            f"{runbook_path}, which is not there")
    templates = Templates()
    runbook, _ = load_runbook(runbook_path, templates)
    variables = previous["vars"]
    step_ids, runbook, records, variables = _inside_calls(manifest_path, step_ids, runbook, previous["steps"],
                                                          variables)
    previous = {**previous, "steps": records}
    chosen = _chosen(manifest_path, previous, step_ids, from_run_log)
    if item_indexes:
        chosen = [_only_items(manifest_path, chosen, item_indexes)]
    steps = {s.id: s for s in runbook.steps + runbook.finally_steps}
    _check_resendable(manifest_path, runbook_path, chosen, steps, from_run_log)

    selected = tuple(steps[r["id"]] for r in chosen)
    trimmed = runbook._replace(steps=selected, finally_steps=(), outputs={})
    run_info = new_run_info()
    path = out_path or default_manifest_path(run_info["id"])
    with prepared_run(trimmed, templates, variables, run_info, emulate) as prepared:
        manifest = header(run_info["id"], run_info["started_at"], runbook_path, runbook.name,
                          runbook.sha256, variables, git_info(runbook_path), emulated=emulate)
        manifest["run"]["replay_of"] = previous["run"]["id"]
        console = reports.console(stdout, stderr)
        recording = Recording(path, manifest, prepared.redactor, console, trimmed, palette=reports.palette(console))
        runner = Runner(trimmed, templates, vars=variables, environ=prepared.environ,
                        run_info=run_info, providers=prepared.providers,
                        redactor=prepared.redactor, targets=prepared.targets, observer=recording)
        status = _resend(runner, prepared.providers, list(zip(selected, chosen, strict=True)), from_run_log)
    final = recording.finish(status, {}, None)
    reports.publish(final, path, stdout=stdout, stderr=stderr)
    return EXIT_CODES[status]


def _inside_calls(manifest_path: str, step_ids: Sequence[str], runbook: Runbook, records: list[dict[str, Any]],
                  variables: dict[str, Any]) -> tuple[list[str], Runbook, list[dict[str, Any]], dict[str, Any]]:
    """``--step onboard.make``: the steps of the runbook that step ``onboard`` called (as deep as
    the dots go), that runbook, its steps' records and the inputs the call gave it; else the
    arguments as they are. Every ``--step`` must then name a step of the same called runbook."""
    paths = [sid.split(".") for sid in step_ids]
    if not any(len(p) > 1 for p in paths):
        return list(step_ids), runbook, records, variables
    callers = {tuple(p[:-1]) for p in paths}
    if len(callers) != 1:
        raise RunbookError("replay: the --step names of one replay are steps of one runbook (all "
                           f"{'.'.join(next(iter(callers)))}.X, say)")
    for caller in next(iter(callers)):
        record = next((r for r in records if r.get("id") == caller), None)
        step = next((s for s in runbook.steps + runbook.finally_steps if s.id == caller), None)
        if record is None or step is None or step.child is None or record.get("children") is None:
            raise RunbookError(f"replay: {manifest_path} records no step {caller!r} that called a runbook")
        given = (record.get("request") or {}).get("with") or {}
        if _redacted(given):
            raise RunbookError(f"replay: step {caller!r} gave its called runbook inputs that hold redacted "
                               "secrets (***), which replay cannot re-send; run the runbook again instead")
        runbook, records, variables = step.child, record["children"], {**step.child.vars, **given}
    return [p[-1] for p in paths], runbook, records, variables


def _chosen(manifest_path: str, previous: dict[str, Any], step_ids: Sequence[str],
            from_run_log: str | None) -> list[dict[str, Any]]:
    """The records to replay: those of ``step_ids``, else every one that sent a request."""
    records = {r["id"]: r for r in previous["steps"]}
    for sid in step_ids:
        if sid not in records:
            raise RunbookError(f"replay: {manifest_path} records no step {sid!r}")
        if records[sid].get("called") is not None:
            raise RunbookError(f"replay: step {sid!r} called a runbook: name the steps of it to send again "
                               f"(--step {sid}.STEP)")
    chosen = [records[sid] for sid in step_ids] if step_ids else [
        r for r in previous["steps"] if r.get("called") is None and (r["request"] is not None or _sent_items(r))]
    if from_run_log and (len(chosen) != 1 or chosen[0]["provider_type"] != "membrane"):
        raise RunbookError("replay --from-run-log takes exactly one --step, of a membrane provider")
    return chosen


def _only_items(manifest_path: str, chosen: list[dict[str, Any]], indexes: Sequence[int]) -> dict[str, Any]:
    """The one chosen for_each step's record with only the items ``indexes``."""
    if len(chosen) != 1 or chosen[0].get("items") is None:
        raise RunbookError("replay --item takes exactly one --step, of a for_each step")
    record = chosen[0]
    by_index = {item["index"]: item for item in record["items"]}
    missing = [str(i) for i in indexes if i not in by_index]
    if missing:
        raise RunbookError(f"replay: {manifest_path} records no item {', '.join(missing)} of step "
                           f"{record['id']!r} (it has {len(by_index)})")
    return {**record, "items": [by_index[i] for i in dict.fromkeys(indexes)]}


def _sent_items(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The items of a for_each step's record that sent a request."""
    return [item for item in record.get("items") or [] if item.get("request") is not None]


def _check_resendable(manifest_path: str, runbook_path: str, chosen: list[dict[str, Any]],
                      steps: dict[str, Step], from_run_log: str | None) -> None:
    """Raise every reason a chosen record cannot be sent again, at once."""
    problems = [problem for record in chosen
                if (problem := _unsendable(record, steps, runbook_path, from_run_log))]
    if problems:
        raise RunbookError("replay: " + "; ".join(problems))
    if not chosen:
        raise RunbookError(f"replay: {manifest_path} records no request to send")


def _unsendable(record: dict[str, Any], steps: dict[str, Step], runbook_path: str,
                from_run_log: str | None) -> str | None:
    """Why ``record`` cannot be sent again, or ``None``."""
    if record["id"] not in steps:
        return f"step {record['id']!r} is no longer in {runbook_path}"
    if from_run_log:
        return None  # the request comes from the run log
    if record.get("items") is not None:
        if not _sent_items(record):
            return f"step {record['id']!r}: none of its items sent a request"
        if any(_redacted(item["request"]) for item in _sent_items(record)):
            return (f"step {record['id']!r}: the recorded requests of its items hold redacted secrets "
                    "(***), which replay cannot re-send; run the runbook again instead")
        return None
    if record["request"] is None:
        return f"step {record['id']!r} sent nothing (it was {record['status']})"
    if _redacted(record["request"]):
        return (f"step {record['id']!r}: its recorded request holds redacted secrets "
                "(***), which replay cannot re-send; run the runbook again instead")
    return None


def _resend(runner: Runner, providers: Mapping[str, Any], pairs: list[tuple[Step, dict[str, Any]]],
            from_run_log: str | None) -> Status:
    """Send each step's recorded request (or the run log's) again; the replay's status."""
    status = Status.SUCCEEDED
    for step, record in pairs:
        if record.get("items") is not None and not from_run_log:
            result = runner.replay_items(step, [(item["index"], item["request"]) for item in _sent_items(record)])
        else:
            request = _run_log_request(providers[step.provider], step, from_run_log) if from_run_log \
                else record["request"]
            result = runner.replay_step(step, request)
        if result.status is Status.INTERRUPTED:
            return Status.INTERRUPTED
        if result.status is Status.FAILED:
            status = Status.FAILED
    return status


def _run_log_request(provider: Any, step: Step, run_id: str) -> Any:
    """The ``/act`` body a Membrane action run log recorded."""
    try:
        return provider.run_log_action(run_id, step.timeout)
    except ProviderError as exc:
        raise RunbookError(f"replay --from-run-log: {exc.message}") from None
