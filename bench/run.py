"""The runbook benchmark: `runbook run` side by side with a raw httpx loop (the floor).

Run it from a fresh clone, with or without the ``runbook`` console script installed::

    python bench/run.py                       # full: N = 1, 20, 200, 2000; 5 runs each
    python bench/run.py --quick               # N = 1, 20, 200; 3 runs each
    python bench/run.py --quick --memory      # and the memory of run(2000) and run(20000)
    python bench/run.py --sizes 1,20,200,2000 --repeat 7 --out bench/results/latest.json

What it does, all in one invocation:

1. Starts ``bench/server.py`` (a minimal HTTP/1.1 keep-alive server answering
   Membrane ``POST /act`` and Pipedream ``actions/run`` + ``oauth/token``) in its own
   process, and measures its requests/s with a raw keep-alive socket loop, so you can
   see it is not the bottleneck.
2. Generates runbooks of N dependent Membrane steps (step i's input is
   ``{n: "{{ steps.s<i-1>.output.value }}", i: i}``) and times, as whole processes
   (wall time from spawn to exit, medians of ``--repeat`` runs, interleaved, after
   one untimed warm-up that also checks the chain's last value is N):
   ``python -m engine run FILE --manifest TMP`` and ``python bench/floor.py membrane URL N``
   (one keep-alive ``httpx.Client`` doing the same N dependent requests).
3. Times ``runbook validate`` of 20- and 5,000-step runbooks and ``runbook --help``,
   records every child's peak RSS (``os.wait4``'s rusage), checks with
   ``python -X importtime`` that ``--help`` and ``validate`` import nothing network-related,
   and (if the engine has a ``pipedream`` provider) runs a Pipedream chain too.
4. Memory (``--memory``; part of the full run, not of ``--quick`` or a run given ``--sizes``):
   ``runbook run`` of a 2,000- and a 20,000-step chain once each, their peak RSS, and the
   memory a step keeps: retained per step = (RSS(20000) - RSS(2000)) / 18000
   (``--memory-sizes`` changes the two lengths). ``bench/memory_profile.py`` shows where it goes.
5. Prints a table with the issue's targets next to each figure and writes JSON
   (default ``bench/results/latest.json``).

Derived figures: per-step overhead = ((run(200) - floor(200)) - (run(20) - floor(20))) / 180
(the issue's definition; on a busy 2-core machine two medians 180 steps apart are noisy, so
the overhead from N = 200 to 2000 and a least-squares slope over every sample are shown too);
ratio = run(N) / floor(N); linearity = runbook's time per step from N = 200 to 2000
divided by its time per step from N = 20 to 200 (flat recording gives about 1).
Use ``--repeat 9`` or more for steadier figures when other work shares the machine.

The engine is started as ``[sys.executable, "-m", "engine", ...]`` with ``PYTHONPATH``
set to the repository root. The benchmark only talks to 127.0.0.1, and every child
process is bounded in time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
DEFAULT_SIZES = (1, 20, 200, 2000)
QUICK_SIZES = (1, 20, 200)
DEFAULT_VALIDATE_SIZES = (20, 5000)
DEFAULT_MEMORY_SIZES = (2000, 20000)
CHILD_TIMEOUT = 600.0
NETWORK_MODULES = ("httpx", "httpcore", "h11", "h2", "anyio", "sniffio", "certifi", "ssl", "http.client",
                   "urllib3", "requests")
MIB = 1024 * 1024


class BenchError(RuntimeError):
    """A child process failed or the chain did not compute what it should."""


# --------------------------------------------------------------------------- processes


@dataclass
class Sample:
    """One whole-process run: wall seconds, peak RSS, exit code, CPU seconds (user + system)."""

    wall_s: float
    rss_bytes: int
    code: int
    cpu_s: float = 0.0


@dataclass
class Series:
    """Repeated runs of one command."""

    label: str
    cmd: list[str]
    samples: list[Sample] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(s.wall_s for s in self.samples)

    @property
    def rss_bytes(self) -> int:
        return max(s.rss_bytes for s in self.samples)

    def to_json(self) -> dict[str, Any]:
        walls = [s.wall_s for s in self.samples]
        return {
            "cmd": self.cmd,
            "runs": len(walls),
            "median_s": round(self.median_s, 6),
            "min_s": round(min(walls), 6),
            "max_s": round(max(walls), 6),
            "runs_s": [round(w, 6) for w in walls],
            "peak_rss_mib": round(self.rss_bytes / MIB, 2),
        }


def child_env() -> dict[str, str]:
    """The environment of every measured child: the repo on PYTHONPATH, no provider env vars."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MEMBRANE_", "PIPEDREAM_", "PYTHONPROFILE"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH")) if p)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["NO_COLOR"] = "1"
    return env


