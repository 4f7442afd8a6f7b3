"""Where the memory of a long ``runbook run`` goes, measured inside the process.

It starts ``bench/server.py``, writes a chain of N dependent Membrane steps (the same
runbook as ``bench/run.py``), and runs it in this process with the engine's own
``engine.commands.run.run`` (which loads it with ``engine.validation``'s ``load_checked``
or ``load_runbook``, whichever it calls).
Small hooks (subclasses of ``Runner`` and ``Recording``, a wrapper of the loader) keep a
reference to what the run holds, so that at the end of the run it reports:

* the Python heap traced by tracemalloc at each phase (imports, load, steps, final write),
  with the peak of each phase, and RSS/HWM from ``/proc/self/status``;
* the deep size of each structure the run keeps: the loader's SourceMap (``values``,
  ``keys``, ``scalar_text``), the Runbook/Step tuples and the raw data they point into, the
  Templates cache, the runner's step contexts, the StepResults, the Recording's records,
  the manifest writer's lines. ``alone`` is everything reachable from the structure; ``only
  here`` is what nothing else of the list reaches, i.e. what dropping it would free;
* the raw document (data and text) and the YAML node tree, which live during the load only;
* tracemalloc's top allocation sites (file:line) of what is still held at the end.

Sizes are ``sys.getsizeof`` rounded up to pymalloc's 16-byte size classes; objects the
interpreter shares (small ints, one-character strings, None, enum members, classes) are
not counted. tracemalloc slows the run about 5x and adds its own memory to RSS: use
``--no-tracemalloc`` for RSS phases comparable to ``bench/run.py --memory`` (this process
also holds the profiler's imports, some 6 MiB). A file:line of tracemalloc is where a block
was first allocated: small dicts' key tables come from a free list, so some of the records'
dicts show up under httpcore or contextlib lines that once allocated the same blocks.

    python bench/memory_profile.py                 # 20,000 steps
    python bench/memory_profile.py --steps 2000 --top 25 --json bench/results/memory_profile.json
"""

from __future__ import annotations

import argparse
import enum
import gc
import json
import os
import sys
import tempfile
import time
import tracemalloc
import types
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path[:0] = [str(REPO_ROOT), str(BENCH_DIR)]

import run as bench  # noqa: E402 - bench/run.py: the chain generator and the server

KIB = 1024
MIB = 1024 * 1024


# --------------------------------------------------------------------------- process figures


def proc_status() -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of this process, MiB (Linux; empty elsewhere)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out[key] = round(int(value.split()[0]) / 1024, 2)
    except OSError:
        pass
    return out


class Phases:
    """tracemalloc's current and peak at the end of each phase (the peak reset between)."""

    def __init__(self, tracing: bool) -> None:
        self.tracing = tracing
        self.rows: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()

    def mark(self, name: str) -> None:
        row: dict[str, Any] = {"phase": name, "t_s": round(time.perf_counter() - self._t0, 3), **proc_status()}
        if self.tracing:
            current, peak = tracemalloc.get_traced_memory()
            row.update(traced_mib=round(current / MIB, 2), traced_peak_mib=round(peak / MIB, 2))
            tracemalloc.reset_peak()
        self.rows.append(row)


# --------------------------------------------------------------------------- deep sizes


_SHARED_TYPES = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.MethodType,
                 types.CodeType, enum.Enum)
_LEAVES = (str, bytes, int, float, complex, bool, type(None))


def _shared(obj: Any) -> bool:
    """Objects the interpreter shares whatever the run (not counted)."""
    kind = type(obj)
    if obj is None or kind is bool:
        return True
    if kind is int:
        return -5 <= obj <= 256
    if kind is str:
        return len(obj) == 0 or (len(obj) == 1 and ord(obj) < 256)
    if kind is tuple:
        return len(obj) == 0
    return isinstance(obj, _SHARED_TYPES)


def _children(obj: Any) -> Any:
    if isinstance(obj, _LEAVES):
        return ()
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, (list, tuple, set, frozenset)):
        return obj
    found: list[Any] = []
    for cls in type(obj).__mro__:
        for name in cls.__dict__.get("__slots__", ()):
            if hasattr(obj, name):
                found.append(getattr(obj, name))
    if hasattr(obj, "__dict__") and not isinstance(obj, _SHARED_TYPES):
        found.append(obj.__dict__)
    return found


def _size(obj: Any) -> int:
    return (sys.getsizeof(obj) + 15) & ~15  # pymalloc hands out 16-byte size classes


#: (name, shallow roots: counted themselves only, deep roots: counted with all they reach)
Category = tuple[str, list[Any], list[Any]]


