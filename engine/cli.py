"""The command line: a click group with one thin function per command.

Each command imports what it needs when it runs, so ``runbook --help`` and
``runbook validate`` never import httpx or a provider. :func:`main` is the one
error wrapper: a user's mistake is one located line per problem and exit 2; a
bug is one line and exit 3 (the traceback with ``--debug``); Ctrl-C is 130.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from engine.temporal.client import Connection

from engine import __version__

__all__ = ["cli", "main"]

_VAR_HELP = "Set a variable: KEY=VALUE, VALUE read as YAML (n=3 is a number). Repeatable."
_VARS_FILE_HELP = "A YAML mapping of variables. Repeatable: a later file wins key by key."


def _github_options(command: Callable[..., int]) -> Callable[..., int]:
    """``--annotations/--no-annotations`` and ``--step-summary/--no-step-summary``: on by default
    under GitHub Actions (GITHUB_ACTIONS=true), off elsewhere."""
    command = click.option(
        "--step-summary/--no-step-summary", "step_summary", default=None,
        help="Append a Markdown summary to $GITHUB_STEP_SUMMARY (default: when GitHub Actions set it).")(command)
    return click.option(
        "--annotations/--no-annotations", "annotations", default=None,
        help="Print GitHub ::error/::warning annotations for problems and failures "
             "(default: under GitHub Actions).")(command)


def _colour_option(command: Callable[..., int]) -> Callable[..., int]:
    """``--color auto|always|never`` (auto: on a terminal, unless NO_COLOR is set)."""
    return click.option(
        "--color", "colour", type=click.Choice(["auto", "always", "never"]), default="auto", show_default=True,
        help="Colour the status marks and errors: auto on a terminal unless NO_COLOR is set.")(command)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runbook")
@click.option("--debug", is_flag=True, help="Show the traceback of an internal error.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Run declarative YAML runbooks against Membrane, Pipedream Connect and HTTP APIs."""
    ctx.obj = {"debug": debug}


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--var", "var_pairs", multiple=True, metavar="KEY=VALUE", help=_VAR_HELP)
@click.option("--vars-file", "vars_files", multiple=True, type=click.Path(dir_okay=False), help=_VARS_FILE_HELP)
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False),
              help="Where to write the manifest (default .runbook/runs/<run id>.json).")
@click.option("--emulate", is_flag=True,
              help="Run against the built-in emulator on loopback, with dummy credentials.")
@click.option("--json", "json_output", is_flag=True, help="Print the manifest to stdout.")
@click.option("--resume", type=click.Path(dir_okay=False), metavar="MANIFEST",
              help="Reuse the steps MANIFEST records as succeeded with the same request; run the rest.")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="PATH",
              help="Also write a JUnit XML report (one testcase per step) to PATH.")
@click.option("--junit-file-line", is_flag=True,
              help="Also put file= and line= on each JUnit testcase (for readers that look only there; "
                   "Jenkins xunit's junit-10.xsd refuses them).")
@click.option("--summary", type=click.Path(dir_okay=False), metavar="PATH",
              help="Append a Markdown summary to PATH.")
@click.option("--html", type=click.Path(dir_okay=False), metavar="PATH",
              help="Also write a self-contained HTML report of the run to PATH.")
@click.option("--remote-check/--no-remote-check", default=True,
              help="Check each step's input against its action's own schema (fetched from the service, "
                   "cached under .runbook/cache/) before sending (default: on).")
@click.option("--refresh", is_flag=True, help="Fetch the actions' schemas again instead of using the cache.")
@_github_options
@_colour_option
def run(file: str, var_pairs: tuple[str, ...], vars_files: tuple[str, ...],
        manifest_path: str | None, emulate: bool, json_output: bool, resume: str | None, junit_file_line: bool,
        remote_check: bool, refresh: bool, annotations: bool | None, step_summary: bool | None, colour: str,
        **report_paths: str | None) -> int:
    """Validate FILE, then run its steps in order and write a results manifest."""
    # report_paths: each option named after a report of engine.report.REPORTS (--junit, --summary, --html)
    from engine import remote_check as remote
    from engine.commands.run import run as run_command
    from engine.report import ReportOptions

    reports = ReportOptions.for_github("json" if json_output else "text", report_paths,
                                       settings={"junit": {"file_line": junit_file_line}},
                                       annotations=annotations, step_summary=step_summary, colour=colour)
    loaded = _pause_gc()
    settings = remote.RemoteCheck(refresh=refresh) if remote_check else None
    with reports.on_refusal(file):
        return run_command(file, var_pairs=var_pairs, vars_files=vars_files, manifest_path=manifest_path,
                           emulate=emulate, resume=resume, reports=reports, loaded=loaded, remote=settings)


