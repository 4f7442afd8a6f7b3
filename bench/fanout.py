"""The fan-out benchmark (issue 13): one ``for_each`` step side by side with the floors.

Run it from a fresh clone, with or without the ``runbook`` console script installed::

    python bench/fanout.py                          # full: 500 items at C=50 (5 runs each), scale, rate limit
    python bench/fanout.py --quick                  # smaller sizes, 3 runs each
    python bench/fanout.py --floors-only --quick    # the server and the floors only (no runbook)
    python bench/fanout.py --repeat 9 --out bench/results/fanout.json

What it does, all in one invocation:

1. Starts ``bench/server.py --delay-ms 20`` in its own process (every answer 20 ms after its
   request, as a remote API would answer, without holding up other connections) and loads it
   with C keep-alive raw-socket clients from this process: C clients can get at most
   C / 0.02 s requests/s, and the server should give nearly all of it (with its own CPU per
   request, read from ``/proc``, far below 20 ms / C). The full run does this for both
   server implementations (``--impl threads`` and ``asyncio``) at C = 50 and 100.
2. Fan-out, ``--items`` (500) at ``--concurrency`` (50): a generated runbook whose one step
   has ``for_each: "{{ vars.users }}"`` over the users of a ``--vars-file`` (a JSON file in a
   temporary directory), timed as a whole process (``python -m engine run FILE --vars-file F
   --manifest M``, interpreter start included), against floors run the same way
   (``bench/floor.py``, reading the same file and sending the same ``POST /act`` bodies):
   (a) ``fanout-threads``: C threads, one ``httpx.Client`` each; (b) ``fanout-raw``: plain
   asyncio, C keep-alive stream connections, no HTTP library (httpx's ``AsyncClient`` costs
   about 5 ms of CPU per request at C = 50 in its connection pool, so it would measure httpx,
   not asyncio; it is shown as ``fanout-asyncio``), and for reference ``fanout-shared``: C
   threads sharing one ``httpx.Client``. Each command also runs with 1 item, which gives its
   fixed cost (start-up, imports). Medians of ``--repeat`` interleaved runs, after one untimed
   warm-up run that also checks every item was answered (the manifest, for the runbook).
   CPU is the child's user + system time from ``os.wait4`` (the same as
   ``getrusage(RUSAGE_CHILDREN)`` deltas, per child).
3. Scale: the runbook (and floor (a)) with ``--scale-sizes`` (2,000 and 20,000) items at
   ``--scale-concurrency`` (100), ``--scale-delay-ms`` (0): peak RSS, and the time per item,
   (wall(N) - wall(1 item)) / (N - 1), of the two sizes.
4. Rate limit: ``--rate-items`` (1,000) items at C = 50, 20 ms delay, through a provider with
   ``rate_limit: {requests: 100, per: 1s}``, against a server started with ``--log-times``:
   achieved rate = items / (last arrival - first arrival), as the server saw them. The floor
   (a) with an even-spacing gate of the same rate is measured the same way (how close a
   correct limiter gets).
5. Prints the figures and a target table (measured, target, met) and writes JSON
   (default ``bench/results/fanout.json``).

Targets: run / floor (a) <= 1.5x, run / floor (b) <= 2.5x, engine CPU per item
(CPU(run) - CPU(floor a)) / items <= 0.5 ms, peak RSS of 20,000 items <= 200 MiB, time per
item 20,000 vs 2,000 within 15%, achieved rate within 5% of 100/s.

Until the engine supports ``for_each``, the runbook rows say why they did not run and the
floors are measured all the same; ``--floors-only`` skips the runbook altogether. The
benchmark only talks to 127.0.0.1, and every child process is bounded in time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:  # run as a script, bench/ is already there; imported, it may not be
    sys.path.insert(0, str(BENCH_DIR))

import run as chain_bench  # noqa: E402 - bench/ is not a package: the chain benchmark's helpers

BenchError = chain_bench.BenchError
Sample = chain_bench.Sample  # wall, peak RSS, exit code, CPU of one whole-process run
run_child = chain_bench.run_child
CHILD_TIMEOUT = chain_bench.CHILD_TIMEOUT
MIB = chain_bench.MIB
TOKEN = "test-token-123456"  # what floor.py sends too
FLOORS = ("threads", "raw", "asyncio", "shared")
#: floor label -> (floor.py kind, what it is)
FLOOR_KINDS = {
    "threads": ("fanout-threads", "floor (a): threads, an httpx.Client each"),
    "raw": ("fanout-raw", "floor (b): asyncio streams"),
    "asyncio": ("fanout-asyncio", "httpx.AsyncClient + Semaphore(C)"),
    "shared": ("fanout-shared", "threads, one shared httpx.Client"),
}
LABEL_WIDTH = 42
FLOOR_A, FLOOR_B = "threads", "raw"


# --------------------------------------------------------------------------- processes


@dataclass
class Series:
    """Repeated runs of one command."""

    label: str
    cmd: list[str]
    items: int
    samples: list[Sample] = field(default_factory=list)

    @property
    def median_s(self) -> float:
        return statistics.median(s.wall_s for s in self.samples)

    @property
    def cpu_s(self) -> float:
        return statistics.median(s.cpu_s for s in self.samples)

    def to_json(self) -> dict[str, Any]:
        walls = [s.wall_s for s in self.samples]
        return {
            "cmd": self.cmd,
            "items": self.items,
            "runs": len(walls),
            "median_s": round(self.median_s, 6),
            "min_s": round(min(walls), 6),
            "max_s": round(max(walls), 6),
            "runs_s": [round(w, 6) for w in walls],
            "cpu_median_s": round(self.cpu_s, 6),
            "cpu_runs_s": [round(s.cpu_s, 6) for s in self.samples],
            "peak_rss_mib": round(max(s.rss_bytes for s in self.samples) / MIB, 2),
        }


def interleaved(series: list[Series], repeat: int, *, env: dict[str, str], cwd: str, log: Path,
                progress: str) -> None:
    """``repeat`` rounds; each round runs every series once, so drift hits them all alike."""
    for r in range(repeat):
        for s in series:
            s.samples.append(run_child(s.cmd, env=env, cwd=cwd, log=log))
        chain_bench._progress(f"{progress}: round {r + 1}/{repeat}")


# --------------------------------------------------------------------------- server


class Server:
    """``bench/server.py`` with a delay (and optionally an arrival log) in its own process;
    stops when we close its stdin."""

    def __init__(self, impl: str, delay_ms: float, log_times: Path | None = None) -> None:
        self.impl = impl
        self.delay_ms = delay_ms
        self.log_times = log_times
        cmd = [sys.executable, str(BENCH_DIR / "server.py"), "--port", "0", "--impl", impl,
               "--max-seconds", "7200", "--delay-ms", f"{delay_ms:g}"]
        if log_times is not None:
            cmd += ["--log-times", str(log_times)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        match = re.fullmatch(r"listening (http://127\.0\.0\.1:(\d+))", line)
        if not match:
            self.stop()
            raise BenchError(f"bench server did not start (said {line!r})")
        self.url = match.group(1)
        self.port = int(match.group(2))

    def cpu_s(self) -> float | None:
        """The server's CPU seconds so far (user + system, from ``/proc``; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def arrivals(self) -> list[float]:
        """The arrival times the server logged (after :meth:`stop`), sorted."""
        if self.log_times is None:
            return []
        self.stop()
        return sorted(float(line) for line in self.log_times.read_text(encoding="utf-8").split())