def deep_sizes(categories: list[Category]) -> list[dict[str, Any]]:
    """For each category: bytes reachable from its roots (``alone``), and bytes reachable from
    its roots and from no other category (``only``: what dropping them frees)."""
    # id -> size << 32 | bitmask of the categories that reach it (every object stays alive meanwhile)
    seen: dict[int, int] = {}
    for bit, (_, shallow, deep) in enumerate(categories):
        flag = 1 << bit
        stack: list[tuple[Any, bool]] = [(obj, False) for obj in shallow] + [(obj, True) for obj in deep]
        while stack:
            obj, expand = stack.pop()
            key = id(obj)
            entry = seen.get(key)
            if entry is None:
                if _shared(obj):
                    continue
                seen[key] = (_size(obj) << 32) | flag
            elif entry & flag:
                continue
            else:
                seen[key] = entry | flag
            if expand:
                stack.extend((child, True) for child in _children(obj))
    rows = [{"category": name, "alone": 0, "only": 0, "objects": 0} for name, _, _ in categories]
    for entry in seen.values():
        size, mask = entry >> 32, entry & 0xFFFFFFFF
        for bit, row in enumerate(rows):
            if mask & (1 << bit):
                row["alone"] += size
                row["objects"] += 1
                if mask == 1 << bit:
                    row["only"] += size
    seen.clear()
    return rows


def deep_size(*roots: Any) -> int:
    return deep_sizes([("all", [], list(roots))])[0]["alone"]


# --------------------------------------------------------------------------- the run


class Captured:
    """What the hooks keep of the run."""

    runner: Any = None
    outcome: Any = None
    recording: Any = None
    templates: Any = None
    runbook: Any = None
    doc_ids: tuple[int, int] | None = None  # id(data["steps"]) and id(data["steps"][0]) at load


def install_hooks(captured: Captured, phases: Phases) -> None:
    """Wrap what ``engine.commands.run.run`` calls; the engine's code is not changed."""
    import engine.commands.run as run_cmd
    import engine.validation as validation

    for name in ("load_runbook", "load_checked"):
        original = getattr(run_cmd, name, None)
        if original is None:
            continue

        def loaded(*args: Any, __original: Any = original, **kwargs: Any) -> Any:
            phases.mark("imports (before load)")
            result = __original(*args, **kwargs)
            phases.mark("load + validate + build")
            return result

        setattr(run_cmd, name, loaded)

    load_file = validation.load_file

    def load_file_noting_ids(*args: Any, **kwargs: Any) -> Any:
        doc = load_file(*args, **kwargs)
        steps = doc.data.get("steps") if isinstance(doc.data, dict) else None
        if isinstance(steps, list) and steps:
            captured.doc_ids = (id(steps), id(steps[0]))
        return doc

    validation.load_file = load_file_noting_ids

    class Runner(run_cmd.Runner):  # type: ignore[misc, valid-type, name-defined]
        def __init__(self, runbook: Any, templates: Any, **kwargs: Any) -> None:
            super().__init__(runbook, templates, **kwargs)
            captured.runner, captured.runbook, captured.templates = self, runbook, templates
            phases.mark("preflight")

        def run(self) -> Any:
            outcome = super().run()
            captured.outcome = outcome
            phases.mark("steps (runner.run)")
            return outcome

    class Recording(run_cmd.Recording):  # type: ignore[misc, valid-type, name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            captured.recording = self

        def finish(self, *args: Any, **kwargs: Any) -> Any:
            manifest = super().finish(*args, **kwargs)
            phases.mark("final manifest write (finish)")
            return manifest

    run_cmd.Runner = Runner  # type: ignore[misc]
    run_cmd.Recording = Recording  # type: ignore[misc]


def _still_alive(ids: tuple[int, int] | None, n: int) -> bool | None:
    """Whether the loaded document's ``steps`` list still exists (by id, checked by content)."""
    if ids is None:
        return None
    gc.unfreeze()
    try:
        for obj in gc.get_objects():
            if id(obj) == ids[0] and isinstance(obj, list) and len(obj) == n and obj and id(obj[0]) == ids[1]:
                return True
    finally:
        gc.freeze()
    return False


