"""``runbook replay``: send the requests a manifest recorded again, as they were."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from engine.errors import ManifestError, RunbookError
from engine.manifest import git_info, header, read_manifest
from engine.model import EXIT_CODES, Status
from engine.providers.base import ProviderError
from engine.recording import Recording
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
    from_run_log: str | None = None,
    out_path: str | None = None,
    emulate: bool = False,
    json_output: bool = False,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """Re-send recorded requests (all, or ``step_ids``) and write a new manifest."""
    previous = read_manifest(manifest_path)
    runbook_path = previous["runbook"]["path"]
    if not os.path.isfile(runbook_path):
        raise ManifestError(f"{manifest_path}: replay builds its providers from the runbook "
                            f"{runbook_path}, which is not there")
    templates = Templates()
    runbook, _ = load_runbook(runbook_path, templates)
    records = {r["id"]: r for r in previous["steps"]}
    for sid in step_ids:
        if sid not in records:
            raise RunbookError(f"replay: {manifest_path} records no step {sid!r}")
    chosen = [records[sid] for sid in step_ids] if step_ids else [
        r for r in previous["steps"] if r["request"] is not None]
    if from_run_log and (len(chosen) != 1 or chosen[0]["provider_type"] != "membrane"):
        raise RunbookError("replay --from-run-log takes exactly one --step, of a membrane provider")
    steps = {s.id: s for s in runbook.steps + runbook.finally_steps}
    problems = []
    for record in chosen:
        if record["id"] not in steps:
            problems.append(f"step {record['id']!r} is no longer in {runbook_path}")
        elif record["request"] is None and not from_run_log:
            problems.append(f"step {record['id']!r} sent nothing (it was {record['status']})")
        elif _redacted(record["request"]) and not from_run_log:
            problems.append(f"step {record['id']!r}: its recorded request holds redacted secrets "
                            "(***), which replay cannot re-send; run the runbook again instead")
    if problems:
        raise RunbookError("replay: " + "; ".join(problems))
    if not chosen:
        raise RunbookError(f"replay: {manifest_path} records no request to send")

    selected = tuple(steps[r["id"]] for r in chosen)
    trimmed = runbook._replace(steps=selected, finally_steps=(), outputs={})
    run_info = new_run_info()
    lines = stderr if json_output else stdout
    with prepared_run(trimmed, templates, previous["vars"], run_info, emulate) as prepared:
        manifest = header(run_info["id"], run_info["started_at"], runbook_path, runbook.name,
                          runbook.sha256, previous["vars"], git_info(runbook_path), emulated=emulate)
        manifest["run"]["replay_of"] = previous["run"]["id"]
        recording = Recording(out_path or default_manifest_path(run_info["id"]), manifest,
                              prepared.redactor, lines, trimmed)
        runner = Runner(trimmed, templates, vars=previous["vars"], environ=prepared.environ,
                        run_info=run_info, providers=prepared.providers,
                        redactor=prepared.redactor, targets=prepared.targets, observer=recording)
        status = Status.SUCCEEDED
        for step, record in zip(selected, chosen, strict=True):
            request = record["request"]
            if from_run_log:
                provider: Any = prepared.providers[step.provider]
                try:
                    request = provider.run_log_action(from_run_log, step.timeout)
                except ProviderError as exc:
                    raise RunbookError(f"replay --from-run-log: {exc.message}") from None
            result = runner.replay_step(step, request)
            if result.status is Status.INTERRUPTED:
                status = Status.INTERRUPTED
                break
            if result.status is Status.FAILED:
                status = Status.FAILED
    final = recording.finish(status, {}, None)
    if json_output:
        stdout.write(json.dumps(final, ensure_ascii=False, indent=2, default=str) + "\n")
    return EXIT_CODES[status]
