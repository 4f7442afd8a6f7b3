"""Scale-out on Temporal (SPEC §10) against a real dev server and real worker processes.

Each test module's workers poll a task queue of their own; the emulator (in this process) is
the provider every worker sends to, and its request log is what tells what was sent, and how
often.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, TemporalServer, act_bodies, base_env, check_manifest, run_cli
from tests.test_calls import LEAF  # the called runbook of the local composition tests

pytestmark = pytest.mark.temporal

SECRET = "s3cr3t-Token-0123456789"
LOST_MESSAGE = "the worker was lost; the action may have run"


class Workers:
    """Worker processes of one task queue, started and stopped by the tests."""

    def __init__(self, server: TemporalServer, env: dict[str, str], queue: str, logs: Path) -> None:
        self.server, self.queue, self.logs = server, queue, logs
        self.env = {**env, "TEMPORAL_ADDRESS": server.address, "RUNBOOK_TASK_QUEUE": queue}
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, **extra: str) -> subprocess.Popen[str]:
        log = open(self.logs / f"worker-{len(self.procs)}.log", "w")  # noqa: SIM115 - kept open by the child
        proc = subprocess.Popen([sys.executable, "-m", "engine", "worker"], cwd=ROOT, env={**self.env, **extra},
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        path = Path(log.name)
        while "polling task queue" not in path.read_text():
            assert proc.poll() is None, path.read_text()
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.05)
        return proc

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

    def cli(self, args: list[str], cwd: Path, timeout: float = 120, **extra: str) -> Any:
        return run_cli(args, cwd=cwd, env={**self.env, **extra}, timeout=timeout, manifest=False)


@pytest.fixture(scope="module")
def emu_env(emu: Any) -> dict[str, str]:
    return base_env(MEMBRANE_BASE_URL=emu.url, MEMBRANE_TOKEN="emulator-token")


@pytest.fixture
def workers(temporal_server: TemporalServer, emu_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(temporal_server, emu_env, f"test-{uuid.uuid4().hex[:8]}", tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


def _comparable(manifest: dict[str, Any]) -> Any:
    """A manifest without what differs between two runs of the same runbook: ids and times."""
    dropped = {"started_at", "finished_at", "duration_ms", "run_id"}

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items() if k not in dropped}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    def ids(records: list[Any]) -> None:  # the emulator's ids are made from a counter
        for step in records:
            for record in [step, *step.get("items", [])]:
                if isinstance(record.get("output"), dict):
                    record["output"].pop("id", None)
                ids(record.get("children") or [])

    out = walk(manifest)
    out["run"] = {k: v for k, v in manifest["run"].items() if k not in dropped | {"id", "executor"}}
    ids(out["steps"])
    return out


SAME = """
version: 1
name: same
vars: {email: jane@example.com, users: [ann, bob, cy]}
providers:
  crm: {type: membrane}
defaults:
  timeout: 10s
steps:
  - id: contact
    provider: crm
    dispatch: {key: create-contact}
    input: {email: "{{ vars.email }}"}
    assert: ["{{ steps.contact.output.email == vars.email }}"]
  - id: notify
    provider: crm
    dispatch: {key: notify}
    input: {text: "contact {{ steps.contact.output.email }}"}
  - id: broken
    provider: crm
    dispatch: {key: fail-500}
    continue_on_error: true
  - id: invite
    provider: crm
    for_each: "{{ vars.users }}"
    as: user
    concurrency: 2
    dispatch: {key: invite}
    input: {who: "{{ user }}", n: "{{ loop.index }}", after: "{{ steps.notify.status }}"}
  - id: skipped
    provider: crm
    dispatch: {key: never}
    when: "{{ vars.email == 'nobody' }}"
finally:
  - id: report
    provider: crm
    dispatch: {key: report}
    input: {status: "{{ run.status }}", invited: "{{ steps.invite.output | length }}"}
outputs:
  email: "{{ steps.contact.output.email }}"
  invited: "{{ steps.invite.output | map(attribute='who') | list }}"