async def _load(port: int, clients: int, seconds: float) -> tuple[int, float]:
    """``clients`` keep-alive connections, each sending ``POST /act`` as soon as it has the
    previous answer; the answers completed in a window of ``seconds`` after all connected."""
    body = json.dumps({"key": "invite-user", "input": {"email": "load@example.com"}}).encode()
    request = (b"POST /act HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n"
               b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (TOKEN.encode(), len(body), body))
    start = asyncio.Event()
    window: list[float] = []

    async def client() -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        count = 0
        try:
            await start.wait()
            t0, t1 = window
            while True:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                match = re.search(rb"(?im)^content-length:\s*(\d+)", head)
                await reader.readexactly(int(match.group(1)) if match else 0)
                now = time.perf_counter()
                if now > t1:
                    return count
                if not head.startswith(b"HTTP/1.1 200"):
                    raise BenchError(f"bench server answered {head[:80]!r}")
                count += now >= t0
        finally:
            writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0.2)  # connect, and let the server start a thread per connection
    t0 = time.perf_counter() + 0.1  # a warm-up tenth of a second before the window opens
    window[:] = [t0, t0 + seconds]
    start.set()
    counts = await asyncio.gather(*tasks)
    return sum(counts), seconds


def server_check(impl: str, clients: int, delay_ms: float, seconds: float) -> dict[str, Any]:
    """Requests/s ``clients`` sequential keep-alive clients get from a server of ``impl`` that
    answers after ``delay_ms``, next to the most they could get, and the server's CPU per request."""
    with Server(impl, delay_ms) as server:
        cpu0 = server.cpu_s()
        count, elapsed = asyncio.run(_load(server.port, clients, seconds))
        cpu1 = server.cpu_s()
    ideal = clients / (delay_ms / 1000) if delay_ms else None
    per_s = count / elapsed
    cpu_us = (cpu1 - cpu0) / count * 1e6 if cpu0 is not None and cpu1 is not None and count else None
    return {"impl": impl, "clients": clients, "delay_ms": delay_ms, "seconds": round(elapsed, 3),
            "requests": count, "requests_per_s": round(per_s, 1),
            "ideal_per_s": round(ideal, 1) if ideal else None,
            "efficiency": round(per_s / ideal, 4) if ideal else None,
            "server_cpu_us_per_request": round(cpu_us, 1) if cpu_us is not None else None,
            "client": "raw asyncio streams in the benchmark process"}


