"""Third-party provider types through the `runbook.providers` entry-point group."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from engine.providers.base import ActionResult
from tests.conftest import base_env, install_plugin, run_cli

PLUGIN = '''
from engine.providers.base import ActionResult


class EchoProvider:
    type_name = "echo"
    styles = ("id",)
    config_schema = {"type": "object", "properties": {"prefix": {"type": "string"}},
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


def test_a_plugin_that_raises_fails_its_step_as_the_plugin_s_failure(write, tmp_path: Path,
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
    assert result.code == 1, result.stderr
    assert "internal error" not in result.stderr + result.stdout and "Traceback" not in result.stderr
    statuses = [(s["id"], s["status"]) for s in result.manifest["steps"]]
    assert statuses == [("ok", "succeeded"), ("boom", "failed"), ("later", "not_run"),
                        ("cleanup", "succeeded")]
    error = result.step("boom")["error"]
    assert error["type"] == "plugin"
    assert error["message"] == ("the plugin rbplugin 0.1 (entry point crash = rbplugin:CrashProvider) raised in "
                                "send(): RuntimeError: plugin bug (rbplugin.py:32 in send)")
    assert f"plugin: {error['message']}" in result.stdout


BROKEN = '''
from rbplugin import EchoProvider


class BadSchema(EchoProvider):
    config_schema = {"type": "objekt"}


class BadStyles(EchoProvider):
    styles = ("id", "catalog")


class NoSend:
    def request_body(self, call):
        return {}


class InitFails(EchoProvider):
    def __init__(self, name, config, *, env, redactor):
        raise KeyError("api_key")


class BadRecord(EchoProvider):
    def request_body(self, call):
        return {"ratio": 1 / 0}


class CloseFails(EchoProvider):
    def close(self):
        raise OSError("socket already gone")


class Strict(EchoProvider):
    config_schema = {"type": "object", "required": ["token"], "properties": {"token": {"type": "string"}}}


not_a_class = 42
'''


#: The entry points of the distribution ``broken``: type name -> target.
BROKEN_TYPES = {"gone": "brokn:Provider", "badschema": "broken:BadSchema", "badstyles": "broken:BadStyles",
                "nosend": "broken:NoSend", "number": "broken:not_a_class", "initfails": "broken:InitFails",
                "strict": "broken:Strict", "badrecord": "broken:BadRecord", "closefails": "broken:CloseFails"}


@pytest.fixture
def broken_env(tmp_path: Path) -> dict[str, str]:
    install_plugin(tmp_path, "rbplugin", PLUGIN, {"echo": "rbplugin:EchoProvider"})
    return install_plugin(tmp_path, "broken", BROKEN, BROKEN_TYPES)  # the same site folder


@pytest.mark.parametrize(("ptype", "why"), [
    ("gone", "cannot be imported: ModuleNotFoundError: No module named 'brokn'"),
    ("badschema", "declares a config_schema that is not a valid JSON Schema: config_schema['type']: 'objekt' is "
                  "not valid under any of the given schemas"),
    ("badstyles", "declares styles = ('id', 'catalog'): a tuple of id, key, api, code"),
    ("nosend", "names NoSend: not a provider class (it has no send())"),
    ("number", "does not name a class but int 42"),
])
def test_a_plugin_that_cannot_load_is_its_failure_exit_2(write, tmp_path: Path, broken_env, ptype: str,
                                                          why: str) -> None:
    entry = BROKEN_TYPES[ptype]
    path = write(f"""
        version: 1
        name: broken
        providers:
          p: {{type: {ptype}}}
        steps:
          - {{id: a, provider: p, dispatch: {{id: x}}}}
          - {{id: b, provider: {ptype}, dispatch: {{id: x}}}}
    """)
    expected = f"provider type {ptype!r} comes from the plugin broken 0.1 (entry point {ptype} = {entry}), which {why}"
    for command in ("validate", "run", "plan"):
        result = run_cli([command, str(path)], cwd=tmp_path, env=broken_env)
        assert result.code == 2, (command, result.stderr)
        assert f"{path}:4:13: providers.p.type: {expected}\n" in result.stderr, result.stderr
        assert f"{path}:7:23: steps[1] (b) provider: {expected}\n" in result.stderr, result.stderr
        assert "internal error" not in result.stderr
    assert not (tmp_path / "manifest.json").exists()


def test_a_plugin_whose_setup_raises_is_exit_2_before_anything_is_sent(write, tmp_path: Path,
                                                                      broken_env) -> None:
    path = write("""
        version: 1
        name: setup
        providers:
          p: {type: initfails}
        steps:
          - {id: a, provider: echo, dispatch: {id: x}}
          - {id: b, provider: p, dispatch: {id: x}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=broken_env)
    assert result.code == 2, result.stderr
    assert (f"{path}:4:6: providers.p: the plugin broken 0.1 (entry point initfails = broken:InitFails) raised in "
            "__init__(): KeyError: 'api_key' (broken.py:20 in __init__)") in result.stderr
    assert not result.manifest_path.exists()  # step a was not sent either
    planned = run_cli(["plan", str(path)], cwd=tmp_path, env=broken_env)
    assert planned.code == 0
    assert "warning: providers.p: plan cannot show its requests: the plugin broken 0.1" in planned.stderr


