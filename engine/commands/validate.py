"""``runbook validate``: every problem of every file, as text, JSON or GitHub annotations."""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from engine.errors import Problem, RunbookError
from engine.templating import Templates
from engine.validation import check_file, suggest
from engine.vars import cli_var_names, resolve_vars

if TYPE_CHECKING:
    from engine.remote_check import RemoteCheck
    from engine.report import ReportOptions

__all__ = ["validate", "expand_paths", "looks_like_runbook"]

_YAML = (".yml", ".yaml")

# A runbook has a top-level steps: key, or says it is one with the schema's editor modeline.
# (Patterns, not compiled ones: `validate FILE` never needs them, and compiling costs start-up time.)
_STEPS_KEY = r"""(?m)^["']?steps["']?[ \t]*:"""
_MODELINE = r"(?m)^#[ \t]*yaml-language-server:[ \t]*\$schema=\S*runbook\.schema\.json"
_SKIP_REASON = "no steps: and no runbook $schema modeline"


def _found(patterns: Sequence[str]) -> dict[str, bool]:
    """Each file the patterns name, with whether it was named itself (not found under a
    directory or by a glob)."""
    files: dict[str, bool] = {}
    for pattern in patterns:
        if os.path.isdir(pattern):
            for root, _, names in os.walk(pattern):
                for name in names:
                    if name.endswith(_YAML):
                        files.setdefault(os.path.join(root, name), False)
        elif any(c in pattern for c in "*?["):
            for name in glob.glob(pattern, recursive=True):
                files.setdefault(name, False)
        else:
            files[pattern] = True
    return files


def expand_paths(patterns: Sequence[str]) -> list[str]:
    """Files, globs and directories (searched for *.yml / *.yaml) to a sorted file list."""
    return sorted(_found(patterns))


