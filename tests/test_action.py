"""The composite action (action.yml): its inputs, and its steps' commands run as the runner runs
them (``bash --noprofile --norc -eo pipefail``, the inputs substituted into each step's env,
GITHUB_* variables and files set), with runbook installed from this checkout into a fresh venv.

actions/setup-python is not run (it downloads a Python); the fresh venv stands for the Python it
puts on PATH. It sees the test environment's packages through a .pth file, so pip finds runbook's
dependencies installed and fetches only the build backend (setuptools, from PyPI, as on GitHub).
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import venv
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, base_env

ACTION = yaml.safe_load((ROOT / "action.yml").read_text())


def test_the_action_is_a_composite_with_its_inputs() -> None:
    assert ACTION["runs"]["using"] == "composite"
    inputs = ACTION["inputs"]
    assert {"runbook", "args", "python-version"} <= set(inputs)
    assert inputs["runbook"]["required"] is True and inputs["args"]["default"] == ""
    setup, *steps = ACTION["runs"]["steps"]
    assert setup["uses"].startswith("actions/setup-python@")
    assert setup["with"]["python-version"] == "${{ inputs.python-version }}"
    for step in steps:
        assert step["shell"] == "bash"
        assert "${{" not in step["run"], "inputs reach a script through env:, never pasted into it"
    assert ACTION["outputs"]["manifest"]["value"] == "${{ steps.runbook.outputs.manifest }}"


def _expand(value: str, context: dict[str, Any]) -> str:
    def one(match: re.Match[str]) -> str:
        scope, _, name = match.group(1).strip().partition(".")
        return str(context[scope][name])

    return re.sub(r"\$\{\{(.*?)\}\}", one, value)


@pytest.fixture(scope="module")
def python_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv (what setup-python provides) that sees this environment's packages."""
    folder = tmp_path_factory.mktemp("action-python")
    venv.EnvBuilder(with_pip=True).create(folder)
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    purelib = subprocess.run([str(folder / "bin" / "python"), "-c", code],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in site.getsitepackages() if os.path.isdir(p)]
    Path(purelib, "zz-test-environment.pth").write_text("\n".join(ours) + "\n")
    return folder / "bin"


def _run_action(workspace: Path, python_bin: Path, inputs: dict[str, str]) -> tuple[int, str, dict[str, Path]]:
    """Every step of the action after setup-python, as the runner runs it; (exit code of the
    last step run, its output, the GITHUB_* files)."""
    runner_temp = workspace.parent / f"{workspace.name}-runner"
    runner_temp.mkdir()
    files = {name: runner_temp / name for name in ("output", "summary", "path", "env")}
    for file in files.values():
        file.touch()
    defaults = {name: spec.get("default", "") for name, spec in ACTION["inputs"].items()}
    context = {"inputs": {**defaults, **inputs}, "github": {"action_path": str(ROOT)}}
    env = base_env(GITHUB_ACTIONS="true", CI="true", GITHUB_WORKSPACE=str(workspace), RUNNER_TEMP=str(runner_temp),
                   GITHUB_OUTPUT=str(files["output"]), GITHUB_STEP_SUMMARY=str(files["summary"]),
                   GITHUB_PATH=str(files["path"]), GITHUB_ENV=str(files["env"]),
                   GITHUB_ACTION_PATH=str(ROOT),
                   PATH=f"{python_bin}{os.pathsep}{os.environ['PATH']}")
    env.pop("PYTHONPATH", None)  # runbook must come from what the action installed
    env.pop("VIRTUAL_ENV", None)
    output = ""
    code = 0
    for n, step in enumerate(ACTION["runs"]["steps"][1:]):
        script = runner_temp / f"step{n}.sh"
        script.write_text(step["run"])
        step_env = dict(env, **{k: _expand(str(v), context) for k, v in (step.get("env") or {}).items()})
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=workspace,
                              env=step_env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
        output = proc.stdout + proc.stderr
        code = proc.returncode
        if code != 0:
            break
    return code, output, files


def test_the_action_installs_runbook_and_runs_a_runbook(tmp_path: Path, python_bin: Path) -> None:
    workspace = tmp_path / "workspace"
    (workspace / "runbooks").mkdir(parents=True)
    shutil.copy(ROOT / "runbooks" / "demo.yml", workspace / "runbooks" / "demo.yml")
    code, output, files = _run_action(workspace, python_bin, {
        "runbook": "runbooks/demo.yml",
        "args": "--emulate --junit 'reports/run book.xml' --html reports/run.html",
    })
    assert code == 0, output
    # the runbook that ran is the one the action installed, not this checkout on PYTHONPATH
    installed = subprocess.run([str(python_bin / "python"), "-c", "import engine; print(engine.__file__)"],
                               capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert "site-packages" in installed
    assert "+ runbook run runbooks/demo.yml --emulate --junit 'reports/run book.xml'" in output
    assert (workspace / "reports" / "run book.xml").is_file() and (workspace / "reports" / "run.html").is_file()
    outputs = dict(line.split("=", 1) for line in files["output"].read_text().splitlines())
    assert outputs["manifest"].startswith(".runbook/runs/") and (workspace / outputs["manifest"]).is_file()
    assert files["summary"].read_text().startswith("### ✅ runbook `demo`: succeeded")


def test_the_action_fails_with_runbook_and_annotates(tmp_path: Path, python_bin: Path) -> None:
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / "bad.yml").write_text("version: 1\nname: bad\nsteps:\n  - {id: a, provider: membrane, "
                                       "dispatch: {id: x}, tiemout: 3}\n")
    code, output, files = _run_action(workspace, python_bin, {"runbook": "bad.yml", "command": "validate"})
    assert code == 2, output
    assert "::error file=bad.yml,line=4," in output
    assert files["summary"].read_text().startswith("### ❌ runbook validate: 1 error")
    assert files["output"].read_text() == "manifest=\n"
    other = tmp_path / "other"
    other.mkdir()
    code, output, _ = _run_action(other, python_bin, {"runbook": "x.yml", "command": "deploy"})
    assert code == 1 and "command must be run, validate or plan" in output


if sys.platform == "win32":  # pragma: no cover - the action's scripts are bash
    pytestmark = pytest.mark.skip("bash")
