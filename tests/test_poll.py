"""until + poll (SPEC §12) end to end: the CLI against the emulator, the polls counted in its
request log."""

from __future__ import annotations

import json
from pathlib import Path

from engine.emulator import Emulator
from tests.conftest import act_bodies, base_env, run_cli

POLL = """\
version: 1
name: export
providers:
  crm: {{type: membrane}}
steps:
  - id: start
    provider: crm
    dispatch: {{key: start-export}}
  - id: export
    provider: crm
    dispatch: {{key: export-status}}
    input: {{job: "{{{{ steps.start.output.id }}}}"}}
    until: "{{{{ steps.export.output.status == 'done' }}}}"
    poll: {{interval: {interval}, timeout: {timeout}}}
  - id: fetch
    provider: crm
    dispatch: {{key: fetch}}
    input: {{url: "{{{{ steps.export.output.url }}}}"}}
"""


def answer(status: str, **extra: str) -> dict:
    return {"output": {"status": status, **extra}, "actionRunId": f"run_{status}"}


def test_a_poll_succeeds_on_the_third_answer_and_the_next_step_reads_it(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    for body in (answer("queued"), answer("running"), answer("done", url="https://files.example/e.csv")):
        emulator.add_fault({"action": "export-status"}, status=200, body=body)
    path = write(POLL.format(interval="50ms", timeout="30s"))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stdout + result.stderr
    polls = [b for b in act_bodies(emulator) if b.get("key") == "export-status"]
    assert len(polls) == 3 and len({json.dumps(b, sort_keys=True) for b in polls}) == 1  # one request, re-sent
    step = result.step("export")
    assert [a["number"] for a in step["attempts"]] == [1, 2, 3]
    assert step["output"]["status"] == "done" and step["run_id"] == "run_done"
    fetch = next(b for b in act_bodies(emulator) if b.get("key") == "fetch")
    assert fetch["input"] == {"url": "https://files.example/e.csv"}


def test_a_poll_that_times_out_fails_with_the_expressions_last_value(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    emulator.add_fault({"action": "export-status"}, status=200, body=answer("running"), times=100)
    path = write(POLL.format(interval="100ms", timeout="450ms"))
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    polls = [b for b in act_bodies(emulator) if b.get("key") == "export-status"]
    step = result.step("export")
    assert step["status"] == "failed" and step["error"]["type"] == "timeout"
    assert len(step["attempts"]) == len(polls) == 5  # at 0, 0.1, 0.2, 0.3, 0.4 s; 0.5 s is past it
    assert "was still false after 5 polls in 0.45s (poll timeout); its last value: false" in step["error"]["message"]
    assert step["error"]["location"] == f"{path}:13:12"
    assert result.step("fetch")["status"] == "not_run"


def test_until_and_poll_come_together_and_plan_says_the_step_polls(write, tmp_path: Path) -> None:
    bad = write("""\
        version: 1
        name: half
        steps:
          - id: a
            provider: membrane
            dispatch: {key: k}
            until: "{{ steps.a.output.done }}"
          - id: b
            provider: membrane
            dispatch: {key: k}
            poll: {interval: 2m, timeout: 1m}
        """, name="bad.yml")
    result = run_cli(["validate", str(bad)], cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.splitlines()[:2] == [
        f"{bad}:7:5: steps[0] (a) until: until needs poll: a step polls while until is false, as poll says "
        "(poll: {interval: 5s, timeout: 10m})",
        f"{bad}:11:5: steps[1] (b) poll: poll needs until: a step polls while until is false, as poll says "
        "(poll: {interval: 5s, timeout: 10m})",
    ]
    good = write(POLL.format(interval="5s", timeout="10m"))
    plan = run_cli(["plan", str(good), "--json"], cwd=tmp_path, env=base_env())
    assert plan.code == 0, plan.stderr
    step = json.loads(plan.stdout)["steps"][1]
    assert step["poll"] == {"until": "steps.export.output.status == 'done'", "interval": 5.0, "timeout": 600.0,
                            "backoff": "fixed"}
    assert step["uses"] == ["steps.start"]  # not itself: until reads the step's own answer
    text = run_cli(["plan", str(good)], cwd=tmp_path, env=base_env()).stdout
    assert ("   polls     re-sends this request (a read) every 5s until steps.export.output.status == 'done', "
            "for at most 10m") in text


def test_the_emulators_job_status_action_is_done_after_it_was_asked_ready_after_times(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = write("""\
        version: 1
        name: job
        steps:
          - id: wait
            provider: membrane
            dispatch: {key: job-status}
            input: {job: j1, ready_after: 3}
            until: "{{ steps.wait.output.status == 'done' }}"
            poll: {interval: 10ms, timeout: 30s}
        """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 0, result.stdout + result.stderr
    assert len(act_bodies(emulator)) == 4  # running three times, then done
    assert result.step("wait")["output"] == {"job": "j1", "status": "done", "asked": 4,
                                             "url": "https://files.example/j1.csv"}


def test_on_a_terminal_a_polling_step_counts_its_polls_on_one_line(
        write, tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    from tests.conftest import run_on_terminal

    path = write("""\
        version: 1
        name: job
        steps:
          - id: wait
            provider: membrane
            dispatch: {key: job-status}
            input: {job: j2, ready_after: 3}
            until: "{{ steps.wait.output.status == 'done' }}"
            poll: {interval: 300ms, timeout: 30s}
        """)
    code, out = run_on_terminal(["run", str(path), "--manifest", str(tmp_path / "m.json")], cwd=tmp_path,
                                env=membrane_env)
    assert code == 0, out
    polls = {frame.split(" poll ")[1].split()[0] for frame in out.split("\r") if " poll " in frame}
    assert {"2", "3", "4"} <= polls  # one line, rewritten in place as the polls go on
