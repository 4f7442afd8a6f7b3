"""The benchmark runs end to end with N = 1 and one repeat (no timing is asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_bench_runs_with_one_step(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--sizes", "1", "--repeat", "1",
         "--validate-sizes", "20", "--pipedream-size", "1", "--rps-seconds", "0.2", "--no-warmup",
         "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    for text in ("req/s", "membrane chain", "floor (httpx)", "runbook run", "N=1",
                 "runbook --help", "runbook validate(20)", "target", "run(200) / floor(200)"):
        assert text in proc.stdout, f"{text!r} missing from the table:\n{proc.stdout}"

    results = json.loads(out.read_text(encoding="utf-8"))
    assert set(results) >= {"meta", "server", "chains", "pipedream", "commands", "imports",
                            "metrics", "targets"}
    assert results["server"]["requests_per_s"] > 0
    chain = results["chains"]["1"]
    for side in ("floor", "runbook"):
        assert chain[side]["runs"] == 1
        assert chain[side]["median_s"] > 0
        assert chain[side]["peak_rss_mib"] > 0
    assert chain["ratio"] > 0
    assert set(results["commands"]) == {"python -c pass", "--help", "validate(20)"}
    assert results["pipedream"]["steps"] == 1
    assert set(results["metrics"]) >= {
        "per_step_overhead_ms", "run200_ratio", "help_ms", "validate20_ms", "validate5000_s",
        "run2000_peak_rss_mib", "linearity_200_2000_vs_20_200",
        "network_modules_imported_by_help_or_validate",
    }
    # Figures that need sizes this run did not measure are null, not missing.
    assert results["metrics"]["per_step_overhead_ms"] is None
    assert {row["metric"] for row in results["targets"]} >= {"per_step_overhead_ms", "help_ms"}


def test_instruction_counts_are_the_same_on_every_run() -> None:
    """What ``--instructions`` relies on; valgrind ships on every machine this project runs on."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import run as bench  # noqa: PLC0415 - bench/ is not a package
    finally:
        sys.path.pop(0)
    cmd = [sys.executable, "-c", "sum(range(10000))"]
    counts = {bench.instructions(cmd, env=bench.child_env(), cwd=str(ROOT)) for _ in range(2)}
    assert len(counts) == 1 and counts.pop() > 1_000_000


def test_fanout_bench_floors_run(tmp_path: Path) -> None:
    """``bench/fanout.py --floors-only``: the delayed server, every floor, the arrival log (no
    runbook, so this passes whatever the engine supports; no timing is asserted)."""
    out = tmp_path / "fanout.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "fanout.py"), "--floors-only", "--quick", "--items", "20",
         "--concurrency", "5", "--scale-sizes", "20,40", "--scale-concurrency", "10", "--rate-items", "10",
         "--rate", "200", "--repeat", "1", "--server-seconds", "0.2", "--out", str(out)],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout

    for text in ("runbook: not run (--floors-only)", "server (own process)", "fan-out: 20 items",
                 "floor (a): threads", "floor (b): asyncio streams", "httpx.AsyncClient", "scale:", "rate limit:",
                 "target", "run / floor (a)", "achieved rate under rate_limit"):
        assert text in proc.stdout, f"{text!r} missing from the table:\n{proc.stdout}"

    results = json.loads(out.read_text(encoding="utf-8"))
    assert set(results) >= {"meta", "server", "fanout", "scale", "rate_limit", "metrics", "targets"}
    assert results["meta"]["floors_only"] is True
    assert {(row["impl"], row["clients"], row["delay_ms"]) for row in results["server"]} == {
        ("threads", 5, 20.0), ("threads", 10, 20.0)}
    for row in results["server"]:
        assert row["requests"] > 0 and row["ideal_per_s"] == row["clients"] / 0.02

    series = results["fanout"]["series"]
    assert set(series) == {f"{floor}({n})" for floor in ("threads", "raw", "asyncio", "shared") for n in (1, 20)}
    for s in series.values():
        assert s["runs"] == 1 and s["median_s"] > 0 and s["cpu_median_s"] > 0 and s["peak_rss_mib"] > 0
    assert set(results["scale"]["runs"]) == {"threads(1)", "threads(20)", "threads(40)"}
    rate = results["rate_limit"]
    assert set(rate["rows"]) == {"threads"} and rate["rows"]["threads"]["requests_seen"] == 10

    metrics = results["metrics"]
    assert metrics["floor_a_cpu_per_item_ms"] is not None and metrics["rate_floor_achieved_per_s"] is not None
    # The runbook's figures are null, not missing, and their targets not judged.
    for key in ("ratio_floor_a", "ratio_floor_b", "engine_cpu_per_item_ms", "scale_peak_rss_mib",
                "per_item_hi_vs_lo", "rate_achieved_per_s"):
        assert metrics[key] is None
    assert {row["metric"]: row["met"] for row in results["targets"]}["ratio_floor_a"] is None