def categories_of(c: Captured) -> list[tuple[str, str, list[Any], list[Any]]]:
    """The run's structures: (name, group, shallow roots, deep roots), in the order of the report."""
    runbook = c.runbook
    source = runbook.source
    steps = list(runbook.steps) + list(runbook.finally_steps)
    fields = ("target", "input", "options", "when", "asserts", "id", "name", "provider", "style")
    step_data = [getattr(s, f) for s in steps for f in fields]
    other = [v for k, v in runbook._asdict().items() if k not in ("steps", "finally_steps", "source")]
    manifest = c.recording.manifest
    return [
        ("SourceMap.values (path -> (line, col))", "SourceMap", [], [source.values]),
        ("SourceMap.keys (path -> (line, col))", "SourceMap", [], [source.keys]),
        ("SourceMap.scalar_text (path -> text)", "SourceMap", [], [source.scalar_text]),
        ("Step tuples and their path tuples", "Runbook / Steps", steps, [s.path for s in steps]),
        ("raw data held by Steps (input, target, with, id...)", "Runbook / Steps", [], step_data),
        ("Runbook's other fields (providers, outputs, vars)", "Runbook / Steps", [], other),
        ("Templates._cache (compiled templates)", "Templates._cache", [], [c.templates._cache]),
        ("Conductor.steps (steps.<id> for templates)", "Conductor.steps", [], [c.runner.conductor.steps]),
        ("StepResults (RunOutcome.results, if kept)", "StepResults", [], [getattr(c.outcome, "results", [])]),
        ("Recording.records (step dicts, for finish)", "Recording.records", [], [c.recording.records]),
        ("ManifestWriter._lines (JSON bytes per step)", "ManifestWriter._lines", [],
         [getattr(c.recording.writer, "_lines", [])]),
        ("manifest header", "manifest header", [], [v for k, v in manifest.items() if k != "steps"]),
    ]


def grouped(cats: list[tuple[str, str, list[Any], list[Any]]]) -> list[Category]:
    groups: dict[str, tuple[list[Any], list[Any]]] = {}
    for _, group, shallow, deep in cats:
        entry = groups.setdefault(group, ([], []))
        entry[0].extend(shallow)
        entry[1].extend(deep)
    return [(name, shallow, deep) for name, (shallow, deep) in groups.items()]


def composed_tree_bytes(path: str) -> int | None:
    """What the YAML node tree of ``path`` holds while it is composed (traced bytes)."""
    if not tracemalloc.is_tracing():
        return None
    from engine import loader

    class Composer(loader._ParserBase, loader._Core12Resolver):  # type: ignore[misc, valid-type]
        """PyYAML's node tree, composed the way the loader did before it built from events."""

        def __init__(self, stream: str) -> None:
            loader._ParserBase.__init__(self, stream)
            loader._Core12Resolver.__init__(self)

    text = Path(path).read_text(encoding="utf-8")
    before = tracemalloc.get_traced_memory()[0]
    composer = Composer(text)
    node = composer.get_single_node()
    held = tracemalloc.get_traced_memory()[0] - before
    composer.dispose()
    del node, composer
    return held


def top_sites(baseline: Any, limit: int, group: str) -> list[dict[str, Any]]:
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
        tracemalloc.Filter(False, "<frozen importlib._bootstrap*>"),
    ])
    rows = []
    for stat in snapshot.compare_to(baseline, group)[:limit]:
        frame = stat.traceback[0]
        where = os.path.relpath(frame.filename, REPO_ROOT) if frame.filename.startswith(str(REPO_ROOT)) \
            else frame.filename
        rows.append({"site": f"{where}:{frame.lineno}" if group == "lineno" else where,
                     "bytes": stat.size_diff, "blocks": stat.count_diff})
    return rows


def profile(args: argparse.Namespace) -> dict[str, Any]:
    n = args.steps
    tracing = not args.no_tracemalloc
    # What a run imports lazily, imported first, so that it counts as start-up, not as steps.
    import engine.commands.run as run_cmd
    import engine.providers._http  # noqa: F401
    import engine.providers.membrane  # noqa: F401

    if tracing:
        tracemalloc.start(args.frames)
    phases = Phases(tracing)
    captured = Captured()
    install_hooks(captured, phases)
    server = bench.Server()
    result: dict[str, Any] = {"steps": n, "tracemalloc": tracing}
    try:
        with tempfile.TemporaryDirectory(prefix="runbook-memprof-") as tmp:
            rb = Path(tmp) / f"chain-{n}.yml"
            bench.write_membrane_chain(rb, n, server.url)
            manifest = Path(tmp) / "manifest.json"
            baseline = tracemalloc.take_snapshot() if tracing else None
            phases.mark("start")
            with open(os.devnull, "w", encoding="utf-8") as devnull:
                code = run_cmd.run(str(rb), manifest_path=str(manifest), stdout=devnull, stderr=devnull)
            if code != 0:
                raise bench.BenchError(f"the run exited {code}")
            bench.check_manifest(manifest, n)
            # Cycles the run made and the collector has not reached yet (httpx's per-request objects):
            # part of the peak, not of what the run needs.
            result["cyclic_garbage_objects"] = gc.collect()
            phases.mark("after gc.collect()")
            result["phases"] = phases.rows
            result["manifest_bytes"] = manifest.stat().st_size
            result["yaml_bytes"] = rb.stat().st_size
            if tracing:
                result["top_lineno"] = top_sites(baseline, args.top, "lineno")
                result["top_filename"] = top_sites(baseline, args.top, "filename")
                del baseline
            result["document_steps_list_alive_after_load"] = _still_alive(captured.doc_ids, n)
            cats = categories_of(captured)
            result["structures"] = deep_sizes([(name, shallow, deep) for name, _, shallow, deep in cats])
            result["groups"] = deep_sizes(grouped(cats))
            everything = grouped([("all", "all", shallow, deep) for _, _, shallow, deep in cats])
            result["structures_total"] = deep_sizes(everything)[0]["alone"]
            del cats, everything

            # Transient: what the load holds besides what it keeps (measured again, the same way).
            from engine.loader import load_file

            doc = load_file(str(rb))
            result["transient"] = {
                "Document.data (raw document)": deep_size(doc.data),
                "Document.text (the YAML text)": _size(doc.text),
                "Document.source (SourceMap, again)": deep_size(doc.source.values, doc.source.keys,
                                                                doc.source.scalar_text),
            }
            del doc
            tree = composed_tree_bytes(str(rb))
            if tree is not None:
                result["transient"]["YAML node tree (traced while composed)"] = tree
    finally:
        server.stop()
        if tracing:
            tracemalloc.stop()
    return result


