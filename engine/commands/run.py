"""``runbook run``: validate, pre-flight, run, record the manifest."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from engine.errors import InternalError, ManifestError, RunbookError

if TYPE_CHECKING:
    from engine.remote_check import RemoteCheck
from engine.files import check_writable
from engine.manifest import header, read_manifest
from engine.model import EXIT_CODES
from engine.recording import Recording
from engine.redaction import Redactor
from engine.report import ReportOptions
from engine.runner import Runner
from engine.session import checked_runbook, default_manifest_path, new_run_info, prepared_run

__all__ = ["run"]


def _previous_run(path: str, name: str) -> dict[str, Any]:
    """The manifest to resume from; refused when it records another runbook."""
    previous = read_manifest(path)
    recorded = previous["runbook"]
    if recorded["name"] != name:
        raise ManifestError(
            f"{path}: this manifest records runbook {recorded['name']!r} ({recorded['path']}), "
            f"not {name!r}: --resume takes a manifest of the same runbook"
        )
    return previous


def run(
    file: str,
    *,
    var_pairs: Sequence[str] = (),
    vars_files: Sequence[str] = (),
    manifest_path: str | None = None,
    emulate: bool = False,
    resume: str | None = None,
    reports: ReportOptions | None = None,
    loaded: Callable[[], None] | None = None,
    remote: RemoteCheck | None = None,
    stdout: TextIO = sys.stdout,
    stderr: TextIO = sys.stderr,
) -> int:
    """Run ``file``; return the exit code (0, 1 or 130; 2 is raised as RunbookError).

    Everything that can be known before the first step is checked before it, and every
    problem is raised at once: the runbook, the variables (a ``vars.X`` nothing sets, a
    ``--var`` it does not know), the output paths, the secrets and every provider's
    credentials. ``reports``: the manifest on stdout (``--json``) and the file reports.
    ``loaded`` is called once the runbook (and a resumed manifest) is loaded; ``remote``: check
    the steps' inputs against their actions' own schemas (``--remote-check``, the CLI's default).
    """
    reports = reports or ReportOptions()
    runbook, templates, given, repository, warnings = checked_runbook(file, var_pairs, vars_files, stderr)
    if reports.annotations and warnings:
        from engine.report import github

        github.problems(warnings, reports.annotation_stream(stdout, stderr))
    variables = {**runbook.vars, **given}
    previous = _previous_run(resume, runbook.name) if resume else None
    if loaded is not None:
        loaded()  # the CLI's GC policy: what is loaded so far lives for the whole run
    run_info = new_run_info()
    path = manifest_path or default_manifest_path(run_info["id"])
    check_writable(path, "--manifest" if manifest_path else "the manifest")
    reports.check_writable()
    with prepared_run(runbook, templates, variables, run_info, emulate, remote) as prepared:
        templates.forget_lookups()  # every template was checked: a long run renders each once
        with _bugs_redacted(prepared.redactor):
            for notice in prepared.notices:
                stderr.write(notice + "\n")
            manifest = header(run_info["id"], run_info["started_at"], file, runbook.name,
                              runbook.sha256, variables, repository, emulated=emulate,
                              resumed_from=previous["run"]["id"] if previous else None)
            console = reports.console(stdout, stderr)
            recording = Recording(path, manifest, prepared.redactor, console, runbook,
                                  keep_records=reports.needs_manifest, palette=reports.palette(console))
            runner = Runner(
                runbook, templates, vars=variables, environ=prepared.environ, run_info=run_info,
                providers=prepared.providers, redactor=prepared.redactor,
                targets=prepared.targets, previous=previous, observer=recording,
                emulator_url=prepared.emulator_url, remote=remote,
            )
            outcome = runner.run()

    with _bugs_redacted(prepared.redactor):
        if outcome.error:
            stderr.write(f"error: {prepared.redactor.text(outcome.error)}\n")
        manifest = recording.finish(outcome.status, outcome.outputs, outcome.error)
        reports.publish(manifest, path, stdout=stdout, stderr=stderr)
    if outcome.internal_error is not None:
        raise InternalError(outcome.internal_error, prepared.redactor.text)
    return EXIT_CODES[outcome.status]


@contextlib.contextmanager
def _bugs_redacted(redactor: Redactor) -> Iterator[None]:
    """A bug met once secrets are known becomes an :class:`InternalError` that prints none."""
    try:
        yield
    except (RunbookError, InternalError):
        raise
    except Exception as exc:
        raise InternalError(exc, redactor.text) from exc
