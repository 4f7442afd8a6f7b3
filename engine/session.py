"""What a run or a replay needs around its steps: a run id, where its manifest goes, and the
emulator and the checked providers for as long as it lasts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from engine.clock import now_rfc3339
from engine.errors import Problem
from engine.manifest import new_run_id
from engine.model import Runbook
from engine.preflight import Prepared, preflight
from engine.templating import Templates

if TYPE_CHECKING:
    from engine.remote_check import RemoteCheck

__all__ = ["default_manifest_path", "runbook_folder", "new_run_info", "prepared_run"]


def default_manifest_path(run_id: str) -> str:
    """``.runbook/runs/<run id>.json`` under the current directory. Creating ``.runbook/``, it
    writes ``.runbook/.gitignore`` (``*``), so that runs are never committed by accident."""
    return os.path.join(runbook_folder("runs"), f"{run_id}.json")


def runbook_folder(*parts: str) -> str:
    """``.runbook/PARTS…`` under the current directory (not created), ``.runbook/`` itself created
    if need be, with its ``.gitignore``: what the engine keeps there is never for committing."""
    _make_runbook_dir(".runbook")
    return os.path.join(".runbook", *parts)


def _make_runbook_dir(folder: str) -> None:
    """Create ``folder`` with a ``.gitignore`` that ignores everything in it; nothing if it is
    there already (a folder that cannot be made is reported by the writability check)."""
    try:
        os.mkdir(folder)
    except OSError:
        return
    try:
        with open(os.path.join(folder, ".gitignore"), "x", encoding="utf-8") as fh:
            fh.write("# written by runbook: its run manifests are not for committing\n*\n")
    except OSError:
        pass


class CheckedRunbook(NamedTuple):
    """A runbook that passed every check a run makes before its pre-flight."""

    runbook: Runbook
    templates: Templates
    given: dict[str, Any]  # the variables --vars-file and --var give
    git: dict[str, Any] | None  # git's facts of the file (GitProbe)
    warnings: list[Problem]


def checked_runbook(file: str, var_pairs: Sequence[str], vars_files: Sequence[str],
                    stderr: TextIO) -> CheckedRunbook:
    """``file`` loaded and checked as ``run`` (and ``submit``) check it, knowing every variable
    of the run; its warnings printed on ``stderr``. Raises :class:`LocatedErrors` (exit 2)."""
    from engine.manifest import GitProbe
    from engine.validation import load_checked
    from engine.vars import cli_var_names, resolve_vars

    git = GitProbe(file)  # git runs while the runbook is loaded
    templates = Templates()
    try:
        given = resolve_vars({}, vars_files, var_pairs)
        runbook, warnings = load_checked(file, templates, provided_vars=given, strict=True,
                                         cli_vars=cli_var_names(var_pairs), sparse=True)
    finally:
        repository = git.result()
    for warning in warnings:
        stderr.write(f"{warning}\n")
    return CheckedRunbook(runbook, templates, given, repository, list(warnings))


def new_run_info() -> dict[str, Any]:
    """The ``run`` context of templates: a new id and the start time."""
    return {"id": new_run_id(), "started_at": now_rfc3339(), "dry_run": False}


@contextlib.contextmanager
def prepared_run(runbook: Runbook, templates: Templates, variables: dict[str, Any],
                 run_info: dict[str, Any], emulate: bool, remote: RemoteCheck | None = None) -> Iterator[Prepared]:
    """The emulator (with ``--emulate``) and the checked providers, for the length of a run;
    on the way out every provider's connections are closed and the emulator stopped."""
    emulator = None
    if emulate:
        from engine import emulator as emulator_mod

        emulator = emulator_mod.start("127.0.0.1", 0)
    try:
        prepared = preflight(runbook, templates, vars=variables, environ=os.environ,
                             run_info=run_info, emulator_url=emulator.url if emulator else None, remote=remote)
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