"""


def test_submit_wait_gives_the_manifest_of_a_local_run(workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "same.yml").write_text(SAME)
    workers.start()
    local = run_cli(["run", "same.yml", "--manifest", "local.json", "--color", "always"], cwd=tmp_path,
                    env=workers.env)
    assert local.code == 1, local.stderr
    submitted = workers.cli(["submit", "same.yml", "--wait", "--manifest", "temporal.json", "--color", "always"],
                            tmp_path)
    assert submitted.code == 1, submitted.stdout + submitted.stderr
    # the same step lines as `run` (in the same colours), apart from durations and run ids
    assert "\x1b[32mok  \x1b[0m" in submitted.stdout and "\x1b[32mok  \x1b[0m" in local.stdout

    def step_lines(text: str) -> list[list[str]]:
        plain = re.sub(r"\x1b\[[0-9;]*m", "", text)
        return [line.split()[:2] for line in plain.splitlines() if line[:4] in ("ok  ", "FAIL", "skip")]

    assert step_lines(submitted.stdout) == step_lines(local.stdout)
    on_temporal = check_manifest(json.loads((tmp_path / "temporal.json").read_text()))
    here = check_manifest(json.loads((tmp_path / "local.json").read_text()))
    assert _comparable(on_temporal) == _comparable(here)
    executor = on_temporal["run"]["executor"]
    assert executor["type"] == "temporal" and executor["workflow_id"].startswith("runbook/")
    assert on_temporal["outputs"] == {"email": "jane@example.com", "invited": ["ann", "bob", "cy"]}

    results = workers.cli(["results", executor["workflow_id"], "--out", "out"], tmp_path)
    assert results.code == 1, results.stdout + results.stderr  # the run failed (continue_on_error)
    (written,) = (tmp_path / "out").iterdir()
    assert check_manifest(json.loads(written.read_text())) == on_temporal


SECRETS = """
version: 1
name: secrets
providers:
  api:
    type: http
    base_url: "{{ env.ECHO_URL }}"
    headers:
      Authorization: "Bearer {{ secrets.API_TOKEN }}"
      X-Upper: "{{ secrets.API_TOKEN | upper }}"
  crm: {type: membrane, token: "{{ secrets.API_TOKEN }}"}
steps:
  - id: call
    provider: api
    dispatch: {api: {method: POST, path: /things, body: {token: "{{ secrets.API_TOKEN }}"}}}
  - id: act
    provider: crm
    dispatch: {key: echo}
    input:
      plain: "{{ secrets.API_TOKEN }}"
      b64: "{{ secrets.API_TOKEN | b64encode }}"
      reversed: "{{ secrets.API_TOKEN | reverse }}"
      mixed: "id {{ steps.call.status }} {{ secrets.API_TOKEN[:12] }}"
  - id: fan
    provider: crm
    for_each: "{{ [secrets.API_TOKEN, 'x'] }}"
    dispatch: {key: echo-item}
    input: {value: "{{ item }}"}
outputs:
  leaked: "{{ steps.act.output.plain }}"
"""


def test_no_secret_enters_temporal_history(workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "secrets.yml").write_text(SECRETS)
    workers.start(API_TOKEN=SECRET, ECHO_URL=f"{emu.url}/http")
    emu.reset()
    submitted = workers.cli(["submit", "secrets.yml", "--wait", "--manifest", "m.json"], tmp_path,
                            ECHO_URL=f"{emu.url}/http")
    assert submitted.code == 0, submitted.stdout + submitted.stderr
    # the secret did reach the service, rendered in the worker
    sent = json.dumps(emu.requests)
    assert SECRET in sent and SECRET.upper() in sent
    manifest = json.loads((tmp_path / "m.json").read_text())
    ident = manifest["run"]["executor"]["workflow_id"]
    history = subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), "workflow", "show", "--workflow-id", ident,
         "--address", workers.server.address, "--output", "json"],
        capture_output=True, text=True, check=True).stdout
    assert len(history) > 1000 and '"activityTaskCompletedEventAttributes"' in history
    # payloads are base64 JSON in the history: decode every one and look for every form
    texts = [history]
    for blob in _payload_data(json.loads(history)):
        data = base64.b64decode(blob)
        with contextlib.suppress(zlib.error):  # a large manifest travels compressed (engine/temporal/packing.py)
            data = zlib.decompress(data)
        texts.append(data.decode("utf-8", "replace"))
    every = "\n".join(texts)
    raw = SECRET.encode()
    for form in (SECRET, SECRET.upper(), SECRET[::-1], SECRET[:12], base64.b64encode(raw).decode().rstrip("="),
                 base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert form not in every, form
    assert "***" in every
    assert manifest["outputs"] == {"leaked": "***"}


def _payload_data(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        if isinstance(value.get("data"), str) and "metadata" in value:
            yield value["data"]
        for v in value.values():
            yield from _payload_data(v)
    elif isinstance(value, list):
        for v in value:
            yield from _payload_data(v)


KILL = """
version: 1
name: kill
providers:
  crm: {type: membrane}
