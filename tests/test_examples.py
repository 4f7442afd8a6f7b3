"""Every runbook in runbooks/ validates and runs on the emulator with exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, base_env, run_cli

EXAMPLES = sorted((ROOT / "runbooks").glob("*.yml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 3


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_validates_and_runs_with_emulate(path: Path, tmp_path: Path) -> None:
    env = base_env()
    validated = run_cli(["validate", str(path)], cwd=tmp_path, env=env)
    assert validated.code == 0, validated.stderr
    result = run_cli(["run", str(path), "--emulate"], cwd=tmp_path, env=env)
    assert result.code == 0, result.stdout + result.stderr
    manifest = result.manifest
    assert manifest["run"]["status"] == "succeeded"
    assert manifest["run"]["emulated"] is True
    assert all(s["status"] in ("succeeded", "skipped") for s in manifest["steps"])