# --------------------------------------------------------------------------- report


def report(result: dict[str, Any]) -> str:
    n = result["steps"]

    def per_step(b: float) -> str:
        return f"{b / n / KIB:8.2f}"

    out = [f"runbook run of a {n}-step Membrane chain, in process "
           f"({'tracemalloc on' if result['tracemalloc'] else 'tracemalloc off'}); "
           f"YAML {result['yaml_bytes'] / MIB:.1f} MiB, manifest {result['manifest_bytes'] / MIB:.1f} MiB", ""]
    out.append(f"{'phase (figures at its end)':<34}{'t (s)':>8}{'RSS':>9}{'HWM':>9}{'traced':>9}"
               f"{'peak in phase':>15}   MiB")
    for row in result["phases"]:
        out.append(f"{row['phase']:<34}{row['t_s']:>8.2f}{row.get('VmRSS', 0):>9.1f}{row.get('VmHWM', 0):>9.1f}"
                   f"{row.get('traced_mib', float('nan')):>9.1f}{row.get('traced_peak_mib', float('nan')):>15.1f}")
    for key, title in (("structures", "held at the end of the run"), ("groups", "the same, by structure")):
        out += ["", f"{title:<56}{'alone':>9}{'only here':>11}{'objects':>9}"
                    f"{'MiB':>8}   (per step: KiB, objects; only here = freed if dropped)"]
        for row in result[key]:
            out.append(f"{row['category']:<56}{per_step(row['alone']):>9}{per_step(row['only']):>11}"
                       f"{row['objects'] / n:>9.1f}{row['alone'] / MIB:>8.1f}")
    out.append(f"{'all of the above (shared objects once)':<56}{per_step(result['structures_total']):>9}"
               f"{'':>11}{'':>9}{result['structures_total'] / MIB:>8.1f}")
    out += ["", f"{'during the load only (freed when the load returns)':<56}{'KiB/step':>9}{'MiB':>19}"]
    for name, size in result["transient"].items():
        out.append(f"{name:<56}{per_step(size):>9}{size / MIB:>19.1f}")
    alive = result["document_steps_list_alive_after_load"]
    out.append(f"the loaded document's steps list still alive at the end: {alive}")
    for key, title in (("top_lineno", "file:line"), ("top_filename", "file")):
        if key not in result:
            continue
        out += ["", f"tracemalloc: held at the end of the run, by {title} (vs. before the run)",
                f"{'site':<64}{'KiB/step':>9}{'MiB':>8}{'blocks/step':>13}"]
        for row in result[key]:
            out.append(f"{row['site'][-64:]:<64}{per_step(row['bytes']):>9}{row['bytes'] / MIB:>8.1f}"
                       f"{row['blocks'] / n:>13.1f}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/memory_profile.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20000, help="chain length (default 20000)")
    parser.add_argument("--top", type=int, default=25, help="allocation sites to list (default 25)")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames per trace (default 1)")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS without tracemalloc's overhead")
    parser.add_argument("--json", help="also write the figures as JSON to this file")
    args = parser.parse_args(argv)
    try:
        result = profile(args)
    except bench.BenchError as exc:
        sys.stderr.write(f"memory profile failed: {exc}\n")
        return 1
    print(report(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
