"""Small command-line behaviours: ``--debug`` wherever it is written."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine.cli import _hoist_debug
from tests.conftest import run_cli

OK = """\
version: 1
name: ok
steps:
  - {id: a, provider: membrane, dispatch: {id: x}}
"""

BAD = OK.replace("dispatch: {id: x}}", "dispatch: {id: x}, tiemout: 3}")

@pytest.mark.parametrize("name", ["ok.yml", "bad.yml"])
def test_debug_after_validate_changes_nothing_but_where_it_is_written(write, tmp_path: Path, name: str) -> None:
    write(OK, "ok.yml")
    write(BAD, "bad.yml")
    before = run_cli(["--debug", "validate", name], cwd=tmp_path)
    for args in (["validate", name, "--debug"], ["validate", "--debug", name], ["validate", name]):
        after = run_cli(args, cwd=tmp_path)
        assert (after.code, after.stdout, after.stderr) == (before.code, before.stdout, before.stderr), args
    assert before.code == (0 if name == "ok.yml" else 2)
    assert "no such option" not in before.stderr.lower()


def test_debug_after_run_is_accepted(write, tmp_path: Path) -> None:
    write(OK, "ok.yml")
    result = run_cli(["run", "ok.yml", "--emulate", "--debug"], cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert result.step("a")["status"] == "succeeded"


def test_debug_after_run_shows_the_traceback_of_a_bug(tmp_path: Path) -> None:
    (tmp_path / "crash.yml").write_text(textwrap.dedent("""\
        version: 1
        name: crash
        steps: [{id: boom, provider: membrane, dispatch: {id: x}}]
    """))
    quiet = run_cli(["run", "crash.yml", "--emulate"], cwd=tmp_path, module="tests.planted_bug")
    assert quiet.code == 3 and "Traceback" not in quiet.stderr
    assert "internal error (RuntimeError: engine bug holding ); this is a bug" in quiet.stderr
    loud = run_cli(["run", "crash.yml", "--emulate", "--debug"], cwd=tmp_path, module="tests.planted_bug")
    assert loud.code == 3
    assert "Traceback" in loud.stderr and "RuntimeError: engine bug" in loud.stderr


def test_a_debug_after_a_double_dash_or_as_an_options_value_is_left_alone(write, tmp_path: Path) -> None:
    write(OK, "ok.yml")
    named = run_cli(["validate", "ok.yml", "--", "--debug"], cwd=tmp_path)
    assert named.code == 2
    assert "--debug:1:1: cannot read file" in named.stderr and "ok.yml: valid" in named.stdout
    as_value = run_cli(["validate", "ok.yml", "--var", "--debug"], cwd=tmp_path)
    assert as_value.code == 2
    assert "--var '--debug': expected KEY=VALUE" in as_value.stderr


@pytest.mark.parametrize(
    ("argv", "expected", "debug"),
    [
        (["run", "x.yml", "--debug"], ["--debug", "run", "x.yml"], True),
        (["--debug", "run", "x.yml", "--debug"], ["--debug", "run", "x.yml"], True),
        (["validate", "--format", "json", "--debug", "x.yml"], ["--debug", "validate", "--format", "json", "x.yml"],
         True),
        (["validate", "x.yml", "--var", "--debug"], ["validate", "x.yml", "--var", "--debug"], False),
        (["validate", "x.yml", "--", "--debug"], ["validate", "x.yml", "--", "--debug"], False),
        (["validate", "--debug=1", "x.yml"], ["validate", "--debug=1", "x.yml"], False),
        (["schema"], ["schema"], False),
        ([], [], False),
    ],
)
def test_hoisting_debug(argv: list[str], expected: list[str], debug: bool) -> None:
    assert _hoist_debug(argv) == (expected, debug)


def test_emulate_stops_with_exit_0_on_sigterm(tmp_path: Path) -> None:
    """A CI job that starts `runbook emulate` in the background and ends with `kill` sees exit 0."""
    import signal
    import subprocess
    import sys
    import time

    from tests.conftest import base_env

    proc = subprocess.Popen([sys.executable, "-m", "engine", "emulate", "--port", "0"], cwd=tmp_path,
                            env=base_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert "runbook emulator listening on http://127.0.0.1:" in proc.stdout.readline()
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_shell_completion_as_the_readme_says(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import base_env

    def complete(**env: str) -> str:
        return subprocess.run([sys.executable, "-c", "from engine.cli import main; main()"], cwd=tmp_path,
                              env=base_env(**env), capture_output=True, text=True, timeout=30).stdout

    assert "_runbook_completion()" in complete(_RUNBOOK_COMPLETE="bash_source")
    assert complete(_RUNBOOK_COMPLETE="zsh_source").startswith("#compdef runbook")
    assert "plain,validate" in complete(_RUNBOOK_COMPLETE="bash_complete", COMP_WORDS="runbook va", COMP_CWORD="1")
