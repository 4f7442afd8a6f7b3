"""Past runs: ``runbook runs`` lists .runbook/runs newest first, ``runbook show`` prints a run as
``run`` printed it, and .runbook/ ignores itself in git."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import base_env, run_cli

RUNBOOK = """
version: 1
name: past
vars: {who: ops}
steps:
  - id: first
    provider: membrane
    dispatch: {id: lookup}
    input: {who: "{{ vars.who }}"}
  - id: fan
    provider: membrane
    for_each: [ok, fail-500, ok]
    fail_fast: false
    continue_on_error: true
    dispatch: {id: "{{ item }}"}
  - id: broken
    provider: membrane
    dispatch: {key: fail-422}
  - id: later
    provider: membrane
    dispatch: {id: after}
finally:
  - id: notify
    provider: membrane
    dispatch: {id: post-report}
"""


def _run(tmp_path: Path, env: dict[str, str], *extra: str):
    return run_cli(["run", "runbook.yml", *extra], cwd=tmp_path, env=env, manifest=False)


def test_runs_lists_newest_first_and_show_prints_a_run_as_run_did(write, tmp_path: Path, emulator: Emulator,
                                                                  membrane_env: dict[str, str]) -> None:
    write(RUNBOOK)
    first = _run(tmp_path, membrane_env)
    assert first.code == 1, first.stderr
    second = _run(tmp_path, membrane_env, "--var", "who=dev")
    assert second.code == 1
    ok_env = dict(membrane_env)
    (tmp_path / "ok.yml").write_text("version: 1\nname: fine\nsteps:\n  - {id: a, provider: membrane, "
                                     "dispatch: {id: x}}\n")
    third = run_cli(["run", "ok.yml"], cwd=tmp_path, env=ok_env, manifest=False)
    assert third.code == 0
    ids = [result.stdout.splitlines()[-1].split("/")[-1].removesuffix(".json") for result in (first, second, third)]

    listing = run_cli(["runs"], cwd=tmp_path, manifest=False)
    assert listing.code == 0, listing.stderr
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["RUN", "RUNBOOK", "STATUS", "STARTED", "(UTC)", "DURATION"]
    assert [row.split()[0] for row in rows] == ids[::-1]  # newest first
    assert [row.split()[1:3] for row in rows] == [["fine", "succeeded"], ["past", "failed"], ["past", "failed"]]
    manifest = json.loads((tmp_path / ".runbook" / "runs" / f"{ids[0]}.json").read_text())
    assert manifest["run"]["started_at"][:19].replace("T", " ") in rows[-1]
    assert rows[-1].rstrip().endswith(" ms")
    limited = run_cli(["runs", "--limit", "1"], cwd=tmp_path, manifest=False)
    assert limited.stdout.splitlines()[1].split()[0] == ids[2] and "2 older" in limited.stdout

    # show: exactly the lines run printed, and its exit code
    for ref, result in ((ids[0], first), (ids[1][:-2], second), ("latest", third)):
        shown = run_cli(["show", ref], cwd=tmp_path, manifest=False)
        assert shown.stdout == result.stdout, (ref, shown.stdout, result.stdout)
        assert shown.code == result.code
    assert "FAIL  fan[1]" in first.stdout and "      " in first.stdout  # the item line and an error line
    default = run_cli(["show"], cwd=tmp_path, manifest=False)
    assert default.stdout == third.stdout
    by_path = run_cli(["show", f".runbook/runs/{ids[1]}.json"], cwd=tmp_path, manifest=False)
    assert by_path.stdout == second.stdout

    unknown = run_cli(["show", "20990101"], cwd=tmp_path, manifest=False)
    assert unknown.code == 2 and "no run '20990101'" in unknown.stderr
    ambiguous = run_cli(["show", ids[0][:4]], cwd=tmp_path, manifest=False)
    assert ambiguous.code == 2 and "ambiguous" in ambiguous.stderr


def test_show_a_run_that_was_killed_and_runs_skips_what_is_not_a_manifest(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    write(RUNBOOK)
    assert _run(tmp_path, membrane_env).code == 1
    runs = tmp_path / ".runbook" / "runs"
    (path,) = runs.glob("*.json")
    manifest = json.loads(path.read_text())
    manifest["run"].update(status="running", finished_at=None, duration_ms=None, id="20000101T000000Z-000000",
                           started_at="2000-01-01T00:00:00.000Z")
    manifest["steps"] = manifest["steps"][:2]
    (runs / "20000101T000000Z-000000.json").write_text(json.dumps(manifest))
    (runs / "notes.json").write_text("{\"not\": \"a manifest\"}")
    (runs / "broken.json").write_text("{\"manifest_version\": 1, \"eng")
    listing = run_cli(["runs"], cwd=tmp_path, manifest=False)
    rows = listing.stdout.splitlines()[1:]
    assert [row.split()[0] for row in rows] == [path.stem, "20000101T000000Z-000000"]
    assert rows[1].split()[2] == "running" and rows[1].rstrip().endswith("-")
    shown = run_cli(["show", "20000101T000000Z-000000"], cwd=tmp_path, manifest=False)
    assert shown.code == 1
    assert shown.stdout.splitlines()[-2] == "running (or stopped without finishing): 1 succeeded, 1 failed so far"


def test_no_runs_yet(tmp_path: Path) -> None:
    listing = run_cli(["runs"], cwd=tmp_path, manifest=False)
    assert (listing.code, listing.stdout) == (0, "no runs under .runbook/runs\n")
    shown = run_cli(["show"], cwd=tmp_path, manifest=False)
    assert shown.code == 2 and "no runs under .runbook/runs" in shown.stderr


def test_the_runbook_folder_ignores_itself_in_git(write, tmp_path: Path, emulator: Emulator,
                                                  membrane_env: dict[str, str]) -> None:
    write(RUNBOOK)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    assert _run(tmp_path, membrane_env).code == 1
    assert (tmp_path / ".runbook" / ".gitignore").read_text().splitlines()[-1] == "*"
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=tmp_path,
                            capture_output=True, text=True, check=True, env=base_env()).stdout
    assert ".runbook" not in status and "runbook.yml" in status
    # a .runbook/ the engine did not create is left as it is
    other = tmp_path / "other"
    (other / ".runbook").mkdir(parents=True)
    (other / "runbook.yml").write_text((tmp_path / "runbook.yml").read_text())
    assert _run(other, membrane_env).code == 1
    assert not (other / ".runbook" / ".gitignore").exists()
    # --manifest elsewhere: no .runbook/runs
    third = tmp_path / "third"
    third.mkdir()
    (third / "runbook.yml").write_text((tmp_path / "runbook.yml").read_text())
    assert _run(third, membrane_env, "--manifest", "m.json").code == 1
    assert not (third / ".runbook" / "runs").exists()