def looks_like_runbook(path: str) -> bool:
    """A cheap look at the text, before any parsing: a top-level ``steps:`` key or the runbook
    schema's modeline. A file that cannot be read counts as a runbook (checking it says why)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return True
    return bool(re.search(_STEPS_KEY, text) or re.search(_MODELINE, text))


def _excluded(path: str, excludes: Sequence[str]) -> bool:
    """Whether an ``--exclude`` glob matches the path as found, its normal form or its basename."""
    candidates = {path, os.path.normpath(path), os.path.basename(path)}
    return any(fnmatch.fnmatch(c, pattern) for pattern in excludes for c in candidates)


def _skipped_note(skipped: Sequence[str]) -> str:
    if len(skipped) == 1:
        return f"skipped 1 YAML file that is not a runbook ({_SKIP_REASON})"
    return f"skipped {len(skipped)} YAML files that are not runbooks ({_SKIP_REASON})"


def validate(patterns: Sequence[str], *, var_pairs: Sequence[str] = (), vars_files: Sequence[str] = (),
             reports: ReportOptions | None = None, excludes: Sequence[str] = (), runbooks_only: bool = False,
             remote: RemoteCheck | None = None, stdout: TextIO, stderr: TextIO) -> int:
    """Validate every runbook; 0 when all are valid (warnings allowed), 2 otherwise.

    A YAML file found under a directory or by a glob that does not look like a runbook
    (:func:`looks_like_runbook`) is skipped; a file named on the command line is checked
    unless ``runbooks_only`` (the pre-commit hook, which is given every staged file), which
    also makes "no runbook left" a quiet success. ``excludes`` are globs of files to leave out.
    ``reports.format`` says how the problems are printed: text, json or github annotations.

    ``--var`` and ``--vars-file`` name the variables a run will be given, so that a
    ``vars.X`` no default, file or flag sets is reported (as a warning: the value may
    still come at run time).

    ``remote`` (``--remote``): each runbook without errors also gets the remote input check of
    ``run``'s pre-flight, with these settings (its providers built, the secrets they name read,
    the actions' definitions fetched or read from the cache): what it finds are errors. Without
    it nothing is sent and no HTTP code is imported.
    """
    given = resolve_vars({}, vars_files, var_pairs)
    provided = set(given)
    found = _found(patterns)
    files, skipped = _selected(found, excludes, runbooks_only)
    if not files:
        if runbooks_only and found:
            return 0
        note = f" ({_skipped_note(skipped)})" if skipped else ""
        raise RunbookError("validate: no runbook files matched " + " ".join(patterns) + note)
    problems = _problems(files, provided, var_pairs)
    if remote is not None:
        failed = {p.file for p in problems if p.severity == "error"}
        checked = [f for f in files if f not in failed]
        problems = sorted(problems + _remote_problems(checked, given, remote))
    if reports is None:
        from engine.report import ReportOptions

        reports = ReportOptions()
    _print(reports, problems, files, skipped, stdout=stdout, stderr=stderr)
    _github(reports, problems, files, skipped, stdout=stdout, stderr=stderr)
    return 2 if any(p.severity == "error" for p in problems) else 0


def _github(reports: ReportOptions, problems: list[Problem], files: list[str], skipped: list[str], *,
            stdout: TextIO, stderr: TextIO) -> None:
    """Under GitHub Actions (see :meth:`ReportOptions.for_github`): the problems as annotations
    too, and the verdict appended to ``$GITHUB_STEP_SUMMARY``."""
    if not (reports.annotations or reports.step_summary):
        return
    from engine.report import github

    if reports.annotations:
        github.problems(problems, reports.annotation_stream(stdout, stderr))
    if reports.step_summary:
        try:
            github.append_validate_summary(reports.step_summary, problems, files, skipped)
        except OSError as exc:
            stderr.write(f"runbook: cannot append the summary to {reports.step_summary}: {exc.strerror or exc}\n")


def _selected(found: dict[str, bool], excludes: Sequence[str], runbooks_only: bool) -> tuple[list[str], list[str]]:
    """The files to check and the YAML files skipped as not runbooks, both sorted."""
    files: list[str] = []
    skipped: list[str] = []
    for file, named in sorted(found.items()):
        if _excluded(file, excludes):
            continue
        if (named and not runbooks_only) or looks_like_runbook(file):
            files.append(file)
        else:
            skipped.append(file)
    return files, skipped


def _problems(files: Sequence[str], provided: set[str], var_pairs: Sequence[str]) -> list[Problem]:
    """Every problem of every file, sorted, then each ``--var`` no file knows."""
    problems: list[Problem] = []
    templates = Templates()
    known: set[str] = set()
    for file in files:
        problems.extend(check_file(file, templates, provided_vars=provided, known_vars=known))
    problems.sort()
    # A --var that none of these runbooks declares or uses is a typo (validate may be given
    # several runbooks that share their variables, so one that some file knows is fine).
    unknown = [] if "*" in known else [n for n in cli_var_names(var_pairs) if n not in known]
    problems += [Problem("(command line)", 0, 0, f"--var {name}: none of the runbooks validated declares "
                         f"vars.{name} under vars: or uses it{suggest(name, sorted(known))}") for name in unknown]
    return problems


def _remote_problems(files: Sequence[str], given: dict[str, object], remote: RemoteCheck) -> list[Problem]:
    """What ``run``'s pre-flight, remote check included, finds in each of ``files`` (valid
    runbooks): a literal input its action's own schema refuses, an action the service does not
    know, and what stops the check (a secret not set, a provider's configuration)."""
    from engine.errors import LocatedErrors
    from engine.preflight import preflight
    from engine.session import new_run_info
    from engine.validation import load_runbook

    problems: list[Problem] = []
    for file in files:
        templates = Templates()
        runbook, _ = load_runbook(file, templates)
        try:
            prepared = preflight(runbook, templates, vars={**runbook.vars, **given}, environ=os.environ,
                                 run_info=new_run_info(), remote=remote)
        except LocatedErrors as exc:
            problems.extend(exc.problems)
            continue
        for provider in prepared.providers.values():
            provider.close()
    return problems


def _print(reports: ReportOptions, problems: list[Problem], files: list[str], skipped: list[str], *,
           stdout: TextIO, stderr: TextIO) -> None:
    fmt = reports.format
    if fmt == "json":
        from engine.report import json_output

        json_output.problems(problems, files, skipped, stdout)
    elif fmt == "github":
        from engine.report import github

        github.problems(problems, stdout)
    else:
        from engine.report import console

        console.problems(problems, files, _skipped_note(skipped) if skipped else None, stdout=stdout, stderr=stderr,
                         palette=reports.palette(stderr), out_palette=reports.palette(stdout))
