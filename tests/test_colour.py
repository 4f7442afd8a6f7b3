"""``--color auto|always|never`` and NO_COLOR: status marks and errors coloured on a terminal,
never in a pipe or a file unless asked; colour only marks what the text already says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import base_env, run_cli, run_on_terminal

RUNBOOK = """
    version: 1
    name: colours
    steps:
      - {id: fine, provider: membrane, dispatch: {id: say-hello}}
      - {id: broken, provider: membrane, dispatch: {id: fail-400}}
"""

GREEN_OK = "\x1b[32mok  \x1b[0m  fine"
RED_FAIL = "\x1b[1;31mFAIL\x1b[0m  broken"
ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture
def runbook(write) -> Path:
    return write(RUNBOOK)


def _terminal(args: list[str], tmp_path: Path, **env: str) -> str:
    code, out = run_on_terminal([*args, "--manifest", str(tmp_path / "m.json")], cwd=tmp_path,
                                env=base_env(**env))
    assert code == 1, out
    return out


def test_a_terminal_gets_colours_and_a_pipe_does_not(runbook: Path, tmp_path: Path) -> None:
    out = _terminal(["run", str(runbook), "--emulate"], tmp_path)
    assert GREEN_OK in out and RED_FAIL in out
    assert re.search(r"\n      \x1b\[31m[^\n\x1b]*client_error[^\n\x1b]*\x1b\[0m\r\n", out), out  # the error, red
    assert "\x1b[1;31mfailed\x1b[0m: 1 succeeded, 1 failed" in out
    piped = run_cli(["run", str(runbook), "--emulate"], cwd=tmp_path)
    assert piped.code == 1 and not ESCAPE.search(piped.stdout + piped.stderr)
    assert "ok    fine" in piped.stdout and "FAIL  broken" in piped.stdout


def test_no_color_and_never_turn_it_off_and_always_turns_it_on(runbook: Path, tmp_path: Path) -> None:
    for out in (_terminal(["run", str(runbook), "--emulate"], tmp_path, NO_COLOR="1"),
                _terminal(["run", str(runbook), "--emulate", "--color", "never"], tmp_path)):
        assert not ESCAPE.search(out), out
        assert "ok    fine" in out and "FAIL  broken" in out
    # an empty NO_COLOR is not set (no-color.org)
    assert GREEN_OK in _terminal(["run", str(runbook), "--emulate"], tmp_path, NO_COLOR="")
    forced = run_cli(["run", str(runbook), "--emulate", "--color", "always"], cwd=tmp_path,
                     env=base_env(NO_COLOR="1"))
    assert GREEN_OK in forced.stdout and RED_FAIL in forced.stdout
    plain = ESCAPE.sub("", forced.stdout)
    assert "ok    fine" in plain and "FAIL  broken" in plain and "failed: 1 succeeded, 1 failed" in plain


def test_validate_and_show_colour_too(write, runbook: Path, tmp_path: Path) -> None:
    bad = write("""
        version: 1
        name: bad
        steps:
          - {id: a, provider: membrane, dispatch: {id: x}, tiemout: 3s}
          - {id: b, provider: membrane, dispatch: {id: x}, input: {t: "{{ vars.tier }}"}}
    """, "bad.yml")
    checked = run_cli(["validate", str(bad), str(runbook), "--color", "always"], cwd=tmp_path)
    assert checked.code == 2
    assert re.search(r"^\x1b\[31m[^\n]*bad.yml:4:\d+: steps\[0\] \(a\): unknown key 'tiemout'[^\n]*\x1b\[0m$",
                     checked.stderr, re.M), checked.stderr
    assert re.search(r"^\x1b\[33m[^\n]*warning: [^\n]*vars.tier[^\n]*\x1b\[0m$", checked.stderr, re.M)
    assert f"\x1b[32m{runbook}: valid\x1b[0m\n" in checked.stdout
    plain = run_cli(["validate", str(bad), str(runbook)], cwd=tmp_path)
    assert plain.stderr == ESCAPE.sub("", checked.stderr) and not ESCAPE.search(plain.stdout)
    ran = run_cli(["run", str(runbook), "--emulate"], cwd=tmp_path)
    shown = run_cli(["show", str(ran.manifest_path), "--color", "always"], cwd=tmp_path)
    assert shown.code == 1 and GREEN_OK in shown.stdout and RED_FAIL in shown.stdout
    assert ESCAPE.sub("", shown.stdout) == run_cli(["show", str(ran.manifest_path)], cwd=tmp_path).stdout  # same run


def test_an_unknown_mode_is_a_usage_error(runbook: Path, tmp_path: Path) -> None:
    result = run_cli(["run", str(runbook), "--emulate", "--color", "sometimes"], cwd=tmp_path)
    assert result.code == 2
    assert "'sometimes' is not one of 'auto', 'always', 'never'" in result.stderr