steps:
  - id: first
    provider: crm
    dispatch: {key: first}
  - id: slow
    provider: crm
    dispatch: {key: slow}
    timeout: 30s
    RETRY
  - id: last
    provider: crm
    dispatch: {key: last}
finally:
  - id: report
    provider: crm
    dispatch: {key: report}
    input: {status: "{{ run.status }}"}
"""


def _wait_for(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _keys(emu: Any) -> list[str]:
    return [body.get("key") for body in act_bodies(emu)]


def _submit_kill(workers: Workers, tmp_path: Path, emu: Any,
                 retry: str) -> tuple[subprocess.Popen[str], subprocess.Popen[str]]:
    """A worker (to be killed) and ``submit --wait`` of KILL, once its slow step is out (the first
    `slow` hangs 20 s; a second would not)."""
    (tmp_path / "kill.yml").write_text(KILL.replace("RETRY", retry))
    emu.reset()
    emu.add_fault({"action": "slow"}, delay=20, times=1)
    doomed = workers.start()
    submit = subprocess.Popen([sys.executable, "-m", "engine", "submit", "kill.yml", "--wait",
                               "--manifest", "m.json", "--heartbeat-timeout", "1"],
                              cwd=tmp_path, env=workers.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    _wait_for(lambda: "slow" in _keys(emu), "the slow step to be sent")
    return doomed, submit


@pytest.mark.parametrize("retry", ["", "retry: {attempts: 2, on: [timeout]}"], ids=["not-resent", "resent"])
def test_kill_a_worker_mid_step(workers: Workers, tmp_path: Path, emu: Any, retry: str) -> None:
    doomed, submit = _submit_kill(workers, tmp_path, emu, retry)
    status = workers.cli(["status", _submitted_id(submit)], tmp_path)
    assert "step 2 of 4" in status.stdout and "current: slow" in status.stdout, status.stdout + status.stderr
    workers.start()  # the survivor
    doomed.kill()  # kill -9, mid-request
    doomed.wait()
    out, err = submit.communicate(timeout=90)
    manifest = check_manifest(json.loads((tmp_path / "m.json").read_text()))
    statuses = {s["id"]: s["status"] for s in manifest["steps"]}
    slow = manifest["steps"][1]
    if not retry:
        assert submit.returncode == 130, out + err
        assert statuses == {"first": "succeeded", "slow": "interrupted",
                            "last": "not_run", "report": "succeeded"}
        assert slow["error"]["message"] == "the worker was lost; the action may have run"
        assert slow["request"] == {"key": "slow"}  # what the lost worker said it was sending
        assert _keys(emu) == ["first", "slow", "report"]  # nothing sent twice, nothing after
        assert manifest["steps"][3]["request"]["input"] == {"status": "failed"}
    else:
        assert submit.returncode == 0, out + err
        assert set(statuses.values()) == {"succeeded"}
        assert [a["error"] for a in slow["attempts"]] == ["timeout: the worker was lost; the action may have run",
                                                        None]
        assert _keys(emu) == ["first", "slow", "slow", "last", "report"]  # asked for: sent again once


@pytest.mark.parametrize("retry", ["", "retry: {attempts: 2, on: [timeout]}"], ids=["not-resent", "resent"])
def test_kill_a_worker_as_soon_as_it_sends_a_step(workers: Workers, tmp_path: Path, emu: Any, retry: str) -> None:
    """Killed (most likely) before it said what it was sending: the same outcome, with or without
    the request, and a valid manifest."""
    doomed, submit = _submit_kill(workers, tmp_path, emu, retry)
    doomed.kill()
    doomed.wait()
    workers.start()
    out, err = submit.communicate(timeout=90)
    manifest = check_manifest(json.loads((tmp_path / "m.json").read_text()))
    slow = manifest["steps"][1]
    assert slow["request"] in (None, {"key": "slow"})
    if not retry:
        assert submit.returncode == 130, out + err
        assert slow["status"] == "interrupted" and slow["error"]["message"] == LOST_MESSAGE
        assert _keys(emu) == ["first", "slow", "report"]
    else:
        assert submit.returncode == 0, out + err
        assert [a["error"] for a in slow["attempts"]] == [f"timeout: {LOST_MESSAGE}", None]
        assert _keys(emu) == ["first", "slow", "slow", "last", "report"]


def _submitted_id(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("submitted "), line
    return line.split()[1]


#: KILL with no retry: its slow step's line is followed (its finally step included)
FOLLOWED = KILL.replace("    RETRY\n", "")


def test_submit_wait_prints_each_step_as_it_finishes(workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "followed.yml").write_text(FOLLOWED)
    emu.reset()
    emu.add_fault({"action": "slow"}, delay=3, times=1)
    workers.start()
    submit = subprocess.Popen([sys.executable, "-m", "engine", "submit", "followed.yml", "--wait", "--manifest",
                               "m.json"], cwd=tmp_path, env=workers.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    assert submit.stdout is not None
    seen = []
    for line in submit.stdout:
        seen.append(line)
        if line.split()[:2] == ["ok", "first"]:
            break
    # the first step's line came while the slow step was out: the step after it was not sent yet
    assert "last" not in _keys(emu), seen
    rest, err = submit.communicate(timeout=60)
    assert submit.returncode == 0, "".join(seen) + rest + err
    assert [line.split()[:2] for line in rest.splitlines() if line.startswith("ok")] == [
        ["ok", "slow"], ["ok", "last"], ["ok", "report"]]
    assert "succeeded: 4 succeeded" in rest


def test_a_batch_submitted_twice_starts_nothing_twice(workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "same.yml").write_text(SAME)
    rows = [{"_key": f"row-{i}", "email": f"user{i}@example.com"} for i in range(3)] + [{"email": "x@example.com"}]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    workers.start()
    workers.start()
    emu.reset()
    first = workers.cli(["submit", "same.yml", "--batch-file", "rows.jsonl", "--wait"], tmp_path)
    assert first.code == 1, first.stdout + first.stderr  # each run has a continue_on_error failure
    assert "started 4 of 4 runs" in first.stdout
    batch = first.stdout.split()[1].rstrip(":")
    again = workers.cli(["submit", "same.yml", "--batch-file", "rows.jsonl"], tmp_path)
    assert again.code == 0 and "started 0 of 4 runs; 4 already submitted, not started again" in again.stdout
    assert _keys(emu).count("create-contact") == 4
    _wait_for(lambda: "4 runs: 4 failed" in workers.cli(["status", batch], tmp_path).stdout, "the batch's status")
    results = workers.cli(["results", batch, "--out", "out"], tmp_path)
    assert "wrote 4 manifests" in results.stdout
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == ["4.json", "row-0.json", "row-1.json", "row-2.json"]
    emails = {check_manifest(json.loads((tmp_path / "out" / n).read_text()))["vars"]["email"] for n in names}
    assert emails == {"user0@example.com", "user1@example.com", "user2@example.com", "x@example.com"}


def test_submit_refuses_what_run_refuses(workers: Workers, tmp_path: Path) -> None:
    (tmp_path / "same.yml").write_text(SAME)
    (tmp_path / "rows.jsonl").write_text('{"emial": "typo"}\n')
    bad_var = workers.cli(["submit", "same.yml", "--var", "emial=x"], tmp_path)
    assert bad_var.code == 2 and "emial" in bad_var.stderr
    bad_row = workers.cli(["submit", "same.yml", "--batch-file", "rows.jsonl"], tmp_path)
    assert bad_row.code == 2 and "emial" in bad_row.stderr, bad_row.stderr


def test_a_worker_stops_on_sigterm(workers: Workers) -> None:
    proc = workers.start()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=20) == 0


def test_help_does_not_import_temporalio() -> None:
    code = "import sys; from engine.cli import main; main(['--help']); assert 'temporalio' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr


RATE = """
version: 1
name: rate
vars: {n: 1000}
providers:
  crm: {type: membrane, rate_limit: {requests: 50, per: 1s}}
