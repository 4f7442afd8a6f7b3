"""The README's first lines are the two set-up commands, and CI runs the second."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def setup_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block, "the README starts with a sh block of set-up commands"
    assert text.index(block.group(0)) < 600, "the set-up commands come first"
    return block.group(1).strip().splitlines()


def test_first_command_runs_the_demo_on_the_emulator() -> None:
    demo = setup_commands()[0]
    match = re.search(r"runbook run (\S+) --emulate$", demo)
    assert match and (ROOT / match.group(1)).is_file()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    test_command = setup_commands()[1]
    assert "pytest" in test_command
    ci_lines = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci_lines