@cli.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--var", "var_pairs", multiple=True, metavar="KEY=VALUE", help=_VAR_HELP)
@click.option("--vars-file", "vars_files", multiple=True, type=click.Path(dir_okay=False),
              help="A YAML mapping of the variables a run will be given. Repeatable.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True, help="How to print problems.")
@click.option("--exclude", "excludes", multiple=True, metavar="GLOB",
              help="Leave out files whose path or name matches GLOB (e.g. 'runbooks/lib/*'). Repeatable.")
@click.option("--runbooks-only", is_flag=True,
              help="Skip named files that are not runbooks too (no steps: and no runbook $schema "
                   "modeline), and succeed when none is left: for a pre-commit hook.")
@click.option("--remote", is_flag=True,
              help="Also check literal inputs against the actions' own schemas, fetched from the services "
                   "(cached under .runbook/cache/); reads the secrets the providers need.")
@click.option("--refresh", is_flag=True, help="With --remote: fetch the schemas again instead of using the cache.")
@_github_options
@_colour_option
def validate(files: tuple[str, ...], var_pairs: tuple[str, ...], vars_files: tuple[str, ...], fmt: str,
             excludes: tuple[str, ...], runbooks_only: bool, remote: bool, refresh: bool, annotations: bool | None,
             step_summary: bool | None, colour: str) -> int:
    """Check FILES (files, globs or directories) without sending anything.

    YAML files found under a directory or by a glob that are not runbooks are skipped.
    """
    from engine.commands.validate import validate as validate_command
    from engine.report import ReportOptions

    _pause_gc()  # for the whole command: it loads, checks and prints
    reports = ReportOptions.for_github(fmt, annotations=annotations, step_summary=step_summary, colour=colour)
    return validate_command(files, var_pairs=var_pairs, vars_files=vars_files, reports=reports,
                            excludes=excludes, runbooks_only=runbooks_only, remote=_remote_settings(remote, refresh),
                            stdout=sys.stdout, stderr=sys.stderr)


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--var", "var_pairs", multiple=True, metavar="KEY=VALUE", help=_VAR_HELP)
@click.option("--vars-file", "vars_files", multiple=True, type=click.Path(dir_okay=False), help=_VARS_FILE_HELP)
@click.option("--json", "json_output", is_flag=True, help="Print the plan as JSON.")
@click.option("--remote", is_flag=True,
              help="Make run's remote input check: fetch the actions' own schemas (cached under .runbook/cache/), "
                   "show each action's name and version; reads the secrets the providers need.")
@click.option("--refresh", is_flag=True, help="With --remote: fetch the schemas again instead of using the cache.")
def plan(file: str, var_pairs: tuple[str, ...], vars_files: tuple[str, ...], json_output: bool, remote: bool,
         refresh: bool) -> int:
    """Show what `run` would send for each step of FILE, without sending anything (--remote: only
    the requests of run's checks)."""
    from engine.commands.plan import plan as plan_command

    _pause_gc()  # for the whole command: it loads, renders what it can and prints
    return plan_command(file, var_pairs=var_pairs, vars_files=vars_files, json_output=json_output,
                        remote=_remote_settings(remote, refresh), stdout=sys.stdout, stderr=sys.stderr)


def _remote_settings(remote: bool, refresh: bool) -> Any:
    """The remote check's settings (a :class:`engine.remote_check.RemoteCheck`) when ``remote``,
    else None; engine.remote_check is imported only then."""
    if not remote:
        if refresh:
            raise click.UsageError("--refresh needs --remote")
        return None
    from engine.remote_check import RemoteCheck

    return RemoteCheck(refresh=refresh)


@cli.command()
@click.argument("which", type=click.Choice(["runbook", "manifest", "inputs"]), default="runbook")
@click.argument("file", required=False, type=click.Path(dir_okay=False))
def schema(which: str, file: str | None) -> int:
    """Print the JSON Schema of a runbook or of a results manifest; `schema inputs FILE`: of
    the values FILE's run takes (its declared inputs)."""
    if which == "inputs":
        import json

        from engine.validation import load_runbook
        from engine.validation.inputs import inputs_schema

        if file is None:
            raise click.UsageError("runbook schema inputs FILE: name the runbook whose inputs to print")
        runbook, _ = load_runbook(file)
        sys.stdout.write(json.dumps(inputs_schema(runbook.inputs, f"inputs of {runbook.name}"), indent=2,
                                    ensure_ascii=False) + "\n")
        return 0
    if file is not None:
        raise click.UsageError(f"runbook schema {which} takes no FILE")
    from engine.schemas import schema_dir

    with open(schema_dir() / f"{which}.schema.json", encoding="utf-8") as fh:
        sys.stdout.write(fh.read())
    return 0


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback unless you ask otherwise).")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@click.option("--allow-remote", is_flag=True,
              help="Allow a --host that is not loopback (the emulator has no real authentication).")