steps:
  - id: calls
    provider: crm
    for_each: "{{ range(vars.n) | list }}"
    concurrency: 100
    dispatch: {key: limited}
    input: {n: "{{ item }}"}
"""


def test_a_rate_limit_holds_across_workers(workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "rate.yml").write_text(RATE)
    workers.start()
    workers.start()
    emu.reset()
    submitted = workers.cli(["submit", "rate.yml", "--wait", "--manifest", "m.json"], tmp_path, timeout=120)
    assert submitted.code == 0, submitted.stdout + submitted.stderr
    times = sorted(r["received_at"] for r in emu.requests if r["path"] == "/act")
    assert len(times) == 1000
    assert times[-1] - times[0] >= 19.0, times[-1] - times[0]
    windows = [sum(1 for t in times[i:i + 60] if t - start < 1.0) for i, start in enumerate(times)]
    assert max(windows) <= 50, max(windows)
    print(f"1000 calls at 50/s over two workers: {times[-1] - times[0]:.1f} s, at most {max(windows)} in a second")


def _history(workers: Workers, ident: str) -> list[Any]:
    """The events of a workflow's history (``temporal workflow show``)."""
    shown = subprocess.run(
        [str(Path(sys.executable).parent / "temporal"), "workflow", "show", "--workflow-id", ident,
         "--address", workers.server.address, "--output", "json"],
        capture_output=True, text=True, check=True).stdout
    return list(json.loads(shown)["events"])