# --------------------------------------------------------------------------- runbooks and data


def write_users(path: Path, n: int) -> None:
    """The vars file: ``{"users": [{"email": "user000001@example.com"}, ...]}``, written a user at a time."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write('{"users": [')
        fh.writelines(f'{"," if i else ""}\n  {{"email": "user{i:06d}@example.com"}}' for i in range(n))
        fh.write("\n]}\n")


def fanout_runbook(url: str, items: int, concurrency: int, rate: float | None = None) -> str:
    """One Membrane step over ``vars.users``, ``concurrency`` items in flight; with ``rate``, the
    provider has ``rate_limit: {requests: rate, per: 1s}``."""
    limit = [f"    rate_limit: {{requests: {rate:g}, per: 1s}}"] if rate else []
    return "\n".join([
        "version: 1",
        f"name: bench-fanout-{items}",
        f"description: {items} items of one for_each step, {concurrency} in flight.",
        "vars:",
        "  users: []",
        "providers:",
        "  bench:",
        "    type: membrane",
        f'    base_url: "{url}"',
        f"    token: {TOKEN}",
        *limit,
        "steps:",
        "  - id: invite",
        "    provider: bench",
        '    for_each: "{{ vars.users }}"',
        f"    concurrency: {concurrency}",
        "    dispatch: {key: invite-user}",
        '    input: {email: "{{ item.email }}"}',
        "",
    ])


#: Reads a manifest in a child process (see run.py's check_manifest: this process stays small)
#: and prints [run status, step status, items, items succeeded with their user's email echoed].
_CHECK_MANIFEST = """import json, sys
manifest = json.load(open(sys.argv[1], encoding="utf-8"))
step = (manifest.get("steps") or [{}])[0]
items = step.get("items") or []
want = {f"user{i:06d}@example.com" for i in range(int(sys.argv[2]))}
ok = {(item.get("output") or {}).get("email") for item in items if item.get("status") == "succeeded"}
print(json.dumps([manifest.get("run", {}).get("status"), step.get("status"), len(items), len(ok & want)]))"""


def check_manifest(path: Path, n: int) -> None:
    """The run succeeded, and each of its ``n`` items got its own email back."""
    proc = subprocess.run([sys.executable, "-c", _CHECK_MANIFEST, str(path), str(n)], capture_output=True,
                          text=True, timeout=CHILD_TIMEOUT, check=False)
    if proc.returncode != 0:
        raise BenchError(f"{path}: not a readable manifest:\n{proc.stderr[-2000:]}")
    run_status, step_status, items, ok = json.loads(proc.stdout)
    if run_status != "succeeded" or step_status != "succeeded" or items != n or ok != n:
        raise BenchError(f"{path}: run {run_status}, step {step_status}, {items} item records, {ok} of {n} "
                         "items answered with their email")


def check_floor(log: Path, n: int, label: str) -> None:
    said = log.read_text(encoding="utf-8", errors="replace").strip()
    if said != f"{n} {n}":
        raise BenchError(f"floor {label}({n}) printed {said[:300]!r}, wanted '{n} {n}'")


def _first_error(exc: BenchError) -> str:
    lines = [line for line in str(exc).splitlines()[1:] if line.strip() and not line.startswith("Traceback")]
    return "; ".join(lines[:3]) if lines else str(exc).splitlines()[0]


class Side:
    """The commands of one fan-out setting (server, concurrency, rate limit): the runbook's and
    the floors', for any number of items (each size's vars file written once, in ``tmp``)."""

    def __init__(self, url: str, tmp: Path, concurrency: int, rate: float | None = None) -> None:
        self.url, self.tmp, self.concurrency, self.rate = url, tmp, concurrency, rate

    def users(self, n: int) -> Path:
        path = self.tmp / f"users-{n}.json"
        if not path.exists():
            write_users(path, n)
        return path

    def runbook(self, n: int) -> tuple[Series, Path]:
        tag = f"{n}-c{self.concurrency}" + (f"-r{self.rate:g}" if self.rate else "")
        rb = self.tmp / f"fanout-{tag}.yml"
        rb.write_text(fanout_runbook(self.url, n, self.concurrency, self.rate), encoding="utf-8")
        manifest = self.tmp / f"fanout-{tag}.manifest.json"
        cmd = chain_bench.engine_cmd("run", str(rb), chain_bench.NO_REMOTE_CHECK, "--vars-file", str(self.users(n)),
                                     "--manifest", str(manifest))
        return Series(f"runbook({n})", cmd, n), manifest

    def floor(self, label: str, n: int) -> Series:
        cmd = [sys.executable, str(BENCH_DIR / "floor.py"), FLOOR_KINDS[label][0], self.url, str(self.users(n)),
               str(self.concurrency)]
        if self.rate:
            cmd.append(f"{self.rate:g}")
        return Series(f"{label}({n})", cmd, n)


def warm_runbook(series: Series, manifest: Path, *, env: dict[str, str], tmp: Path, log: Path) -> str | None:
    """The untimed first run and its check; the reason when the engine cannot run it."""
    try:
        run_child(series.cmd, env=env, cwd=str(tmp), log=log)
    except BenchError as exc:
        return _first_error(exc).replace(f"{tmp}{os.sep}", "")
    check_manifest(manifest, series.items)
    return None


# --------------------------------------------------------------------------- measuring


def measure_fanout(args: argparse.Namespace, url: str, env: dict[str, str], tmp: Path, log: Path,
                   results: dict[str, Any]) -> None:
    """Runbook and floors, ``args.items`` and 1 item each, interleaved."""
    side = Side(url, tmp, args.concurrency)
    series: list[Series] = []
    for n in sorted({1, args.items}):
        for label in FLOORS:
            floor = side.floor(label, n)
            run_child(floor.cmd, env=env, cwd=str(tmp), log=log)
            check_floor(log, n, label)
            series.append(floor)
        if not args.floors_only and results["runbook_unsupported"] is None:
            run, manifest = side.runbook(n)
            results["runbook_unsupported"] = warm_runbook(run, manifest, env=env, tmp=tmp, log=log)
            if results["runbook_unsupported"] is None:
                series.append(run)
    interleaved(series, args.repeat, env=env, cwd=str(tmp), log=log, progress=f"fan-out {args.items}")
    results["fanout"] = {"items": args.items, "concurrency": args.concurrency, "delay_ms": args.delay_ms,
                         "series": {s.label: s.to_json() for s in series}}


def measure_scale(args: argparse.Namespace, url: str, env: dict[str, str], tmp: Path, log: Path,
                  results: dict[str, Any]) -> None:
    """Peak RSS and time per item of the scale sizes (one run each, after a 1-item baseline).
    A runbook run that fails is recorded with its error, and the larger sizes are not tried."""
    side = Side(url, tmp, args.scale_concurrency)
    runs: dict[str, Any] = {}
    engine = not args.floors_only and results["runbook_unsupported"] is None
    for n in (1, *args.scale_sizes):
        chain_bench._progress(f"scale: N={n}")
        floor = side.floor(FLOOR_A, n)
        floor.samples.append(run_child(floor.cmd, env=env, cwd=str(tmp), log=log))
        check_floor(log, n, FLOOR_A)
        runs[floor.label] = floor.to_json()
        if not engine:
            continue
        run, manifest = side.runbook(n)
        try:
            run.samples.append(run_child(run.cmd, env=env, cwd=str(tmp), log=log))
            check_manifest(manifest, n)
        except BenchError as exc:
            runs[run.label] = {"cmd": run.cmd, "items": n, "error": _first_error(exc)}
            engine = False
            continue
        finally:
            manifest.unlink(missing_ok=True)
        runs[run.label] = run.to_json()
    results["scale"] = {"sizes": list(args.scale_sizes), "concurrency": args.scale_concurrency,
                        "delay_ms": args.scale_delay_ms, "runs": runs}


def _rate_figures(arrivals: list[float], items: int) -> dict[str, Any]:
    """Achieved rate = items / (last arrival - first), the issue's definition (it reads items / (items - 1)
    high: N evenly spaced requests span N - 1 intervals, 0.1% at 1,000), and the most arrivals in any
    window shorter than 1 s (what a service counting a sliding window would see)."""
    span = arrivals[-1] - arrivals[0] if len(arrivals) > 1 else 0.0
    most, lo = 0, 0
    for hi, t in enumerate(arrivals):
        while t - arrivals[lo] >= 1.0:
            lo += 1
        most = max(most, hi - lo + 1)
    gaps = sorted(b - a for a, b in zip(arrivals, arrivals[1:], strict=False))
    return {"requests_seen": len(arrivals), "span_s": round(span, 4),
            "achieved_per_s": round(items / span, 3) if span else None, "max_in_1s_window": most,
            "gap_ms": {"min": round(gaps[0] * 1000, 3), "p10": round(gaps[len(gaps) // 10] * 1000, 3),
                       "median": round(statistics.median(gaps) * 1000, 3), "max": round(gaps[-1] * 1000, 3)}
            if gaps else None}


def measure_rate(args: argparse.Namespace, env: dict[str, str], tmp: Path, log: Path,
                 results: dict[str, Any]) -> None:
    """The rate limit, as the server saw it: one fresh server (and arrival log) per command."""
    rows: dict[str, Any] = {}
    sides = [FLOOR_A] + ([] if args.floors_only or results["runbook_unsupported"] is not None else ["runbook"])
    for label in sides:
        chain_bench._progress(f"rate limit: {label}")
        times = tmp / f"arrivals-{label}.txt"
        with Server(args.server_impl, args.delay_ms, times) as server:
            side = Side(server.url, tmp, args.rate_concurrency, rate=args.rate)
            if label == "runbook":
                series, manifest = side.runbook(args.rate_items)
            else:
                series = side.floor(label, args.rate_items)
            series.samples.append(run_child(series.cmd, env=env, cwd=str(tmp), log=log))
            if label == "runbook":
                check_manifest(manifest, args.rate_items)
            else:
                check_floor(log, args.rate_items, label)
            arrivals = server.arrivals()
        rows[label] = {**series.to_json(), **_rate_figures(arrivals, args.rate_items)}
    results["rate_limit"] = {"items": args.rate_items, "rate_per_s": args.rate, "concurrency": args.rate_concurrency,
                             "delay_ms": args.delay_ms, "rows": rows}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    env = chain_bench.child_env()
    results: dict[str, Any] = {
        "meta": {
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "engine_commit": chain_bench._git_commit(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "argv": sys.argv[1:],
            "repeat": args.repeat,
            "server_impl": args.server_impl,
            "floors_only": args.floors_only,
            "loadavg_start": chain_bench._loadavg(),
        },
        "runbook_unsupported": None,
        "server": [],
        "fanout": None,
        "scale": None,
        "rate_limit": None,
    }
    impls = ("threads", "asyncio") if args.compare_servers else (args.server_impl,)
    for impl in impls:
        for clients in sorted({args.concurrency, args.scale_concurrency}):
            chain_bench._progress(f"server {impl}: {clients} clients")
            results["server"].append(server_check(impl, clients, args.delay_ms, args.server_seconds))
    with tempfile.TemporaryDirectory(prefix="runbook-fanout-") as tmp_name:
        tmp = Path(tmp_name)
        log = tmp / "child.log"
        with Server(args.server_impl, args.delay_ms) as server:
            measure_fanout(args, server.url, env, tmp, log, results)
        if args.scale_sizes:
            with Server(args.server_impl, args.scale_delay_ms) as server:
                measure_scale(args, server.url, env, tmp, log, results)
        if args.rate_items:
            measure_rate(args, env, tmp, log, results)
    chain_bench._progress("")
    results["meta"]["loadavg_end"] = chain_bench._loadavg()
    results["metrics"] = derive(args, results)
    results["targets"] = targets(results)
    return results


# --------------------------------------------------------------------------- figures


def derive(args: argparse.Namespace, results: dict[str, Any]) -> dict[str, Any]:
    """The issue's figures; None where the runbook (or a size) was not run."""
    fanout = results["fanout"]["series"]
    n = args.items

    def get(label: str, items: int) -> dict[str, Any] | None:
        return fanout.get(f"{label}({items})")

    def ratio(floor: str) -> float | None:
        run, base = get("runbook", n), get(floor, n)
        return round(run["median_s"] / base["median_s"], 4) if run and base else None

    def cpu_per_item(label: str, marginal: bool) -> float | None:
        """CPU ms per item: all of it over ``n``, or beyond the 1-item run over ``n - 1``."""
        big, one = get(label, n), get(label, 1)
        if not big or not one or (marginal and n < 2):
            return None
        cpu = big["cpu_median_s"] - (one["cpu_median_s"] if marginal else 0.0)
        return cpu / ((n - 1) if marginal else n) * 1000

    def minus(a: float | None, b: float | None) -> float | None:
        return round(a - b, 4) if a is not None and b is not None else None

    scale = (results.get("scale") or {}).get("runs", {})

    def per_item_ms(label: str, items: int) -> float | None:
        big, one = scale.get(f"{label}({items})"), scale.get(f"{label}(1)")
        if not big or not one or "error" in big or "error" in one or items < 2:
            return None
        return (big["median_s"] - one["median_s"]) / (items - 1) * 1000

    sizes = list(args.scale_sizes)
    lo, hi = (sizes[0], sizes[-1]) if len(sizes) >= 2 else (None, None)
    run_lo = per_item_ms("runbook", lo) if lo else None
    run_hi = per_item_ms("runbook", hi) if hi else None
    rate_rows = (results.get("rate_limit") or {}).get("rows", {})
    server = next((row for row in results["server"]
                   if row["impl"] == args.server_impl and row["clients"] == args.concurrency), None)

    def rounded(value: float | None, digits: int = 4) -> float | None:
        return round(value, digits) if value is not None else None

    return {
        "server_efficiency": server["efficiency"] if server else None,
        "ratio_floor_a": ratio(FLOOR_A),
        "ratio_floor_b": ratio(FLOOR_B),
        "ratio_httpx_async": ratio("asyncio"),
        "ratio_shared_client": ratio("shared"),
        "floor_a_cpu_per_item_ms": rounded(cpu_per_item(FLOOR_A, False)),
        "runbook_cpu_per_item_ms": rounded(cpu_per_item("runbook", False)),
        "engine_cpu_per_item_ms": minus(cpu_per_item("runbook", False), cpu_per_item(FLOOR_A, False)),
        "engine_cpu_per_item_marginal_ms": minus(cpu_per_item("runbook", True), cpu_per_item(FLOOR_A, True)),
        "scale_peak_rss_mib": (scale.get(f"runbook({hi})") or {}).get("peak_rss_mib") if hi else None,
        "scale_floor_peak_rss_mib": (scale.get(f"{FLOOR_A}({hi})") or {}).get("peak_rss_mib") if hi else None,
        "runbook_per_item_ms_lo": rounded(run_lo),
        "runbook_per_item_ms_hi": rounded(run_hi),
        "floor_per_item_ms_lo": rounded(per_item_ms(FLOOR_A, lo)) if lo else None,
        "floor_per_item_ms_hi": rounded(per_item_ms(FLOOR_A, hi)) if hi else None,
        "per_item_hi_vs_lo": round(run_hi / run_lo, 4) if run_lo and run_hi is not None else None,
        "rate_achieved_per_s": (rate_rows.get("runbook") or {}).get("achieved_per_s"),
        "rate_floor_achieved_per_s": (rate_rows.get(FLOOR_A) or {}).get("achieved_per_s"),
    }


