"""The pre-commit hook, run through pre-commit's own ``try-repo`` (it builds the hook's
environment from this repository with pip, so it needs PyPI; nothing is skipped).

The hook repository is a fresh git commit of the working tree's package files, so the
test checks the tree as it is, committed or not.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, base_env

GOOD = """\
version: 1
name: good
steps:
  - id: hello
    provider: membrane
    dispatch: {id: say-hello}
"""

BAD = """\
version: 1
name: bad
steps:
  - id: hello
    provider: membrane
    dispatch: {id: say-hello}
    tiemout: 30s
"""

WARNS = GOOD + '    input: {tier: "{{ vars.tier }}"}\n'

_SHIPPED = ("pyproject.toml", "README.md", ".pre-commit-hooks.yaml", "engine", "schemas")


def _git(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com",
         "-c", "commit.gpgsign=false", "-c", "init.defaultBranch=main", *args],
        cwd=cwd, check=True, capture_output=True, timeout=60,
    )


@pytest.fixture(scope="module")
def hook_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("hook-repo")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in _SHIPPED:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, repo / name, ignore=ignore)
        else:
            shutil.copy2(source, repo / name)
    _git("init", "-q", cwd=repo)
    _git("add", "-A", cwd=repo)
    _git("commit", "-q", "-m", "hook", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def precommit_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pre-commit-home")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "runbooks").mkdir()
    (tmp_path / "runbooks" / "good.yml").write_text(GOOD)
    (tmp_path / "runbooks" / "bad.yml").write_text(BAD)
    (tmp_path / "deploy.runbook.yaml").write_text(BAD)
    (tmp_path / "runbooks" / "settings.yml").write_text("a: 1\n")  # a hook's file, but not a runbook
    (tmp_path / "settings.yml").write_text("not: [a runbook\n")  # outside the hook's files
    _git("init", "-q", cwd=tmp_path)
    _git("add", "-A", cwd=tmp_path)
    return tmp_path


def try_repo(hook_repo: Path, home: Path, project: Path, *files: str,
             verbose: bool = True) -> subprocess.CompletedProcess[str]:
    env = base_env(PRE_COMMIT_HOME=str(home), PRE_COMMIT_COLOR="never")
    env.pop("PYTHONPATH", None)  # the hook must run the copy pre-commit installed
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [sys.executable, "-m", "pre_commit", "try-repo", str(hook_repo), "runbook-validate",
         *(["--verbose"] if verbose else []), "--files", *files],
        cwd=project, env=env, capture_output=True, text=True, timeout=900,
        stdin=subprocess.DEVNULL,
    )


def test_a_passing_hook_shows_its_warnings_without_verbose(hook_repo: Path, precommit_home: Path,
                                                          project: Path) -> None:
    (project / "runbooks" / "warn.yml").write_text(WARNS)
    _git("add", "-A", cwd=project)
    result = try_repo(hook_repo, precommit_home, project, "runbooks/warn.yml", verbose=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Passed" in output, output
    assert "runbooks/warn.yml:7:19: warning: steps[0] (hello) input.tier: vars.tier is not set" in output, output


def test_hook_definition_is_what_pre_commit_expects() -> None:
    hooks = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = hooks
    assert hook["id"] == "runbook-validate"
    assert hook["language"] == "python"
    assert hook["entry"] == "runbook validate --runbooks-only"
    pattern = re.compile(hook["files"])
    for path in ("runbooks/demo.yml", "ops/runbooks/x.yaml", "deploy.runbook.yml", "a/b.runbook.yaml"):
        assert pattern.search(path), path
    for path in ("settings.yml", ".github/workflows/ci.yml", "runbooks.txt", "docs/runbook.md"):
        assert not pattern.search(path), path


def test_try_repo_fails_a_bad_runbook_and_passes_a_good_one(hook_repo: Path, precommit_home: Path,
                                                            project: Path) -> None:
    bad = try_repo(hook_repo, precommit_home, project,
                   "runbooks/bad.yml", "runbooks/good.yml", "deploy.runbook.yaml", "settings.yml")
    output = bad.stdout + bad.stderr
    assert bad.returncode == 1, output
    assert "runbook validate" in output and "Failed" in output, output
    assert "runbooks/bad.yml:7:5: steps[0] (hello): unknown key 'tiemout' (did you mean 'timeout'?)" in output
    assert "deploy.runbook.yaml:7:5: steps[0] (hello): unknown key 'tiemout'" in output
    assert "runbooks/good.yml: valid" in output
    assert "settings.yml" not in output  # not a runbook path: the hook does not look at it

    # settings.yml is not valid YAML: had the hook been given it, it would fail.
    good = try_repo(hook_repo, precommit_home, project, "runbooks/good.yml", "settings.yml")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Passed" in good.stdout


def test_a_yaml_file_under_runbooks_that_is_not_a_runbook_passes(hook_repo: Path, precommit_home: Path,
                                                                 project: Path) -> None:
    """runbooks/settings.yml (``a: 1``) matches the hook's files, but has no steps: and no runbook
    $schema modeline: skipped, not failed as a runbook missing version, name and steps."""
    alone = try_repo(hook_repo, precommit_home, project, "runbooks/settings.yml")
    output = alone.stdout + alone.stderr
    assert alone.returncode == 0, output
    assert "runbook validate" in output and "Passed" in output, output
    assert "missing required key" not in output and "unknown key 'a'" not in output, output

    both = try_repo(hook_repo, precommit_home, project, "runbooks/settings.yml", "runbooks/good.yml")
    output = both.stdout + both.stderr
    assert both.returncode == 0, output
    assert "runbooks/good.yml: valid" in output
    assert "skipped 1 YAML file that is not a runbook (no steps: and no runbook $schema modeline)" in output