def emulate(host: str, port: int, allow_remote: bool) -> int:
    """Serve the Membrane and Pipedream emulator until Ctrl-C."""
    from engine.emulator import serve_forever
    from engine.errors import RunbookError

    if not _is_loopback(host):
        if not allow_remote:
            raise RunbookError(
                f"runbook emulate: --host {host} is not a loopback address: the emulator accepts any "
                "token, so anyone who can reach it could use it; pass --allow-remote if you mean it")
        click.echo(f"warning: serving the emulator on {host}, beyond this machine; it has no real "
                   "authentication", err=True)

    def ready(url: str) -> None:
        click.echo(f"runbook emulator listening on {url}  (Ctrl-C to stop)")
        click.echo(f"  export MEMBRANE_BASE_URL={url} MEMBRANE_TOKEN=pat-emulator-token")
        click.echo(f"  export PIPEDREAM_BASE_URL={url} PIPEDREAM_ACCESS_TOKEN=emulator-token "
                   "PIPEDREAM_PROJECT_ID=proj_emulator PIPEDREAM_PROJECT_ENVIRONMENT=development")

    try:
        serve_forever(host, port, on_ready=ready)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:  # the port is taken, or the address is not this machine's: not a bug
        raise RunbookError(f"runbook emulate: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return 0


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (127.0.0.0/8, ::1, localhost)."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--step", "step_ids", multiple=True, metavar="ID",
              help="Replay only this step (repeatable); default: every step that sent a request.")
@click.option("--item", "item_indexes", multiple=True, type=click.IntRange(min=0), metavar="N",
              help="For one for_each --step: replay only its item N (0-based; repeatable).")
@click.option("--from-run-log", metavar="RUN_ID",
              help="For one Membrane --step: send the /act body of this action run log instead.")
@click.option("--manifest", "out_path", type=click.Path(dir_okay=False),
              help="Where to write the new manifest (default .runbook/runs/<run id>.json).")
@click.option("--emulate", is_flag=True, help="Send to the built-in emulator instead.")
@click.option("--json", "json_output", is_flag=True, help="Print the new manifest to stdout.")
@_colour_option
def replay(manifest: str, step_ids: tuple[str, ...], item_indexes: tuple[int, ...], from_run_log: str | None,
           out_path: str | None, emulate: bool, json_output: bool, colour: str) -> int:
    """Send the requests MANIFEST recorded again, as they were, and write a new manifest."""
    from engine.commands.replay import replay as replay_command
    from engine.report import ReportOptions

    return replay_command(manifest, step_ids=step_ids, item_indexes=item_indexes, from_run_log=from_run_log,
                          out_path=out_path, emulate=emulate,
                          reports=ReportOptions("json" if json_output else "text", colour=colour))


def _temporal_options(command: Callable[..., int]) -> Callable[..., int]:
    """The connection flags of the Temporal commands (each also read from Temporal's own
    environment variables and config profile: TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, ...)."""
    for option in reversed([
        click.option("--address", metavar="HOST:PORT", help="The Temporal frontend (else TEMPORAL_ADDRESS, "
                     "else localhost:7233)."),
        click.option("--namespace", help="The namespace (else TEMPORAL_NAMESPACE, else default)."),
        click.option("--task-queue", metavar="QUEUE", help="The task queue (else RUNBOOK_TASK_QUEUE, else runbook)."),
        click.option("--api-key", help="An API key, e.g. Temporal Cloud's (else TEMPORAL_API_KEY); turns TLS on."),
        click.option("--tls/--no-tls", "tls", default=None, help="Use TLS (else TEMPORAL_TLS)."),
        click.option("--tls-cert", type=click.Path(dir_okay=False), help="Client certificate for mTLS."),
        click.option("--tls-key", type=click.Path(dir_okay=False), help="Client private key for mTLS."),
        click.option("--tls-ca", type=click.Path(dir_okay=False), help="CA certificate of the server."),
        click.option("--tls-server-name", help="The server name TLS checks."),
    ]):
        command = option(command)
    return command


