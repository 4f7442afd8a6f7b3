"""Third-party provider types through the `runbook.providers` entry-point group."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.providers.base import ActionResult
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


#: Written against the Provider protocol without subclassing anything, with some of its
#: optional capabilities: a credential proof, a target, replay.
CAPABLE_PLUGIN = '''
from engine.providers.base import ActionResult, ProviderError


class KeyedProvider:
    type_name = "keyed"
    styles = ("id",)
    config_schema = {"type": "object"}

    def __init__(self, name, config, *, env, redactor):
        self.key = config.get("key", "")

    def target(self):
        return "keyed:" + self.key

    def verify_credentials(self, timeout):
        if self.key != "good":
            raise ProviderError("authentication", "the key was refused")

    def request_body(self, call):
        return {"id": call.target, "input": call.input}

    def send(self, call, timeout):
        return ActionResult(output={"sent": call.input}, run_id="k-1")

    def replay(self, style, request, timeout):
        return ActionResult(output={"replayed": request["input"]}, run_id="k-2")

    def close(self):
        pass
'''


def test_a_plugin_class_gets_the_protocol_defaults_once() -> None:
    from engine.providers.base import ActionCall, Provider, ProviderError
    from engine.providers.registry import as_provider_class

    class Bare:  # the least a plugin class has
        def __init__(self, name, config, *, env, redactor):
            self.name = name

        def request_body(self, call):
            return {"id": call.target}

        def send(self, call, timeout):
            return ActionResult(output=None)

        def close(self):
            pass

    class Replaying(Bare):
        styles = ("id", "key")

        def replay(self, style, request, timeout):
            return ActionResult(output=request)

    bare = as_provider_class("bare", Bare)
    assert issubclass(bare, Bare) and bare.__name__ == "Bare"
    assert (bare.type_name, bare.styles, bare.config_schema, bare.step_extras) == ("bare", ("api",),
                                                                                 {"type": "object"}, ())
    assert (bare.replays, bare.run_logs) == (False, False)
    assert bare.emulated_config({"type": "bare"}, "http://127.0.0.1:1") is None
    assert bare.request_builder("b", {}, env={}) is None
    instance = bare("b", {}, env={}, redactor=None)
    assert instance.name == "b" and instance.target() == "" and instance.verify_credentials(1.0) is None
    with pytest.raises(ProviderError, match="cannot replay"):
        instance.replay("id", {}, 1.0)
    assert instance.request_body(ActionCall("id", "x", None, {})) == {"id": "x"}

    replaying = as_provider_class("replaying", Replaying)
    assert replaying.replays and replaying.styles == ("id", "key")
    assert replaying("r", {}, env={}, redactor=None).replay("id", {"a": 1}, 1.0).output == {"a": 1}
    assert as_provider_class("membrane", replaying) is replaying  # already a Provider: as it is
    assert Provider in replaying.__mro__


def test_a_plugin_s_optional_capabilities_are_used(write, tmp_path: Path) -> None:
    env = install_plugin(tmp_path, "keyedplugin", CAPABLE_PLUGIN, {"keyed": "keyedplugin:KeyedProvider"})
    text = """
        version: 1
        name: keyed
        providers:
          k: {type: keyed, key: KEY}
        steps:
          - {id: a, provider: k, dispatch: {id: say}, input: hi}
    """
    refused = run_cli(["run", str(write(text.replace("KEY", "bad")))], cwd=tmp_path, env=env)
    assert refused.code == 2
    assert "providers.k: its credentials could not be proved before the first step: the key was refused" \
        in refused.stderr
    path = write(text.replace("KEY", "good"))
    ran = run_cli(["run", str(path), "--emulate"], cwd=tmp_path, env=env)  # no emulator: its config kept
    assert ran.code == 0, ran.stderr
    assert ran.step("a")["output"] == {"sent": "hi"}
    replayed = run_cli(["replay", str(ran.manifest_path), "--manifest", str(tmp_path / "again.json")],
                       cwd=tmp_path, env=env, manifest=False)
    assert replayed.code == 0, replayed.stderr
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["steps"][0]["output"] == {"replayed": "hi"}
    planned = json.loads(run_cli(["plan", str(path), "--json"], cwd=tmp_path, env=env).stdout)
    (step,) = planned["steps"]
    assert (step["endpoint"], step["headers"]) == (None, None)  # a plugin does not say how it sends
    assert step["request"] == {"dispatch": {"id": "say"}, "input": "hi"}


def test_replaying_a_plugin_without_replay_says_so(write, tmp_path: Path, plugin_env) -> None:
    path = write("""
        version: 1
        name: echo
        steps:
          - {id: a, provider: echo, dispatch: {id: say}, input: hi}
    """)
    ran = run_cli(["run", str(path)], cwd=tmp_path, env=plugin_env)
    assert ran.code == 0, ran.stderr
    replayed = run_cli(["replay", str(ran.manifest_path), "--manifest", str(tmp_path / "again.json")],
                       cwd=tmp_path, env=plugin_env, manifest=False)
    assert replayed.code == 1
    again = json.loads((tmp_path / "again.json").read_text())
    assert again["steps"][0]["error"]["message"] == "provider type 'echo' cannot replay requests"
    assert again["steps"][0]["attempts"] == []  # nothing was sent