#: A fan-out whose manifest is over Temporal's 2 MB payload limit as JSON (each item records its
#: 1.2 KB input): it travels compressed (engine/temporal/packing.py).
LARGE = """
version: 1
name: large
providers:
  crm: {type: membrane}
steps:
  - id: each
    provider: crm
    for_each: "{{ range(1500) | list }}"
    concurrency: 100
    dispatch: {id: add}
    input: {n: "{{ item }}", pad: "{{ 'x' * 1200 }}"}
"""


def test_a_manifest_over_temporal_s_payload_limit_comes_back_whole(workers: Workers, tmp_path: Path,
                                                                    emu: Any) -> None:
    (tmp_path / "large.yml").write_text(LARGE)
    workers.start()
    submitted = workers.cli(["submit", "large.yml", "--wait", "--manifest", "m.json"], tmp_path, timeout=180)
    assert submitted.code == 0, submitted.stdout[-2000:] + submitted.stderr[-2000:]
    manifest = check_manifest(json.loads((tmp_path / "m.json").read_text()))
    assert len(json.dumps(manifest, separators=(",", ":")).encode()) > 2 * 1024 * 1024  # over, as JSON
    items = manifest["steps"][0]["items"]
    assert [item["index"] for item in items] == list(range(1500))
    assert {item["status"] for item in items} == {"succeeded"}
    assert "ok    each  crm (membrane)  id" in submitted.stdout and "1500 items: 1500 succeeded" in submitted.stdout
    ident = manifest["run"]["executor"]["workflow_id"]
    (completed,) = [e for e in _history(workers, ident) if "workflowExecutionCompletedEventAttributes" in e]
    (payload,) = completed["workflowExecutionCompletedEventAttributes"]["result"]["payloads"]
    assert base64.b64decode(payload["metadata"]["encoding"]) == b"binary/plain"  # compressed, under the limit
    results = workers.cli(["results", ident, "--out", "out"], tmp_path)
    assert results.code == 0, results.stdout + results.stderr
    (written,) = (tmp_path / "out").iterdir()
    assert json.loads(written.read_text()) == manifest


MID = """\
version: 1
name: mid
inputs:
  who: {type: string, required: true}
steps:
  - id: leaf
    runbook: ./leaf.yml
    with: {email: "{{ vars.who }}", tier: vip}
  - id: skipped
    runbook: ./leaf.yml
    when: "{{ vars.who == 'nobody' }}"
    with: {email: x@example.com}
outputs:
  got: "{{ steps.leaf.output.contact }}"
"""

TOP = """\
version: 1
name: top
vars: {people: [a@x.io, b@x.io]}
steps:
  - id: mid
    runbook: ./lib/mid.yml
    with: {who: ann@example.com}
  - id: after
    provider: membrane
    dispatch: {key: after}
    input: {got: "{{ steps.mid.output.got }}"}
  - id: each
    runbook: ./lib/leaf.yml
    for_each: "{{ vars.people }}"
    concurrency: 2
    with: {email: "{{ item }}"}
  - id: refused
    runbook: ./lib/leaf.yml
    with: {email: a@x.io, tier: "{{ 'gold' }}"}
    continue_on_error: true
finally:
  - id: report
    provider: membrane
    dispatch: {key: report}
    input: {got: "{{ steps.each.output | map(attribute='contact') | list }}"}
outputs:
  got: "{{ steps.mid.output.got }}"
"""