def test_a_plugin_s_record_failing_fails_the_step_and_its_clean_up_failing_warns(write, tmp_path: Path,
                                                                                broken_env) -> None:
    path = write("""
        version: 1
        name: sloppy
        steps:
          - {id: a, provider: closefails, dispatch: {id: x}, input: 1}
          - {id: b, provider: badrecord, dispatch: {id: x}}
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=broken_env)
    assert result.code == 1, result.stderr
    assert result.step("a")["status"] == "succeeded"
    error = result.step("b")["error"]
    assert error["type"] == "plugin"
    assert error["message"].endswith("raised in request_body(): ZeroDivisionError: division by zero "
                                     "(broken.py:25 in request_body)"), error
    assert ("warning: the plugin broken 0.1 (entry point closefails = broken:CloseFails) raised in close(): "
            "OSError: socket already gone (broken.py:30 in close)") in result.stderr
    assert "internal error" not in result.stderr


def test_validate_and_run_agree_on_a_plugin_s_config_schema(write, tmp_path: Path, broken_env) -> None:
    # the block's `type:` is the engine's key: a schema with additionalProperties: false (EchoProvider's)
    # need not list it, and validate and run check the same configuration
    as_it_is = write("""
        version: 1
        name: strict
        steps: [{id: a, provider: strict, dispatch: {id: x}}]
    """, "direct.yml")
    wrong = write("""
        version: 1
        name: strict
        providers:
          s: {type: strict, token: 7}
          e: {type: echo, prefix: "> "}
        steps: [{id: a, provider: s, dispatch: {id: x}}, {id: b, provider: e, dispatch: {id: x}}]
    """, "block.yml")
    for command in ("validate", "run"):
        empty = run_cli([command, str(as_it_is)], cwd=tmp_path, env=broken_env)
        assert empty.code == 2, (command, empty.stderr)
        assert "missing required key 'token'" in empty.stderr, (command, empty.stderr)
        typed = run_cli([command, str(wrong)], cwd=tmp_path, env=broken_env)
        assert typed.code == 2, (command, typed.stderr)
        assert "providers.s.token: expected a string, got the number 7" in typed.stderr, (command, typed.stderr)
        assert "unknown key 'type'" not in typed.stderr
    assert ("steps[0] (a) provider: provider type 'strict' is used without a block under providers:, and its "
            "configuration cannot be empty: missing required key 'token'") in \
        run_cli(["validate", str(as_it_is)], cwd=tmp_path, env=broken_env).stderr
    good = write(wrong.read_text().replace("token: 7", 'token: "7"'), "good.yml")
    assert run_cli(["validate", str(good)], cwd=tmp_path, env=broken_env).code == 0
    assert run_cli(["run", str(good)], cwd=tmp_path, env=broken_env).code == 0


def test_a_misspelled_plugin_type_gets_a_suggestion(write, tmp_path: Path, plugin_env) -> None:
    path = write("""
        version: 1
        name: typo
        providers:
          p: {type: ecko}
        steps:
          - {id: a, provider: p, dispatch: {id: x}}
          - {id: b, provider: crsh, dispatch: {id: x}}
    """)
    result = run_cli(["validate", str(path)], cwd=tmp_path, env=plugin_env)
    assert result.code == 2
    assert ("providers.p.type: unknown provider type 'ecko' (did you mean 'echo'?); built-in types: http, "
            "membrane, pipedream; plugin types: crash, echo") in result.stderr
    assert "steps[1] (b) provider: unknown provider 'crsh' (did you mean 'crash'?)" in result.stderr


def test_plan_shows_the_plugin_s_own_request(write, tmp_path: Path, plugin_env) -> None:
    path = write("""
        version: 1
        name: plan
        providers:
          shout: {type: echo, prefix: "> "}
        steps:
          - {id: a, provider: shout, dispatch: {id: say}, input: {text: hi}}
    """)
    planned = run_cli(["plan", str(path), "--json"], cwd=tmp_path, env=plugin_env)
    assert planned.code == 0, planned.stderr
    (step,) = json.loads(planned.stdout)["steps"]
    assert step["request"] == {"id": "say", "input": {"text": "hi"}}  # EchoProvider.request_body
    assert (step["endpoint"], step["headers"]) == (None, None)  # how it sends is its own
    ran = run_cli(["run", str(path)], cwd=tmp_path, env=plugin_env)
    assert ran.step("a")["request"] == step["request"]


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
    shown = bare.request_builder("b", {}, env={})  # for plan: the provider itself, its own record
    assert shown.request_body(ActionCall("id", "x", None, {})) == {"id": "x"} and shown.build_request(None) is None
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
    assert step["request"] == {"id": "say", "input": "hi"}  # its own request_body


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


def _wheel(directory: Path, name: str, version: str, files: dict[str, str], metadata: str) -> Path:
    """A pure-Python wheel (what `pip wheel` makes of a plugin project), built without a build backend."""
    import base64
    import hashlib
    import zipfile

    info = f"{name.replace('-', '_')}-{version}.dist-info"
    contents = {**files, f"{info}/METADATA": metadata,
                f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in contents.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    contents[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = directory / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def test_a_plugin_package_that_declares_the_distribution_installs_and_runs(write, tmp_path: Path) -> None:
    """The README's plugin packaging: `dependencies = ["runbook-engine>=0.1"]` and an entry point in
    `runbook.providers`. pip resolves that dependency to this installation, with no index at all
    (a plugin naming "runbook" would pull an unrelated PyPI project), installs it, and runbook uses it."""
    import subprocess
    import sys

    metadata = ("Metadata-Version: 2.1\nName: runbook-echo\nVersion: 1.0\n"
                "Requires-Dist: runbook-engine>=0.1\n")
    files = {"runbook_echo.py": PLUGIN, "runbook_echo-1.0.dist-info/entry_points.txt":
             "[runbook.providers]\necho = runbook_echo:EchoProvider\n"}
    wheel = _wheel(tmp_path, "runbook-echo", "1.0", files, metadata)
    pip = [sys.executable, "-m", "pip", "install", "--no-index", "--disable-pip-version-check"]
    report = subprocess.run([*pip, "--dry-run", "--quiet", "--report", "-", str(wheel)],
                            capture_output=True, text=True, timeout=120)
    assert report.returncode == 0, report.stderr
    installs = [entry["metadata"]["name"] for entry in json.loads(report.stdout)["install"]]
    assert installs == ["runbook-echo"]  # runbook-engine: already satisfied, by this project
    wrong = _wheel(tmp_path, "runbook-wrong", "1.0", {"runbook_wrong.py": ""},
                   metadata.replace("runbook-echo", "runbook-wrong").replace("runbook-engine", "runbook"))
    refused = subprocess.run([*pip, "--dry-run", "--quiet", str(wrong)], capture_output=True, text=True, timeout=120)
    assert refused.returncode != 0 and "runbook" in refused.stderr  # "runbook" is not this project
    site = tmp_path / "site"
    installed = subprocess.run([*pip, "--no-deps", "--quiet", "--target", str(site), str(wheel)],
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    path = write("""
        version: 1
        name: packaged
        steps: [{id: a, provider: echo, dispatch: {id: say}, input: hi}]
    """)
    env = base_env()
    env["PYTHONPATH"] = f"{site}{os.pathsep}{env['PYTHONPATH']}"
    result = run_cli(["run", str(path)], cwd=tmp_path, env=env)
    assert result.code == 0, result.stderr
    assert result.step("a")["output"] == {"text": "hi"}