#: (metric key, label, target, unit, how to compare); "~" is (centre, tolerance as a fraction)
TARGETS: tuple[tuple[str, str, Any, str, str], ...] = (
    ("server_efficiency", "server: req/s of C clients / (C / delay)", 0.95, "x", ">="),
    ("ratio_floor_a", "run / floor (a) threads+httpx", 1.5, "x", "<="),
    ("ratio_floor_b", "run / floor (b) asyncio streams", 2.5, "x", "<="),
    ("engine_cpu_per_item_ms", "engine CPU per item (run - floor a) / items", 0.5, "ms", "<="),
    ("scale_peak_rss_mib", "peak RSS of run, largest scale size", 200.0, "MiB", "<="),
    ("per_item_hi_vs_lo", "time per item, largest / smallest scale size", (1.0, 0.15), "x", "~"),
    ("rate_achieved_per_s", "achieved rate under rate_limit", None, "/s", "~"),
)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    metrics, rate = results["metrics"], results.get("rate_limit") or {}
    rows = []
    for key, label, target, unit, op in TARGETS:
        if key == "rate_achieved_per_s":
            target = (rate.get("rate_per_s"), 0.05)
        value = metrics.get(key)
        if value is None or (op == "~" and target[0] is None):
            met = None
        elif op == "<=":
            met = value <= target
        elif op == ">=":
            met = value >= target
        else:
            met = abs(value / target[0] - 1) <= target[1]
        rows.append({"metric": key, "label": label, "value": value,
                     "target": list(target) if isinstance(target, tuple) else target, "unit": unit, "op": op,
                     "met": met})
    return rows