def test_calls_run_as_child_workflows_with_the_manifest_of_a_local_run(
        workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "leaf.yml").write_text(LEAF)
    (tmp_path / "lib" / "mid.yml").write_text(MID)
    (tmp_path / "top.yml").write_text(TOP)
    env = {**workers.env, "MEMBRANE_TOKEN": "emulator-token"}
    workers.start()
    local = run_cli(["run", "top.yml", "--manifest", "local.json"], cwd=tmp_path, env=env)
    assert local.code == 1, local.stdout + local.stderr  # the refused input (continue_on_error)
    emu.reset()
    submitted = workers.cli(["submit", "top.yml", "--wait", "--manifest", "temporal.json"], tmp_path)
    assert submitted.code == 1, submitted.stdout + submitted.stderr
    steps = [line[6:].split("  ")[0] for line in submitted.stdout.splitlines() if line[:4] in ("ok  ", "FAIL", "skip")]
    assert steps == [line[6:].split("  ")[0] for line in local.stdout.splitlines()
                     if line[:4] in ("ok  ", "FAIL", "skip")]  # the nesting as run prints it
    assert "mid › leaf › make" in steps
    # mid's leaf, mid's finally... each item's leaf: every call's steps were sent, once
    assert sorted(_keys(emu)) == sorted(["create-contact", "note", "after", "create-contact", "note",
                                         "create-contact", "note", "report"])
    on_temporal = check_manifest(json.loads((tmp_path / "temporal.json").read_text()))
    here = check_manifest(json.loads((tmp_path / "local.json").read_text()))
    assert _comparable(on_temporal) == _comparable(here)
    mid = on_temporal["steps"][0]
    assert mid["called"]["name"] == "mid" and mid["output"] == {"got": "ann@example.com"}
    assert [(c["id"], c["status"]) for c in mid["children"]] == [("leaf", "succeeded"), ("skipped", "skipped")]
    assert [(c["id"], c["status"]) for c in mid["children"][0]["children"]] == [("make", "succeeded"),
                                                                                 ("note", "succeeded")]
    assert [item["output"] for item in on_temporal["steps"][2]["items"]] == [{"contact": "a@x.io"},
                                                                            {"contact": "b@x.io"}]
    assert on_temporal["steps"][3]["error"]["message"] == "input 'tier': 'gold' is not one of standard, vip"
    # each call was a child workflow of its caller, the same runbook workflow
    ident = on_temporal["run"]["executor"]["workflow_id"]
    started = [e for e in _history(workers, ident) if "startChildWorkflowExecutionInitiatedEventAttributes" in e]
    assert sorted(e["startChildWorkflowExecutionInitiatedEventAttributes"]["workflowId"] for e in started) == [
        f"{ident}/each/0", f"{ident}/each/1", f"{ident}/mid"]
    child = "startChildWorkflowExecutionInitiatedEventAttributes"
    nested = [e[child]["workflowId"] for e in _history(workers, f"{ident}/mid") if child in e]
    assert nested == [f"{ident}/mid/leaf"]


INNER = """\
version: 1
name: inner
inputs:
  who: {type: string, required: true}
steps:
  - id: hello
    provider: membrane
    dispatch: {key: hello}
  - id: slow
    provider: membrane
    dispatch: {key: slow}
    input: {who: "{{ vars.who }}"}
    timeout: 30s
"""

OUTER = """\
version: 1
name: outer
steps:
  - id: before
    provider: membrane
    dispatch: {key: before}
  - id: each
    runbook: ./inner.yml
    for_each: "{{ ['ann', 'bob'] }}"
    concurrency: 2
    with: {who: "{{ item }}"}
"""