def _connection(options: dict[str, Any]) -> Connection:
    """The Temporal connection the options of :func:`_temporal_options` name (taken out of them)."""
    from engine.temporal.client import Connection

    names = ("address", "namespace", "task_queue", "api_key", "tls", "tls_cert", "tls_key", "tls_ca",
             "tls_server_name")
    return Connection(**{name: options.pop(name) for name in names})


def _exit_now(code: int) -> int:
    """Exit a Temporal command at once: the SDK's native core can crash (SIGSEGV) while the
    interpreter tears down after it, which would turn a finished command's exit code into -11."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _needs_temporal() -> None:
    import importlib.util

    from engine.errors import RunbookError

    if importlib.util.find_spec("temporalio") is None:
        raise RunbookError("this command needs Temporal's SDK: pip install 'runbook[temporal]'")


@cli.command()
@_temporal_options
@click.option("--max-activities", default=100, show_default=True, type=click.IntRange(1, 4096),
              help="How many steps and items this worker runs at once.")
def worker(max_activities: int, **options: Any) -> int:
    """Run a Temporal worker of runbook workflows and steps until SIGTERM (§10). Start many."""
    _needs_temporal()
    from engine.commands.worker import worker as worker_command

    return _exit_now(worker_command(_connection(options), max_activities=max_activities))


@cli.command()
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--var", "var_pairs", multiple=True, metavar="KEY=VALUE", help=_VAR_HELP)
@click.option("--vars-file", "vars_files", multiple=True, type=click.Path(dir_okay=False), help=_VARS_FILE_HELP)
@click.option("--batch-file", type=click.Path(dir_okay=False), metavar="ROWS.jsonl",
              help="One run per row: JSON lines, each a mapping of variables; \"_key\" names the row.")
@click.option("--batch", metavar="ID", help="The batch id (default: from the runbook and the rows, so "
              "submitting the same batch again starts nothing twice).")
@click.option("--wait", is_flag=True, help="Wait for the runs; print their steps and exit as `run` does.")
@click.option("--manifest", "manifest_path", type=click.Path(dir_okay=False),
              help="With --wait and one run: where to write its manifest.")
@click.option("--heartbeat-timeout", type=click.FloatRange(min=0.5), metavar="SECONDS",
              help="How soon a silent worker is taken for lost (default 10).")
@_temporal_options
@_colour_option
def submit(file: str, var_pairs: tuple[str, ...], vars_files: tuple[str, ...], batch_file: str | None,
           batch: str | None, wait: bool, manifest_path: str | None, heartbeat_timeout: float | None,
           colour: str, **options: Any) -> int:
    """Validate FILE as `run` does, then run it on Temporal: one workflow per run (or per row)."""
    _needs_temporal()
    from engine.commands.submit import submit as submit_command
    from engine.report.colour import palette_for

    return _exit_now(submit_command(file, var_pairs=var_pairs, vars_files=vars_files, batch_file=batch_file,
                          batch=batch, wait=wait, manifest_path=manifest_path, heartbeat_timeout=heartbeat_timeout,
                          connection=_connection(options), palette=palette_for(colour, sys.stdout)))


@cli.command()
@click.argument("ident", metavar="BATCH_OR_RUN_ID")
@click.option("--json", "json_output", is_flag=True, help="Print the status as JSON.")
@_temporal_options
def status(ident: str, json_output: bool, **options: Any) -> int:
    """Show a run's progress (step k of N, the step in flight, items) or a batch's runs per status."""
    _needs_temporal()
    from engine.commands.status import status as status_command

    return _exit_now(status_command(ident, connection=_connection(options), json_output=json_output))


@cli.command()
@click.argument("ident", metavar="BATCH_OR_RUN_ID")
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Where to write one manifest per run (<row key>.json).")
@_temporal_options
def results(ident: str, out: str, **options: Any) -> int:
    """Write the manifest of each run of a batch (or of one run) to DIR."""
    _needs_temporal()
    from engine.commands.results import results as results_command

    return _exit_now(results_command(ident, out, connection=_connection(options)))


@cli.command()
@click.argument("manifest", type=click.Path(dir_okay=False))
@click.option("--html", type=click.Path(dir_okay=False), metavar="PATH", help="Write the HTML report to PATH.")
@click.option("--junit", type=click.Path(dir_okay=False), metavar="PATH", help="Write the JUnit XML report to PATH.")
@click.option("--junit-file-line", is_flag=True, help="Also put file= and line= on each JUnit testcase.")
@click.option("--summary", type=click.Path(dir_okay=False), metavar="PATH", help="Append the Markdown summary to PATH.")
def report(manifest: str, junit_file_line: bool, **report_paths: str | None) -> int:
    """Write the reports of a past run from its MANIFEST (a path, a run id, or latest)."""
    from engine.commands.report import report as report_command

    return report_command(manifest, report_paths, settings={"junit": {"file_line": junit_file_line}},
                          stdout=sys.stdout, stderr=sys.stderr)


@cli.command()
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="How many runs to list.")
@click.option("--dir", "runs_dir", type=click.Path(file_okay=False), default=None,
              help="The folder of manifests (default .runbook/runs).")
def runs(limit: int, runs_dir: str | None) -> int:
    """List the past runs under .runbook/runs, newest first."""
    from engine.commands.runs import runs as runs_command

    return runs_command(limit=limit, runs_dir=runs_dir, stdout=sys.stdout)


@cli.command()
@click.argument("run_id", default="latest", metavar="[RUN_ID|latest]")
@click.option("--dir", "runs_dir", type=click.Path(file_okay=False), default=None,
              help="The folder of manifests (default .runbook/runs).")
@_colour_option
def show(run_id: str, runs_dir: str | None, colour: str) -> int:
    """Print a past run as `run` printed it (RUN_ID, a prefix of one, a manifest path, or latest)."""
    from engine.commands.show import show as show_command
    from engine.report.colour import palette_for

    return show_command(run_id, runs_dir=runs_dir, stdout=sys.stdout, palette=palette_for(colour, sys.stdout))


def _report_internal(exc: BaseException, debug: bool, redact: Callable[[str], str] = str) -> None:
    """One line saying it is a bug (the traceback with ``--debug``), secrets redacted."""
    if debug:
        import traceback

        sys.stderr.write(redact("".join(traceback.format_exception(type(exc), exc, exc.__traceback__))))
    else:
        sys.stderr.write(redact(
            f"runbook: internal error ({type(exc).__name__}: {exc}); this is a bug. "
            "Run again with --debug for the traceback.\n"
        ))


def _hoist_debug(args: list[str]) -> tuple[list[str], bool]:
    """``args`` with every standalone ``--debug`` moved before the subcommand, where click
    takes it (``runbook run x.yml --debug`` is ``runbook --debug run x.yml``); not one after a
    literal ``--``, nor the value of an option that takes one (``--var --debug``)."""
    command = None
    takes_value: set[str] = set()
    kept: list[str] = []
    debug = False
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            kept += args[i:]
            break
        if arg == "--debug":
            debug = True
        else:
            kept.append(arg)
            if arg in takes_value and i + 1 < len(args):
                kept.append(args[i + 1])
                i += 1
            elif command is None and not arg.startswith("-"):
                command = cli.commands.get(arg)
                takes_value = {opt for param in (command.params if command else ())
                               if isinstance(param, click.Option) and not param.is_flag and param.nargs > 0
                               for opt in param.opts}
        i += 1
    return (["--debug", *kept] if debug else kept), debug


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``runbook`` console script; returns the exit code (the script exits with it)."""
    from engine.errors import InternalError, RunbookError

    args, debug = _hoist_debug(list(sys.argv[1:] if argv is None else argv))
    # SIGTERM (a CI runner cancelling a job) interrupts like Ctrl-C: the step in flight is
    # recorded as interrupted, finally steps run, exit 130 (`runbook emulate` just stops).
    old_handler = signal.signal(signal.SIGTERM, _interrupt) if _in_main_thread() else None
    try:
        result = cli.main(args=args, prog_name="runbook", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        return 130
    except InternalError as exc:
        _report_internal(exc.original, debug, exc.redact)
        return 3
    except RunbookError as exc:
        sys.stderr.write(f"{exc}\n")
        return exc.exit_code
    except Exception as exc:  # anything else is a bug in the engine
        _report_internal(exc, debug)
        return 3
    finally:
        gc.enable()  # see _pause_gc
        if old_handler is not None:
            signal.signal(signal.SIGTERM, old_handler)
    return result if isinstance(result, int) else 0


def _pause_gc() -> Callable[[], None]:
    """The CLI's one policy for the cyclic garbage collector: paused while a command loads its
    runbooks, which allocates tens of thousands of containers, keeps them all and makes no
    cycles (each collection would walk the growing heap again: +8% on validating 5,000 steps);
    the function returned ends the pause for a command that goes on (``run``), first freezing
    what was loaded out of every later collection (-5% on running 200 steps)."""
    gc.disable()

    def loaded() -> None:
        gc.freeze()
        gc.enable()

    return loaded


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _in_main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()