# --------------------------------------------------------------------------- table


_fmt_s = chain_bench._fmt_s


def _fmt_value(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value:.1f}/s"
    return chain_bench._fmt_value(value, unit)


def _fmt_target(row: dict[str, Any]) -> str:
    if row["op"] == "~":
        centre, tolerance = row["target"]
        return "-" if centre is None else f"{_fmt_value(centre, row['unit'])} ±{tolerance:.0%}"
    return f"{row['op']} {_fmt_value(row['target'], row['unit'])}"


def table(results: dict[str, Any]) -> str:
    meta, metrics = results["meta"], results["metrics"]
    out = [f"runbook fan-out bench  (engine {meta['engine_commit']}, Python {meta['python']}, {meta['cpus']} CPUs, "
           f"median of {meta['repeat']} runs each, whole processes, server {meta['server_impl']})"]
    load = meta.get("loadavg_start")
    if load is not None and load > 0.5 * (meta["cpus"] or 1) - 0.25:
        out.append(f"warning: load average {load} with {meta['cpus']} CPUs before the start: other work may share "
                   "the machine, so the figures are noisy (use --repeat 9 or more, or a quiet machine)")
    if meta["floors_only"]:
        out.append("runbook: not run (--floors-only)")
    elif results["runbook_unsupported"]:
        out.append(f"runbook: not run, the engine refused the fan-out runbook: {results['runbook_unsupported']}")
    out += ["", f"{'server (own process)':<26}{'clients':>8}{'delay':>8}{'req/s':>10}{'ideal':>10}{'got':>7}"
                f"{'server CPU/req':>16}"]
    for row in results["server"]:
        ideal = f"{row['ideal_per_s']:,.0f}" if row["ideal_per_s"] else "-"
        got = f"{row['efficiency']:.0%}" if row["efficiency"] is not None else "-"
        cpu = f"{row['server_cpu_us_per_request']:.0f} us" if row["server_cpu_us_per_request"] is not None else "-"
        out.append(f"{row['impl']:<26}{row['clients']:>8}{row['delay_ms']:>6g}ms{row['requests_per_s']:>10,.0f}"
                   f"{ideal:>10}{got:>7}{cpu:>16}")

    fanout = results["fanout"]
    n = fanout["items"]
    out += ["", f"fan-out: {n} items at concurrency {fanout['concurrency']}, server delay {fanout['delay_ms']:g} ms "
                f"(ideal wall {n / fanout['concurrency'] * fanout['delay_ms'] / 1000:.2f} s + start-up)",
            f"{'command':<{LABEL_WIDTH}}{'1 item':>10}{f'{n} items':>12}{'run/this':>10}{'CPU':>10}{'CPU/item':>11}"
            f"{'peak RSS':>11}"]
    series = fanout["series"]
    run_big = series.get(f"runbook({n})")
    for label, what in [("runbook", "runbook run"), *((k, FLOOR_KINDS[k][1]) for k in FLOORS)]:
        one, big = series.get(f"{label}(1)"), series.get(f"{label}({n})")
        if not big:
            continue
        vs = f"{run_big['median_s'] / big['median_s']:.2f}x" if run_big and label != "runbook" else ""
        out.append(f"{what:<{LABEL_WIDTH}}{_fmt_s(one['median_s'] if one else None):>10}{_fmt_s(big['median_s']):>12}"
                   f"{vs:>10}{_fmt_s(big['cpu_median_s']):>10}{big['cpu_median_s'] / n * 1000:>8.3f} ms"
                   f"{big['peak_rss_mib']:>7.1f} MiB")
    out.append("engine CPU per item: (run - floor a) / items = "
               f"{_fmt_value(metrics['engine_cpu_per_item_ms'], 'ms')}; beyond the 1-item runs' CPU "
               f"(start-up left out): {_fmt_value(metrics['engine_cpu_per_item_marginal_ms'], 'ms')}")

    scale = results.get("scale")
    if scale:
        out += ["", f"scale: concurrency {scale['concurrency']}, server delay {scale['delay_ms']:g} ms, one run each",
                f"{'command':<{LABEL_WIDTH}}{'items':>8}{'wall':>10}{'wall/item':>12}{'CPU':>10}{'peak RSS':>11}"]
        for label, row in scale["runs"].items():
            items = row["items"]
            what = "runbook run" if label.startswith("runbook") else FLOOR_KINDS[FLOOR_A][1]
            if "error" in row:
                out.append(f"{what:<{LABEL_WIDTH}}{items:>8}  failed: {row['error']}")
                continue
            out.append(f"{what:<{LABEL_WIDTH}}{items:>8}{_fmt_s(row['median_s']):>10}"
                       f"{_fmt_value(row['median_s'] / items * 1000, 'ms'):>12}{_fmt_s(row['cpu_median_s']):>10}"
                       f"{row['peak_rss_mib']:>7.1f} MiB")
        out.append("per item beyond the 1-item run: " + "  ".join(
            f"{label} {_fmt_value(metrics[key], 'ms')}" for key, label in (
                ("runbook_per_item_ms_lo", f"run {scale['sizes'][0]}"),
                ("runbook_per_item_ms_hi", f"run {scale['sizes'][-1]}"),
                ("floor_per_item_ms_lo", f"floor {scale['sizes'][0]}"),
                ("floor_per_item_ms_hi", f"floor {scale['sizes'][-1]}"),
            )))

    rate = results.get("rate_limit")
    if rate:
        out += ["", f"rate limit: {rate['items']} items at {rate['rate_per_s']:g}/s, concurrency {rate['concurrency']},"
                    f" server delay {rate['delay_ms']:g} ms (the server's arrival log)",
                f"{'command':<{LABEL_WIDTH}}{'wall':>10}{'seen':>8}{'first->last':>13}{'achieved':>11}"
                f"{'max in 1 s':>12}{'gap min/p10/median':>22}"]
        for label, row in rate["rows"].items():
            what = "runbook run (rate_limit)" if label == "runbook" else "floor (a) + an even-spacing gate"
            out.append(f"{what:<{LABEL_WIDTH}}{_fmt_s(row['median_s']):>10}{row['requests_seen']:>8}"
                       f"{row['span_s']:>11.3f} s"
                       f"{_fmt_value(row['achieved_per_s'], '/s'):>11}{row['max_in_1s_window']:>12}"
                       + (f"{gap['min']:>8.1f}/{gap['p10']:.1f}/{gap['median']:.1f} ms" if (gap := row["gap_ms"])
                          else ""))

    out += ["", f"{'target':<50}{'measured':>14}{'target':>14}  met"]
    for row in results["targets"]:
        met = {True: "yes", False: "NO", None: "n/a"}[row["met"]]
        out.append(f"{row['label']:<50}{_fmt_value(row['value'], row['unit']):>14}{_fmt_target(row):>14}  {met}")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/fanout.py", description="runbook for_each vs threads and asyncio.")
    parser.add_argument("--quick", action="store_true",
                        help="200 items, scale 200 and 2,000, rate limit over 200 items, 3 runs each")
    parser.add_argument("--floors-only", action="store_true", help="measure the server and the floors, not runbook")
    parser.add_argument("--repeat", type=int, help="timed runs per command of the fan-out (default 5; 3 with --quick)")
    parser.add_argument("--items", type=int, help="items of the fan-out (default 500; 200 with --quick)")
    parser.add_argument("--concurrency", type=int, default=50, help="items in flight in the fan-out (default 50)")
    parser.add_argument("--delay-ms", type=float, default=20.0, help="the server's answer delay (default 20)")
    parser.add_argument("--scale-sizes", type=chain_bench._sizes,
                        help="item counts of the scale runs, smallest first (default 2000,20000; --quick 200,2000;"
                             " an empty string skips them)")
    parser.add_argument("--scale-concurrency", type=int, default=100, help="concurrency of the scale runs")
    parser.add_argument("--scale-delay-ms", type=float, default=0.0, help="the server's delay in the scale runs")
    parser.add_argument("--rate-items", type=int, help="items of the rate-limit run (default 1000; 200 with --quick;"
                                                       " 0 skips it)")
    parser.add_argument("--rate", type=float, default=100.0, help="the rate limit, requests per second (default 100)")
    parser.add_argument("--rate-concurrency", type=int, default=50, help="concurrency of the rate-limit run")
    parser.add_argument("--server-impl", choices=("threads", "asyncio"), default="threads",
                        help="how bench/server.py serves the runs (default threads: a delayed answer sleeps in its "
                             "connection's thread and leaves on time, where the loop's timers come a little late)")
    parser.add_argument("--compare-servers", action=argparse.BooleanOptionalAction, default=None,
                        help="load both server implementations (default: in the full run, not with --quick)")
    parser.add_argument("--server-seconds", type=float, default=1.0, help="how long each server load check lasts")
    parser.add_argument("--out", default=str(BENCH_DIR / "results" / "fanout.json"), help="JSON results")
    args = parser.parse_args(argv)
    args.repeat = args.repeat or (3 if args.quick else 5)
    args.items = args.items if args.items is not None else (200 if args.quick else 500)
    if args.scale_sizes is None:
        args.scale_sizes = (200, 2000) if args.quick else (2000, 20000)
    args.rate_items = args.rate_items if args.rate_items is not None else (200 if args.quick else 1000)
    if args.compare_servers is None:
        args.compare_servers = not args.quick
    if args.repeat < 1 or args.items < 1 or min(args.concurrency, args.scale_concurrency, args.rate_concurrency) < 1:
        parser.error("--repeat, --items and the concurrencies are at least 1")
    if list(args.scale_sizes) != sorted(args.scale_sizes) or 1 in args.scale_sizes:
        parser.error("--scale-sizes: more than 1 item each, the smallest first")
    if args.rate_items < 0 or args.rate <= 0 or args.delay_ms < 0 or args.scale_delay_ms < 0:
        parser.error("--rate-items, --rate and the delays cannot be negative (and --rate not 0)")
    return args


def main(argv: list[str] | None = None) -> int:
    return chain_bench.run_bench(parse_args(argv), measure, table)


if __name__ == "__main__":
    sys.exit(main())