def run_child(cmd: list[str], *, env: dict[str, str], cwd: str, log: Path,
              expect: tuple[int, ...] = (0,)) -> Sample:
    """Run ``cmd`` to completion; wall time from spawn to reaping, CPU and peak RSS from ``wait4``."""
    with open(log, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd)
        # A blocking wait4 keeps the parent idle; a timer kills a child that hangs.
        killer = threading.Timer(CHILD_TIMEOUT, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode not in expect:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise BenchError(f"{' '.join(cmd)} exited {proc.returncode}:\n{tail}")
    # ru_maxrss is in KiB on Linux, bytes on macOS.
    rss = usage.ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return Sample(wall, rss, proc.returncode, usage.ru_utime + usage.ru_stime)


def instructions(cmd: list[str], *, env: dict[str, str], cwd: str) -> int:
    """Instructions ``cmd`` executes, counted by callgrind: the same figure on every run,
    however busy the machine (``PYTHONHASHSEED=0`` fixes the one source of variation)."""
    proc = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *cmd],
                          env={**env, "PYTHONHASHSEED": "0"}, cwd=cwd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, timeout=CHILD_TIMEOUT)
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode != 0 or not match:
        raise BenchError(f"callgrind of {' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(match.group(1))


# --------------------------------------------------------------------------- server


class Server:
    """``bench/server.py`` in its own process; stops when we close its stdin."""

    def __init__(self, impl: str = "threads") -> None:
        self.impl = impl
        self.proc = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "server.py"), "--port", "0", "--impl", impl,
             "--max-seconds", "7200"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        match = re.fullmatch(r"listening (http://127\.0\.0\.1:(\d+))", line)
        if not match:
            self.stop()
            raise BenchError(f"bench server did not start (said {line!r})")
        self.url = match.group(1)
        self.port = int(match.group(2))

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=5)


