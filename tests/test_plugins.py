"""Third-party provider types through the `runbook.providers` entry-point group."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import base_env, install_plugin, run_cli

PLUGIN = '''
from engine.providers.base import ActionResult


class EchoProvider:
    type_name = "echo"
    styles = ("id",)
    config_schema = {"type": "object", "properties": {"type": {}, "prefix": {"type": "string"}},
                     "additionalProperties": False}
    options_schema = {"type": "object", "properties": {"loud": {"type": "boolean"}},
                      "additionalProperties": False}

    def __init__(self, name, config, *, env, redactor):
        self.prefix = config.get("prefix", "")

    def request_body(self, call):
        return {"id": call.target, "input": call.input}

    def send(self, call, timeout):
        text = self.prefix + str(call.input)
        return ActionResult(output={"text": text.upper() if call.options.get("loud") else text},
                            run_id="echo-1")

    def close(self):
        pass


class CrashProvider(EchoProvider):
    type_name = "crash"

    def send(self, call, timeout):
        raise RuntimeError("plugin bug")
'''


@pytest.fixture
def plugin_env(tmp_path: Path) -> dict[str, str]:
    return install_plugin(tmp_path, "rbplugin", PLUGIN,
                          {"echo": "rbplugin:EchoProvider", "crash": "rbplugin:CrashProvider"})


def test_a_plugin_type_validates_and_runs(write, tmp_path: Path, plugin_env) -> None:
    path = write("""
        version: 1
        name: plugin
        providers:
          shout: {type: echo, prefix: "> "}
        steps:
          - {id: a, provider: shout, dispatch: {id: say}, input: hi, with: {loud: true}}
          - {id: b, provider: echo, dispatch: {id: say}, input: "{{ steps.a.output.text }}"}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=plugin_env)
    assert result.code == 0, result.stderr
    assert result.step("a")["output"] == {"text": "> HI"}
    assert result.step("b")["output"] == {"text": "> HI"}
    bad = write("""
        version: 1
        name: plugin
        steps:
          - {id: a, provider: echo, dispatch: {key: say}, with: {quiet: true}}
    """, "bad.yml")
    invalid = run_cli(["validate", str(bad)], cwd=tmp_path, env=plugin_env)
    assert invalid.code == 2
    assert "does not support dispatch style 'key'; it supports: id" in invalid.stderr
    assert "unknown key 'quiet'" in invalid.stderr


def test_a_bug_is_exit_3_with_one_line_and_the_manifest_kept(write, tmp_path: Path,
                                                            plugin_env) -> None:
    path = write("""
        version: 1
        name: crash
        steps:
          - {id: ok, provider: echo, dispatch: {id: x}, input: 1}
          - {id: boom, provider: crash, dispatch: {id: x}}
          - {id: later, provider: echo, dispatch: {id: x}}
        finally:
          - {id: cleanup, provider: echo, dispatch: {id: x}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=plugin_env)
    assert result.code == 3
    error_lines = [line for line in result.stderr.splitlines() if "internal error" in line]
    assert len(error_lines) == 1 and "RuntimeError: plugin bug" in error_lines[0]
    assert "Traceback" not in result.stderr
    statuses = [(s["id"], s["status"]) for s in result.manifest["steps"]]
    assert statuses == [("ok", "succeeded"), ("boom", "failed"), ("later", "not_run"),
                        ("cleanup", "succeeded")]
    assert result.step("boom")["error"]["type"] == "internal"
    debug = run_cli(["--debug", "run", str(path)], cwd=tmp_path, env=plugin_env)
    assert debug.code == 3 and "Traceback" in debug.stderr


def test_unknown_type_is_a_validation_error_without_plugins(write, tmp_path: Path) -> None:
    path = write("""
        version: 1
        name: x
        steps: [{id: a, provider: echo, dispatch: {id: x}}]
    """)
    result = run_cli(["validate", str(path)], cwd=tmp_path, env=base_env())
    assert result.code == 2 and "unknown provider 'echo'" in result.stderr