def test_status_shows_the_called_runbooks_running_under_their_step(
        workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "inner.yml").write_text(INNER)
    (tmp_path / "outer.yml").write_text(OUTER)
    emu.reset()
    emu.add_fault({"action": "slow"}, delay=5, times=2)
    workers.start()
    submit = subprocess.Popen([sys.executable, "-m", "engine", "submit", "outer.yml", "--wait"], cwd=tmp_path,
                              env=workers.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ident = _submitted_id(submit)
    _wait_for(lambda: _keys(emu).count("slow") == 2, "both calls' slow steps to be sent")
    shown = workers.cli(["status", ident], tmp_path)
    assert shown.code == 0, shown.stdout + shown.stderr
    head, *calls = shown.stdout.splitlines()
    assert "step 2 of 2  current: each  items: 0/2 done, 0 failed, 2 in flight  (1 succeeded)" in head, head
    assert sorted(calls) == [f"  each[{i}]: {ident}/each/{i}  running  step 2 of 2  current: slow  (1 succeeded)"
                             for i in (0, 1)], shown.stdout
    as_json = json.loads(workers.cli(["status", ident, "--json"], tmp_path).stdout)
    assert sorted((c["step"], c["index"], c["workflow_id"], c["current"], c["workflow"]) for c in as_json["calls"]) \
        == [("each", i, f"{ident}/each/{i}", "slow", "running") for i in (0, 1)]
    out, err = submit.communicate(timeout=60)
    assert submit.returncode == 0, out + err
    finished = json.loads(workers.cli(["status", ident, "--json"], tmp_path).stdout)
    assert finished["status"] == "succeeded" and finished["calls"] == []


def test_the_worker_sandbox_skips_serialization_contexts_only_for_a_converter_that_takes_none() -> None:
    import dataclasses

    from temporalio.api.common.v1 import Payload
    from temporalio.converter import DataConverter, PayloadCodec
    from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

    from engine.temporal.sandbox import takes_no_context, workflow_runner

    class Codec(PayloadCodec):
        async def encode(self, payloads: Any) -> list[Payload]:
            return list(payloads)

        async def decode(self, payloads: Any) -> list[Payload]:
            return list(payloads)

    coded = dataclasses.replace(DataConverter.default, payload_codec=Codec())
    assert takes_no_context(DataConverter.default) and not takes_no_context(coded)
    assert isinstance(workflow_runner(DataConverter.default), SandboxedWorkflowRunner)  # still the sandbox
    assert type(workflow_runner(coded)) is SandboxedWorkflowRunner
    assert type(workflow_runner(DataConverter.default)) is not SandboxedWorkflowRunner


USES = """\
version: 1
name: uses
inputs:
  token: {type: string, required: true}
  shout: {type: string, default: none}
  who: {type: string, default: nobody}
providers:
  crm: {type: membrane}
steps:
  - id: echo
    provider: crm
    dispatch: {key: echo}
    input: {plain: "{{ vars.token }}", shout: "{{ vars.shout }}", who: "{{ vars.who }}"}
  - id: deeper
    runbook: ./deep.yml
    with: {secret: "{{ vars.token }}"}
outputs:
  got: "{{ steps.echo.output.plain }}"
  who: "{{ steps.echo.output.who }}"
"""

DEEP = """\
version: 1
name: deep
inputs:
  secret: {type: string, required: true}
steps:
  - id: deep_echo
    provider: membrane
    dispatch: {key: deep-echo}
    input: {again: "{{ vars.secret }}"}
"""

PASSES = """\
version: 1
name: passes
steps:
  - id: call
    runbook: ./lib/uses.yml
    with: {token: "{{ secrets.API_TOKEN }}", shout: "{{ secrets.API_TOKEN | upper }}", who: plain}
  - id: each
    runbook: ./lib/uses.yml
    for_each: "{{ ['ann', 'bob'] }}"
    with: {token: "{{ secrets.API_TOKEN }}", who: "{{ item }}"}
outputs:
  got: "{{ steps.call.output.got }}"
  who: "{{ steps.each.output | map(attribute='who') | list }}"
"""


def test_no_secret_enters_history_when_with_passes_one_to_a_called_runbook(
        workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "uses.yml").write_text(USES)
    (tmp_path / "lib" / "deep.yml").write_text(DEEP)
    (tmp_path / "passes.yml").write_text(PASSES)
    workers.start(API_TOKEN=SECRET)
    emu.reset()
    submitted = workers.cli(["submit", "passes.yml", "--wait", "--manifest", "m.json"], tmp_path)
    assert submitted.code == 0, submitted.stdout + submitted.stderr
    bodies = act_bodies(emu)
    # the called runbooks' activities rendered the secret again, where they ran (three levels deep too)
    echoed = [b["input"] for b in bodies if b["key"] == "echo"]
    assert sorted(e["who"] for e in echoed) == ["ann", "bob", "plain"]
    assert all(e["plain"] == SECRET for e in echoed)
    assert next(e for e in echoed if e["who"] == "plain")["shout"] == SECRET.upper()
    assert [b["input"] for b in bodies if b["key"] == "deep-echo"] == [{"again": SECRET}] * 3
    manifest = check_manifest(json.loads((tmp_path / "m.json").read_text()))
    assert manifest["outputs"] == {"got": "***", "who": ["ann", "bob"]}
    ident = manifest["run"]["executor"]["workflow_id"]
    texts = []
    for workflow in (ident, f"{ident}/call", f"{ident}/call/deeper", f"{ident}/each/0", f"{ident}/each/1",
                     f"{ident}/each/1/deeper"):
        events = _history(workers, workflow)
        assert events, workflow
        texts.append(json.dumps(events))
        texts += [base64.b64decode(blob).decode("utf-8", "replace") for blob in _payload_data(events)]
    every = "\n".join(texts)
    raw = SECRET.encode()
    for form in (SECRET, SECRET.upper(), SECRET[::-1], SECRET[:12], base64.b64encode(raw).decode().rstrip("="),
                 base64.urlsafe_b64encode(raw).decode().rstrip("=")):
        assert form not in every, form
    assert "***" in every
    assert SECRET not in json.dumps(manifest)


POLLS = """\
version: 1
name: polls
vars: {ready_after: 2, timeout: 30s}
providers:
  crm: {type: membrane}
steps:
  - id: wait
    provider: crm
    dispatch: {key: job-status}
    input: {job: "{{ vars.job }}", ready_after: "{{ vars.ready_after }}"}
    until: "{{ steps.wait.output.status == 'done' }}"
    poll: {interval: 200ms, timeout: 2s}
  - id: fetch
    provider: crm
    dispatch: {key: fetch}
    input: {url: "{{ steps.wait.output.url }}"}
"""


def test_a_poll_is_a_series_of_activities_with_the_manifest_of_a_local_run(
        workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "polls.yml").write_text(POLLS)
    workers.start()
    emu.reset()
    local = run_cli(["run", "polls.yml", "--var", "job=j1", "--manifest", "local.json"], cwd=tmp_path,
                    env=workers.env)
    assert local.code == 0, local.stdout + local.stderr
    emu.reset()
    submitted = workers.cli(["submit", "polls.yml", "--var", "job=j1", "--wait", "--manifest", "t.json"], tmp_path)
    assert submitted.code == 0, submitted.stdout + submitted.stderr
    assert _keys(emu) == ["job-status"] * 3 + ["fetch"]  # running, running, done: then the next step
    manifest = check_manifest(json.loads((tmp_path / "t.json").read_text()))
    assert _comparable(manifest) == _comparable(check_manifest(json.loads((tmp_path / "local.json").read_text())))
    wait = manifest["steps"][0]
    assert [a["number"] for a in wait["attempts"]] == [1, 2, 3]
    assert wait["output"] == {"job": "j1", "status": "done", "asked": 3, "url": "https://files.example/j1.csv"}
    # each poll its own activity, the workflow sleeping (a durable timer) between them
    events = _history(workers, manifest["run"]["executor"]["workflow_id"])
    scheduled = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"] for e in events
                 if "activityTaskScheduledEventAttributes" in e]
    assert scheduled == ["runbook.step"] * 4
    assert sum("timerStartedEventAttributes" in e for e in events) == 2

    emu.reset()  # a poll whose until stays false fails as a local one does
    late = workers.cli(["submit", "polls.yml", "--var", "job=j2", "--var", "ready_after=100", "--wait",
                        "--manifest", "late.json"], tmp_path)
    assert late.code == 1, late.stdout + late.stderr
    wait = check_manifest(json.loads((tmp_path / "late.json").read_text()))["steps"][0]
    polls = _keys(emu).count("job-status")
    assert wait["status"] == "failed" and wait["error"]["type"] == "timeout" and 2 <= polls <= 11
    assert [a["number"] for a in wait["attempts"]] == list(range(1, polls + 1))  # (the dev server's timers fire
    # about a second apart at the least, so fewer polls fit in 2s than locally)
    assert wait["error"]["message"] == (f"until {{{{ steps.wait.output.status == 'done' }}}} was still false after "
                                        f"{polls} polls in 2s (poll timeout); its last value: false")
    assert wait["error"]["location"].endswith("polls.yml:11:12")


def test_a_poll_goes_on_after_its_worker_is_lost_between_polls(workers: Workers, tmp_path: Path, emu: Any) -> None:
    (tmp_path / "polls.yml").write_text(POLLS.replace("interval: 200ms, timeout: 2s", "interval: 2s, timeout: 60s"))
    emu.reset()
    doomed = workers.start()
    submit = subprocess.Popen([sys.executable, "-m", "engine", "submit", "polls.yml", "--var", "job=j3", "--wait",
                               "--manifest", "m.json"], cwd=tmp_path, env=workers.env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    _wait_for(lambda: "job-status" in _keys(emu), "the first poll")
    doomed.kill()  # kill -9 while the workflow sleeps between polls: no worker holds the wait
    doomed.wait()
    workers.start()
    out, err = submit.communicate(timeout=90)
    assert submit.returncode == 0, out + err
    assert _keys(emu) == ["job-status"] * 3 + ["fetch"]  # no poll lost, none sent twice
    wait = check_manifest(json.loads((tmp_path / "m.json").read_text()))["steps"][0]
    assert [a["number"] for a in wait["attempts"]] == [1, 2, 3] and wait["output"]["status"] == "done"