def _read_response(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """Read one Content-Length response from a keep-alive socket."""
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0:
            head = bytes(buf[:end])
            match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            length = int(match.group(1)) if match else 0
            if len(buf) >= end + 4 + length:
                body = bytes(buf[end + 4:end + 4 + length])
                del buf[:end + 4 + length]
                return int(head.split(b" ", 2)[1]), body
        chunk = sock.recv(65536)
        if not chunk:
            raise BenchError("bench server closed the connection")
        buf += chunk


def server_requests_per_s(port: int, seconds: float) -> dict[str, Any]:
    """The server's own speed: sequential ``POST /act`` on one keep-alive socket."""
    body = json.dumps({"id": "bench-echo", "input": {"n": 41, "i": 0}}).encode()
    request = (b"POST /act HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer bench\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        sock.sendall(request)
        status, answer = _read_response(sock, buf)
        if status != 200 or json.loads(answer)["output"]["value"] != 42:
            raise BenchError(f"bench server answered {status} {answer[:200]!r}")
        count = 0
        t0 = time.perf_counter()
        deadline = t0 + seconds
        while True:
            for _ in range(50):
                sock.sendall(request)
                _read_response(sock, buf)
            count += 50
            if time.perf_counter() >= deadline:
                break
        elapsed = time.perf_counter() - t0
    return {"requests": count, "seconds": round(elapsed, 3), "requests_per_s": round(count / elapsed, 1),
            "us_per_request": round(elapsed / count * 1e6, 1), "connections": 1,
            "client": "raw socket, keep-alive, sequential"}


# --------------------------------------------------------------------------- runbooks


def _chain_parts(header: list[str], provider: str, prefix: str, n: int, outputs: bool) -> Iterator[str]:
    """``header`` then ``n`` steps of ``provider``, step i's input templated from step i-1's output:
    the runbook's text, a step at a time."""
    yield "".join(f"{line}\n" for line in (*header, "steps:"))
    for i in range(n):
        value = "0" if i == 0 else f'"{{{{ steps.{prefix}{i - 1}.output.value }}}}"'
        yield (f"  - id: {prefix}{i}\n"
               f"    provider: {provider}\n"
               "    dispatch: {id: bench-echo}\n"
               "    input:\n"
               f"      n: {value}\n"
               f"      i: {i}\n")
    if outputs:
        yield f'outputs:\n  last: "{{{{ steps.{prefix}{n - 1}.output.value }}}}"\n'


def membrane_chain_parts(n: int, url: str) -> Iterator[str]:
    """The text of a runbook of ``n`` dependent Membrane steps, a step at a time."""
    return _chain_parts([
        "version: 1",
        f"name: bench-membrane-{n}",
        f"description: {n} dependent Membrane steps, each fed by the previous output.",
        "providers:",
        "  mb:",
        "    type: membrane",
        f"    base_url: {url}",
        "    token: bench-token-6f1c2a9e4b7d4e0f",
    ], "mb", "s", n, outputs=True)


def membrane_chain(n: int, url: str) -> str:
    """A runbook of ``n`` dependent Membrane steps."""
    return "".join(membrane_chain_parts(n, url))


def write_membrane_chain(path: Path, n: int, url: str) -> None:
    """:func:`membrane_chain` written a step at a time: the text of 20,000 steps, built in one
    piece, would raise this process's RSS, which is where every child's peak RSS starts."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(membrane_chain_parts(n, url))


def pipedream_chain(n: int, url: str) -> str:
    """A runbook of ``n`` dependent Pipedream Connect steps (client-credentials token)."""
    return "".join(_chain_parts([
        "version: 1",
        f"name: bench-pipedream-{n}",
        "providers:",
        "  pd:",
        "    type: pipedream",
        f"    base_url: {url}",
        "    project_id: proj_bench",
        "    environment: development",
        "    client_id: bench",
        "    client_secret: bench-secret-0b5d7c1e9a",
        "    external_user_id: bench-user",
    ], "pd", "p", n, outputs=False))


#: Reads a manifest in a child process and prints [status, steps, last value].
_CHECK_MANIFEST = """import json, sys
manifest = json.load(open(sys.argv[1], encoding="utf-8"))
steps = manifest.get("steps") or []
last = (steps[-1].get("output") or {}).get("value") if steps else None
print(json.dumps([manifest.get("run", {}).get("status"), len(steps), last]))"""


def check_manifest(path: Path, n: int) -> None:
    """The run succeeded and the chain carried the value through every step.

    The manifest is parsed in a child process: every child's peak RSS as ``wait4`` reports it
    starts at this process's RSS when it spawns the child (Linux counts the parent's pages until
    ``exec``), and a parsed 20,000-step manifest would add some 60 MiB to this process for good.
    """
    proc = subprocess.run([sys.executable, "-c", _CHECK_MANIFEST, str(path)], capture_output=True, text=True,
                          timeout=CHILD_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise BenchError(f"{path}: not a readable manifest:\n{proc.stderr[-2000:]}")
    status, steps, last = json.loads(proc.stdout)
    if status != "succeeded" or steps != n or last != n:
        raise BenchError(f"{path}: status {status}, {steps} steps, last value {last!r} (wanted {n})")


# --------------------------------------------------------------------------- imports


def imported_modules(cmd: list[str], env: dict[str, str], cwd: str) -> dict[str, Any]:
    """``python -X importtime``: network modules imported, and the costliest top-level imports.

    What ``site`` imports (interpreter start-up, e.g. a ``.pth`` file of this machine) is
    counted apart: the engine does not choose it.
    """
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=CHILD_TIMEOUT, check=False)
    names: set[str] = set()
    startup: set[str] = set()
    site_us = 0
    top: list[tuple[str, int]] = []
    for line in proc.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        name, cumulative, level = match.group(4), int(match.group(2)), len(match.group(3))
        if not site_us:
            startup.add(name)
            if name == "site" and level == 1:
                site_us = cumulative
            continue
        names.add(name)
        if level == 1:
            top.append((name, cumulative))
    top.sort(key=lambda item: -item[1])
    return {
        "network": sorted(n for n in names if n in NETWORK_MODULES or (
            n.startswith("engine.providers.") and n not in ("engine.providers.base", "engine.providers.registry"))),
        "modules": len(names),
        "total_us": sum(us for _, us in top),
        "site_us": site_us,
        "site_network": sorted(n for n in startup if n in NETWORK_MODULES),
        "top_cumulative_us": [[name, us] for name, us in top[:12]],
    }


# --------------------------------------------------------------------------- measuring


def engine_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "engine", *args]


#: ``run`` checks each catalog action's input against the action's definition before step 1 (a
#: GET per action, on by default); the floor sends no such request (and the bench server serves
#: no definitions), so every timed ``run`` passes this: the same requests on both sides.
NO_REMOTE_CHECK = "--no-remote-check"


def interleaved(series: list[Series], repeat: int, *, env: dict[str, str], cwd: str, log: Path,
                progress: str) -> None:
    """``repeat`` rounds; each round runs every series once, so drift hits them all alike."""
    for r in range(repeat):
        for s in series:
            s.samples.append(run_child(s.cmd, env=env, cwd=cwd, log=log))
        _progress(f"{progress}: round {r + 1}/{repeat}")


def _progress(message: str) -> None:
    if sys.stderr.isatty():
        sys.stderr.write(f"\r\x1b[K{message}")
        sys.stderr.flush()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    env = child_env()
    results: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "engine_commit": _git_commit(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": sys.argv[1:],
            "repeat": args.repeat,
            "sizes": list(args.sizes),
            "validate_sizes": list(args.validate_sizes),
            "warmup": not args.no_warmup,
            "loadavg_start": _loadavg(),
        },
        "server": {},
        "chains": {},
        "pipedream": None,
        "commands": {},
        "imports": {},
        "instructions": None,
        "memory": None,
    }
    with tempfile.TemporaryDirectory(prefix="runbook-bench-") as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "child.log"
        server = Server(args.server_impl)
        try:
            results["server"] = {"url": server.url, "impl": server.impl,
                                 **server_requests_per_s(server.port, args.rps_seconds)}
            _progress(f"server: {results['server']['requests_per_s']:.0f} req/s")

            for n in args.sizes:
                rb = tmp / f"chain-{n}.yml"
                rb.write_text(membrane_chain(n, server.url), encoding="utf-8")
                manifest = tmp / f"chain-{n}.manifest.json"
                floor = Series(f"floor({n})", [sys.executable, str(BENCH_DIR / "floor.py"), "membrane",
                                               server.url, str(n)])
                run = Series(f"run({n})", engine_cmd("run", str(rb), NO_REMOTE_CHECK, "--manifest", str(manifest)))
                # Warm-up (bytecode caches, page cache) and the correctness check of both sides.
                run_child(run.cmd, env=env, cwd=tmp_name, log=log)
                check_manifest(manifest, n)
                run_child(floor.cmd, env=env, cwd=tmp_name, log=log)
                if log.read_text().strip() != str(n):
                    raise BenchError(f"floor({n}) printed {log.read_text()[:200]!r}, wanted {n}")
                interleaved([floor, run], args.repeat, env=env, cwd=tmp_name, log=log, progress=f"N={n}")
                results["chains"][str(n)] = {
                    "steps": n,
                    "floor": floor.to_json(),
                    "runbook": run.to_json(),
                    "ratio": round(run.median_s / floor.median_s, 4),
                    "overhead_s": round(run.median_s - floor.median_s, 6),
                }

            if args.instructions:
                results["instructions"] = _instructions(args, server.url, env, tmp)

            if args.pipedream_size > 0:
                results["pipedream"] = _pipedream(args, server.url, env, tmp, log)

            if args.memory:
                results["memory"] = _memory(args, server.url, env, tmp, log)
        finally:
            server.stop()

        # The interpreter alone: what every row above pays before its first import.
        commands: list[Series] = [Series("python -c pass", [sys.executable, "-c", "pass"]),
                                  Series("--help", engine_cmd("--help"))]
        for n in args.validate_sizes:
            rb = tmp / f"validate-{n}.yml"
            rb.write_text(membrane_chain(n, "http://127.0.0.1:9"), encoding="utf-8")
            commands.append(Series(f"validate({n})", engine_cmd("validate", str(rb))))
        if not args.no_warmup:
            for s in commands:
                run_child(s.cmd, env=env, cwd=tmp_name, log=log)
        interleaved(commands, args.repeat, env=env, cwd=tmp_name, log=log, progress="commands")
        for s in commands:
            results["commands"][s.label] = s.to_json()

        results["imports"]["--help"] = imported_modules(["-m", "engine", "--help"], env, tmp_name)
        if args.validate_sizes:
            small = min(args.validate_sizes)
            results["imports"][f"validate({small})"] = imported_modules(
                ["-m", "engine", "validate", str(tmp / f"validate-{small}.yml")], env, tmp_name)
    _progress("")
    results["meta"]["loadavg_end"] = _loadavg()
    results["metrics"] = derive(results)
    results["targets"] = targets(results)
    return results


def _memory(args: argparse.Namespace, url: str, env: dict[str, str], tmp: Path, log: Path) -> dict[str, Any]:
    """Peak RSS of ``runbook run`` of two chain lengths (one run each: RSS hardly varies, and the
    long chain takes seconds), and what each step beyond the shorter one adds to it."""
    runs: dict[str, Any] = {}
    for n in args.memory_sizes:
        rb = tmp / f"memory-{n}.yml"
        write_membrane_chain(rb, n, url)
        manifest = tmp / f"memory-{n}.manifest.json"
        _progress(f"memory: N={n}")
        cmd = engine_cmd("run", str(rb), NO_REMOTE_CHECK, "--manifest", str(manifest))
        sample = run_child(cmd, env=env, cwd=str(tmp), log=log)
        check_manifest(manifest, n)
        runs[str(n)] = {"steps": n, "cmd": cmd, "wall_s": round(sample.wall_s, 4),
                        "peak_rss_mib": round(sample.rss_bytes / MIB, 2), "peak_rss_bytes": sample.rss_bytes,
                        "manifest_mib": round(manifest.stat().st_size / MIB, 2)}
        manifest.unlink()
    lo, hi = (runs[str(n)] for n in args.memory_sizes)
    per_step = (hi["peak_rss_bytes"] - lo["peak_rss_bytes"]) / (hi["steps"] - lo["steps"])
    return {"sizes": list(args.memory_sizes), "runs": runs, "retained_bytes_per_step": round(per_step, 1),
            "retained_kib_per_step": round(per_step / 1024, 3)}


INSTRUCTION_SIZES = (20, 200)


def _instructions(args: argparse.Namespace, url: str, env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """Both sides of the N = 20 and 200 chains once under callgrind: the targets' figures in
    instructions, which a busy or throttled machine does not change."""
    if shutil.which("valgrind") is None:
        return {"supported": False, "reason": "valgrind not found"}
    rows: dict[str, Any] = {}
    for n in INSTRUCTION_SIZES:
        rb = tmp / f"chain-{n}.yml"
        rb.write_text(membrane_chain(n, url), encoding="utf-8")
        _progress(f"instructions: N={n}")
        floor = instructions([sys.executable, str(BENCH_DIR / "floor.py"), "membrane", url, str(n)],
                             env=env, cwd=str(tmp))
        run = instructions(engine_cmd("run", str(rb), NO_REMOTE_CHECK, "--manifest",
                                      str(tmp / "callgrind.manifest.json")), env=env, cwd=str(tmp))
        rows[str(n)] = {"floor": floor, "runbook": run, "ratio": round(run / floor, 4)}
    lo, hi = (rows[str(n)] for n in INSTRUCTION_SIZES)
    steps = INSTRUCTION_SIZES[1] - INSTRUCTION_SIZES[0]
    floor_step = (hi["floor"] - lo["floor"]) / steps
    run_step = (hi["runbook"] - lo["runbook"]) / steps
    return {"supported": True, "chains": rows, "floor_per_step": round(floor_step),
            "runbook_per_step": round(run_step), "overhead_per_step": round(run_step - floor_step),
            "overhead_per_step_vs_floor_step": round((run_step - floor_step) / floor_step, 4)}


def _pipedream(args: argparse.Namespace, url: str, env: dict[str, str], tmp: Path,
               log: Path) -> dict[str, Any]:
    n = args.pipedream_size
    rb = tmp / f"pipedream-{n}.yml"
    rb.write_text(pipedream_chain(n, url), encoding="utf-8")
    manifest = tmp / f"pipedream-{n}.manifest.json"
    floor = Series(f"pd floor({n})", [sys.executable, str(BENCH_DIR / "floor.py"), "pipedream", url, str(n)])
    run = Series(f"pd run({n})", engine_cmd("run", str(rb), NO_REMOTE_CHECK, "--manifest", str(manifest)))
    try:
        run_child(engine_cmd("validate", str(rb)), env=env, cwd=str(tmp), log=log)
    except BenchError as exc:
        lines = [line for line in str(exc).splitlines()[1:] if line.strip()]
        reason = lines[0].split(": ", 1)[-1] if lines else "validate failed"
        return {"steps": n, "supported": False, "reason": reason}
    try:
        run_child(run.cmd, env=env, cwd=str(tmp), log=log)
        check_manifest(manifest, n)
        run_child(floor.cmd, env=env, cwd=str(tmp), log=log)
        interleaved([floor, run], args.repeat, env=env, cwd=str(tmp), log=log, progress=f"pipedream N={n}")
    except BenchError as exc:
        # Optional row: an engine whose pipedream provider fails does not stop the benchmark.
        lines = [line for line in str(exc).splitlines()[1:] if line.strip()]
        return {"steps": n, "supported": False, "reason": "run failed: " + (lines[0] if lines else str(exc))}
    return {"steps": n, "supported": True, "floor": floor.to_json(), "runbook": run.to_json(),
            "ratio": round(run.median_s / floor.median_s, 4)}


def _loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), *args],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def _git_commit() -> str | None:
    """The short commit, with ``+dirty`` when engine/ differs from it."""
    commit = _git("rev-parse", "--short", "HEAD")
    if commit and _git("status", "--porcelain", "--", "engine", "schemas"):
        commit += "+dirty"
    return commit


# --------------------------------------------------------------------------- figures


def derive(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures, from the medians; None where a needed size was not run."""
    chains = results["chains"]

    def med(n: int, side: str) -> float | None:
        chain = chains.get(str(n))
        return chain[side]["median_s"] if chain else None

    def per_step(lo: int, hi: int, side: str) -> float | None:
        a, b = med(lo, side), med(hi, side)
        return (b - a) / (hi - lo) if a is not None and b is not None else None

    def overhead_per_step(lo: int, hi: int) -> float | None:
        r, f = per_step(lo, hi, "runbook"), per_step(lo, hi, "floor")
        return r - f if r is not None and f is not None else None

    def ms(value: float | None) -> float | None:
        return round(value * 1000, 4) if value is not None else None

    def slope(side: str) -> float | None:
        """Least-squares seconds per step over every sample of every size (steadier than two medians)."""
        xs = [chain["steps"] for chain in chains.values() for _ in chain[side]["runs_s"]]
        ys = [t for chain in chains.values() for t in chain[side]["runs_s"]]
        if len(set(xs)) < 2:
            return None
        return statistics.linear_regression(xs, ys).slope

    fit_run, fit_floor = slope("runbook"), slope("floor")
    run_20_200 = per_step(20, 200, "runbook")
    run_200_2000 = per_step(200, 2000, "runbook")
    commands = results["commands"]
    help_s = commands.get("--help", {}).get("median_s")
    v20 = commands.get("validate(20)", {}).get("median_s")
    v5000 = commands.get("validate(5000)", {}).get("median_s")
    rss2000 = chains.get("2000", {}).get("runbook", {}).get("peak_rss_mib")
    memory = results.get("memory") or {}
    rss20000 = memory.get("runs", {}).get("20000", {}).get("peak_rss_mib")
    network = sorted({m for v in results["imports"].values() for m in v["network"]})
    return {
        "server_us_per_request": results["server"].get("us_per_request"),
        "floor_per_step_ms_20_200": ms(per_step(20, 200, "floor")),
        "runbook_per_step_ms_20_200": ms(run_20_200),
        "per_step_overhead_ms": ms(overhead_per_step(20, 200)),
        "floor_per_step_ms_200_2000": ms(per_step(200, 2000, "floor")),
        "runbook_per_step_ms_200_2000": ms(run_200_2000),
        "per_step_overhead_ms_200_2000": ms(overhead_per_step(200, 2000)),
        "per_step_overhead_ms_fit": ms(fit_run - fit_floor if fit_run is not None and fit_floor is not None
                                       else None),
        "linearity_200_2000_vs_20_200": (round(run_200_2000 / run_20_200, 4)
                                         if run_20_200 and run_200_2000 is not None else None),
        "startup_overhead_ms_n1": ms(chains["1"]["overhead_s"]) if "1" in chains else None,
        "run200_ratio": chains["200"]["ratio"] if "200" in chains else None,
        "help_ms": ms(help_s),
        "validate20_ms": ms(v20),
        "validate5000_s": round(v5000, 4) if v5000 is not None else None,
        "run2000_peak_rss_mib": rss2000,
        "run20000_peak_rss_mib": rss20000,
        "retained_kib_per_step": memory.get("retained_kib_per_step"),
        "network_modules_imported_by_help_or_validate": network,
    }


#: (metric key, label, target, unit, how to compare)
TARGETS: tuple[tuple[str, str, float, str, str], ...] = (
    ("per_step_overhead_ms", "per-step overhead over the floor (N 20->200)", 0.3, "ms", "<="),
    ("run200_ratio", "run(200) / floor(200)", 1.3, "x", "<="),
    ("help_ms", "runbook --help", 100.0, "ms", "<="),
    ("validate20_ms", "runbook validate, 20 steps", 150.0, "ms", "<="),
    ("validate5000_s", "runbook validate, 5000 steps", 1.0, "s", "<="),
    ("run2000_peak_rss_mib", "peak RSS of run(2000)", 80.0, "MiB", "<="),
    ("run20000_peak_rss_mib", "peak RSS of run(20000)", 110.0, "MiB", "<="),
    ("retained_kib_per_step", "retained per step (RSS, run 2000->20000)", 4.0, "KiB", "<="),
    ("linearity_200_2000_vs_20_200", "per-step time 200->2000 / 20->200 (flat = 1)", 1.2, "x", "<="),
)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    metrics = results["metrics"]
    rows = []
    for key, label, target, unit, op in TARGETS:
        value = metrics.get(key)
        rows.append({"metric": key, "label": label, "value": value, "target": target, "unit": unit,
                     "op": op, "met": None if value is None else value <= target})
    network = metrics["network_modules_imported_by_help_or_validate"]
    rows.append({"metric": "network_modules_imported_by_help_or_validate",
                 "label": "network modules imported by --help / validate", "value": network,
                 "target": [], "unit": "", "op": "==",
                 "met": None if not results["imports"] else not network})
    return rows


# --------------------------------------------------------------------------- table


def _fmt_s(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.3f} s"


def _fmt_value(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(value) or "none"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "ms":
        return f"{value:.3f} ms" if value < 10 else f"{value:.0f} ms"
    if unit == "s":
        return f"{value:.3f} s"
    return f"{value:.1f} {unit}"


def table(results: dict[str, Any]) -> str:
    meta, server, metrics = results["meta"], results["server"], results["metrics"]
    out = [
        f"runbook bench  (engine {meta['engine_commit']}, Python {meta['python']}, {meta['cpus']} CPUs, "
        f"median of {meta['repeat']} runs each, whole processes)",
        f"server: bench/server.py ({server['impl']}, own process) {server['requests_per_s']:,.0f} req/s = "
        f"{server['us_per_request']:.0f} us/request ({server['client']}, {server['seconds']} s)",
    ]
    # The load at the end counts the benchmark itself (about one busy core); the start does not.
    load = meta.get("loadavg_start")
    if load is not None and load > 0.5 * (meta["cpus"] or 1) - 0.25:
        out.append(f"warning: load average {load} with {meta['cpus']} CPUs before the start: other work may share "
                   "the machine, so the figures are noisy (use --repeat 9 or more, or a quiet machine)")
    out += [
        "",
        f"{'membrane chain':<16}{'floor (httpx)':>14}{'runbook run':>14}{'ratio':>8}{'run-floor':>12}"
        f"{'floor/step':>12}{'run/step':>11}{'floor RSS':>11}{'run RSS':>10}",
    ]
    for key, chain in results["chains"].items():
        n = chain["steps"]
        f, r = chain["floor"], chain["runbook"]
        out.append(
            f"{'N=' + key:<16}{_fmt_s(f['median_s']):>14}{_fmt_s(r['median_s']):>14}{chain['ratio']:>7.2f}x"
            f"{chain['overhead_s'] * 1000:>9.0f} ms"
            f"{f['median_s'] / n * 1000:>9.2f} ms{r['median_s'] / n * 1000:>8.2f} ms"
            f"{f['peak_rss_mib']:>7.1f} MiB{r['peak_rss_mib']:>6.1f} MiB"
        )
    pd = results.get("pipedream")
    if pd:
        if pd.get("supported"):
            out.append(
                f"{'pipedream N=' + str(pd['steps']):<16}{_fmt_s(pd['floor']['median_s']):>14}"
                f"{_fmt_s(pd['runbook']['median_s']):>14}{pd['ratio']:>7.2f}x"
                f"{(pd['runbook']['median_s'] - pd['floor']['median_s']) * 1000:>9.0f} ms"
            )
        else:
            out.append(f"pipedream N={pd['steps']}: not run ({pd['reason']})")
    counted = results.get("instructions")
    if counted and counted.get("supported"):
        out += ["", "instructions (callgrind, PYTHONHASHSEED=0: the same on every run, whatever the machine does)",
                f"{'membrane chain':<16}{'floor':>14}{'runbook run':>14}{'ratio':>8}"]
        for key, row in counted["chains"].items():
            out.append(f"{'N=' + key:<16}{row['floor'] / 1e6:>12.1f} M{row['runbook'] / 1e6:>12.1f} M"
                       f"{row['ratio']:>7.2f}x")
        out.append(f"per step: floor {counted['floor_per_step'] / 1e6:.3f} M, runbook "
                   f"{counted['runbook_per_step'] / 1e6:.3f} M, overhead {counted['overhead_per_step'] / 1e6:.3f} M "
                   f"= {counted['overhead_per_step_vs_floor_step']:.0%} of the floor's step")
    elif counted:
        out.append(f"instructions: not counted ({counted['reason']})")
    memory = results.get("memory")
    if memory:
        lo, hi = memory["sizes"]
        out += ["", f"{'memory (one run each)':<24}{'runbook run':>14}{'peak RSS':>12}{'manifest':>12}"]
        for key, row in memory["runs"].items():
            out.append(f"{'N=' + key:<24}{_fmt_s(row['wall_s']):>14}{row['peak_rss_mib']:>8.1f} MiB"
                       f"{row['manifest_mib']:>8.1f} MiB")
        out.append(f"retained per step = (RSS({hi}) - RSS({lo})) / {hi - lo} = "
                   f"{memory['retained_kib_per_step']:.2f} KiB (bench/memory_profile.py: where it goes)")
    out += ["", f"{'command':<30}{'median':>10}{'min':>10}{'max':>10}{'peak RSS':>12}"]
    for label, c in results["commands"].items():
        name = label if label.startswith("python") else "runbook " + label
        out.append(f"{name:<30}{_fmt_s(c['median_s']):>10}{_fmt_s(c['min_s']):>10}"
                   f"{_fmt_s(c['max_s']):>10}{c['peak_rss_mib']:>8.1f} MiB")
    for label, imports in results["imports"].items():
        top = ", ".join(f"{name} {us / 1000:.0f} ms" for name, us in imports["top_cumulative_us"][:4])
        site = ", ".join(imports["site_network"])
        out.append(f"imports of {label} (-X importtime): {imports['modules']} modules, {top}; network: "
                   f"{', '.join(imports['network']) or 'none'}; interpreter start-up (site) "
                   f"{imports['site_us'] / 1000:.0f} ms{f' (imports {site} via a .pth)' if site else ''}")
    out += ["", "per step (ms, from the medians):  " + "  ".join(
        f"{label} {_fmt_value(metrics[key], 'ms')}" for key, label in (
            ("floor_per_step_ms_20_200", "floor 20->200"),
            ("runbook_per_step_ms_20_200", "run 20->200"),
            ("floor_per_step_ms_200_2000", "floor 200->2000"),
            ("runbook_per_step_ms_200_2000", "run 200->2000"),
            ("per_step_overhead_ms_200_2000", "overhead 200->2000"),
            ("per_step_overhead_ms_fit", "overhead (fit, all N)"),
        ))]
    out += ["", f"{'target':<50}{'measured':>14}{'target':>14}  met"]
    for row in results["targets"]:
        target = "none" if row["target"] == [] else f"{row['op']} {_fmt_value(row['target'], row['unit'])}"
        met = {True: "yes", False: "NO", None: "n/a"}[row["met"]]
        out.append(f"{row['label']:<50}{_fmt_value(row['value'], row['unit']):>14}{target:>14}  {met}")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of integers: {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError("sizes are at least 1")
    return sizes


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run.py", description="runbook run vs a raw httpx loop.")
    parser.add_argument("--quick", action="store_true", help="N = 1,20,200 and 3 runs each")
    parser.add_argument("--sizes", type=_sizes, help="chain lengths (default 1,20,200,2000)")
    parser.add_argument("--validate-sizes", type=_sizes, help="validate these (default 20,5000)")
    parser.add_argument("--repeat", type=int, help="timed runs per command (default 5; 3 with --quick)")
    parser.add_argument("--pipedream-size", type=int, default=None,
                        help="also run a Pipedream chain of this length (default 200; 0: skip)")
    parser.add_argument("--rps-seconds", type=float, default=1.0, help="how long to measure the server")
    parser.add_argument("--server-impl", choices=("threads", "asyncio"), default="threads",
                        help="how bench/server.py serves (default: a blocking thread per connection)")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions of the N = 20 and 200 chains with callgrind (about a minute)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=None,
                        help="also measure peak RSS of run(2000) and run(20000) and the memory retained per step "
                             "(about 15 s; on by default in the full run, off with --quick or --sizes)")
    parser.add_argument("--memory-sizes", type=_sizes, default=DEFAULT_MEMORY_SIZES,
                        help="the two chain lengths of --memory (default 2000,20000)")
    parser.add_argument("--no-warmup", action="store_true", help="skip the untimed warm-up runs of commands")
    parser.add_argument("--out", default=str(BENCH_DIR / "results" / "latest.json"), help="JSON results")
    args = parser.parse_args(argv)
    if args.memory is None:  # the full run: neither --quick nor chosen --sizes
        args.memory = not args.quick and args.sizes is None
    if len(args.memory_sizes) != 2 or args.memory_sizes[0] >= args.memory_sizes[1]:
        parser.error("--memory-sizes takes two lengths, the shorter first (e.g. 2000,20000)")
    args.sizes = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    args.validate_sizes = args.validate_sizes if args.validate_sizes is not None else DEFAULT_VALIDATE_SIZES
    args.repeat = args.repeat or (3 if args.quick else 5)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.pipedream_size is None:
        args.pipedream_size = 200 if not args.quick else 0
    return args


def run_bench(args: argparse.Namespace, measure: Callable[[argparse.Namespace], dict[str, Any]],
              table: Callable[[dict[str, Any]], str]) -> int:
    """Measure, print the table, write the results to ``args.out``; 1 if the bench failed."""
    try:
        results = measure(args)
    except BenchError as exc:
        sys.stderr.write(f"bench failed: {exc}\n")
        return 1
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_bench(parse_args(argv), measure, table)


if __name__ == "__main__":
    sys.exit(main())
