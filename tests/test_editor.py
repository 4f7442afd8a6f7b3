"""Editor support (issue 16): the schemas are valid JSON Schemas, the runbook schema gives each
property its own help and each provider type its keys, and yaml-language-server, driven over
LSP stdio, completes an empty ``dispatch:`` and shows ``timeout``'s own hover."""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.schemas import checker, schema_messages, validator
from tests.conftest import ROOT

SCHEMAS = ROOT / "schemas"
BUILTIN = ("membrane", "pipedream", "http")
HELP = ("title", "description", "examples")
YAML_LANGUAGE_SERVER = "yaml-language-server@1.25.0"


def _load(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = json.loads((SCHEMAS / name).read_text())
    return schema


# -- the schema files ------------------------------------------------------------------------


def test_every_schema_file_is_a_valid_json_schema() -> None:
    files = sorted(str(p) for p in SCHEMAS.rglob("*.json"))
    assert len(files) >= 5  # runbook, manifest and one per built-in provider type
    result = subprocess.run([sys.executable, "-m", "check_jsonschema", "--check-metaschema", *files],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def provider_defs() -> dict[str, Any]:
    """What the runbook schema's ``$defs`` copy from schemas/providers/*.json: per type, the help of
    its block's keys (``T_config``) and of its with: (``T_options``), and for a step whose provider
    is a providers: entry, every type's options (``any_options``). Help only: ``runbook validate``
    checks the values against the provider files, once templates are rendered."""
    defs: dict[str, Any] = {}
    union: dict[str, Any] = {}
    for name in BUILTIN:
        schema = _load(f"providers/{name}.json")
        for which in ("config", "options"):
            part = schema["$defs"][which]
            keys = {key: {k: sub[k] for k in HELP} for key, sub in part["properties"].items() if key != "type"}
            defs[f"{name}_{which}"] = {"title": part["title"], "description": part["description"], "properties": keys}
        for key, sub in schema["$defs"]["options"]["properties"].items():
            union[key] = {"title": f"{sub['title']} ({name})", "description": f"({name}) {sub['description']}",
                          "examples": sub["examples"]}
    defs["any_options"] = {"title": "Provider options",
                           "description": "The options of the step's provider type (connection_key, version, "
                                          "external_user_id, ...); each says which type takes it.",
                           "properties": union}
    return defs


def test_the_runbook_schema_copies_the_provider_schemas_help() -> None:
    defs = _load("runbook.schema.json")["$defs"]
    for name, expected in provider_defs().items():
        assert defs[name] == expected, f"$defs/{name} is not the help of schemas/providers/*.json"


def test_provider_blocks_and_with_take_their_help_from_the_provider_type() -> None:
    defs = _load("runbook.schema.json")["$defs"]
    blocks = {b["if"]["properties"]["type"]["const"]: b["then"]["$ref"] for b in defs["provider"]["allOf"]}
    assert blocks == {name: f"#/$defs/{name}_config" for name in BUILTIN}
    options = {json.dumps(b["if"]["properties"]["provider"]): b["then"]["properties"]["with"]["$ref"]
               for b in defs["step"]["allOf"]}
    assert options == {**{json.dumps({"const": name}): f"#/$defs/{name}_options" for name in BUILTIN},
                       json.dumps({"not": {"enum": list(BUILTIN)}}): "#/$defs/any_options"}
    for name in BUILTIN:  # what registry.type_info reads
        schema = _load(f"providers/{name}.json")
        assert schema["x-runbook"]["type"] == name and schema["$ref"] == "#/$defs/config"
        assert set(schema["$defs"]) == {"config", "options"}


def _nodes(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key not in ("examples", "default", "const", "enum", "x-runbook"):
                yield from _nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _nodes(value)


def test_a_reference_has_only_help_beside_it() -> None:
    """Beside a ``$ref``, yaml-language-server merges the definition in under the property's own
    title, description and examples; beside ``allOf`` (or any constraint) it shows the shared
    definition's ("Duration") and both lists of examples."""
    refs = [n for n in _nodes(_load("runbook.schema.json")) if "$ref" in n]
    assert len(refs) > 20
    for node in refs:
        assert set(node) <= {"$ref", "$comment", *HELP}, node
    shared = ("duration", "retry", "dispatch", "api")
    for node in _nodes(_load("runbook.schema.json")):
        assert all({"$ref": f"#/$defs/{name}"} not in node.get("allOf", []) for name in shared), node
        if node.get("$ref", "").rsplit("/", 1)[-1] in shared:
            assert all(node.get(k) for k in HELP), node


def test_dispatch_says_exactly_one_style_without_max_properties() -> None:
    dispatch = _load("runbook.schema.json")["$defs"]["dispatch"]
    assert not {"minProperties", "maxProperties"} & set(dispatch)  # editors offer no key past maxProperties
    assert [b["required"] for b in dispatch["oneOf"]] == [["id"], ["key"], ["api"], ["code"]]
    runbook = validator("runbook.schema.json")

    def messages(value: Any) -> list[str]:
        doc = {"version": 1, "name": "x", "steps": [{"id": "a", "provider": "membrane", "dispatch": value}]}
        return [m.text for m in schema_messages(runbook, doc)]

    assert messages({"id": "x"}) == []
    assert messages({"id": "x", "key": "y"}) == ["needs exactly one dispatch style of id, key, api, code "
                                                 "(found: id, key)"]
    assert messages({}) == ["needs exactly one dispatch style of id, key, api, code (found: none)"]
    assert messages({"idd": "x"}) == ["unknown key 'idd' (did you mean 'id'?)"]
    assert messages({"idd": "x", "code": "y"}) == ["unknown key 'idd' (did you mean 'id'?)"]


@pytest.mark.parametrize(
    ("step", "expected"),
    [
        ({"id": "a", "provder": "membrane", "dispatch": {"id": "x"}},
         ["unknown key 'provder' (did you mean 'provider'?)"]),
        ({"id": "a", "runbok": "./b.yml"}, ["unknown key 'runbok' (did you mean 'runbook'?)"]),
        # a misspelling of another key does not hide a key that is missing
        ({"id": "a", "dispatch": {"id": "x"}, "tiemout": 3},
         ["missing required key 'provider'", "unknown key 'tiemout' (did you mean 'timeout'?)"]),
    ],
)
def test_one_misspelt_key_is_one_error(step: dict[str, Any], expected: list[str]) -> None:
    doc = {"version": 1, "name": "x", "steps": [step]}
    assert sorted(m.text for m in schema_messages(validator("runbook.schema.json"), doc)) == expected


def test_a_provider_schema_still_checks_its_block() -> None:
    from engine.providers.registry import type_info

    info = type_info("pipedream")
    assert info is not None and info.styles == ("id", "api") and info.step_extras == ("stash_id",)
    found = schema_messages(checker(info.config_schema), {"type": "pipedream", "projct_id": "proj_a"})
    assert [m.text for m in found] == ["unknown key 'projct_id' (did you mean 'project_id'?)"]


# -- yaml-language-server over LSP stdio -----------------------------------------------------


def _server_script() -> Path:
    """yaml-language-server's entry script: $RUNBOOK_YAML_LANGUAGE_SERVER, else one npm installs
    once into a cache folder. Skips when node or npm is missing or the install fails (offline),
    on a developer's machine; in CI (.ci/run installs node and npm) those are failures."""
    given = os.environ.get("RUNBOOK_YAML_LANGUAGE_SERVER")
    if given:
        return Path(given)
    unavailable = pytest.fail if os.environ.get("RUNBOOK_REQUIRE_JS_SDK") else pytest.skip
    if shutil.which("node") is None or shutil.which("npm") is None:
        unavailable("node and npm are needed to run yaml-language-server")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "runbook-tests" / YAML_LANGUAGE_SERVER
    script = cache / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
    if not script.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        try:
            done = subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
                                   "--no-save", YAML_LANGUAGE_SERVER], capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            unavailable(f"npm install {YAML_LANGUAGE_SERVER} took too long")
        if done.returncode != 0 or not script.is_file():
            unavailable(f"npm install {YAML_LANGUAGE_SERVER} failed: {done.stderr[-500:]}")
    return script


class LanguageServer:
    """A JSON-RPC client of a language server on stdio (Content-Length framing)."""

    def __init__(self, command: list[str]) -> None:
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL)
        self.messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.diagnostics: dict[str, list[dict[str, Any]]] = {}
        self.next_id = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        out = self.process.stdout
        assert out is not None
        while True:
            length = None
            while (line := out.readline()) not in (b"\r\n", b"\n"):
                if not line:
                    self.messages.put(None)
                    return
                name, _, value = line.decode("ascii").partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            assert length is not None
            self.messages.put(json.loads(out.read(length)))

    def _send(self, message: dict[str, Any]) -> None:
        data = json.dumps({"jsonrpc": "2.0", **message}).encode()
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        stdin.flush()

    def notify(self, method: str, params: dict[str, Any]) -> None:
        self._send({"method": method, "params": params})

    def _next(self, deadline: float) -> dict[str, Any]:
        try:
            message = self.messages.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            raise AssertionError("yaml-language-server did not answer in time") from None
        if message is None:
            raise AssertionError("yaml-language-server exited")
        if "method" in message and "id" in message:  # the server asks: settings, or registrations
            items = message.get("params", {}).get("items", [])
            result: Any = [SETTINGS.get(i.get("section")) for i in items] if message["method"] == \
                "workspace/configuration" else None
            self._send({"id": message["id"], "result": result})
        elif message.get("method") == "textDocument/publishDiagnostics":
            self.diagnostics[message["params"]["uri"]] = message["params"]["diagnostics"]
        return message

    def request(self, method: str, params: dict[str, Any], timeout: float = 60) -> Any:
        self.next_id += 1
        ident = self.next_id
        self._send({"id": ident, "method": method, "params": params})
        deadline = time.monotonic() + timeout
        while True:
            message = self._next(deadline)
            if message.get("id") == ident and "method" not in message:
                assert "error" not in message, message
                return message.get("result")

    def diagnostics_of(self, uri: str, timeout: float = 60) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while uri not in self.diagnostics:
            self._next(deadline)
        return self.diagnostics[uri]

    def close(self) -> None:
        try:
            self.request("shutdown", {}, timeout=10)
            self.notify("exit", {})
            self.process.wait(timeout=10)
        except (AssertionError, OSError, subprocess.TimeoutExpired):
            self.process.kill()
            self.process.wait()


SETTINGS: dict[str | None, Any] = {
    "yaml": {"validate": True, "hover": True, "completion": True, "schemas": {}, "schemaStore": {"enable": False}},
    "editor": {"tabSize": 2},
    "files": {},
    "http": {},
    "[yaml]": None,
}


@pytest.fixture(scope="module")
def server() -> Iterator[LanguageServer]:
    lsp = LanguageServer(["node", str(_server_script()), "--stdio"])
    try:
        lsp.request("initialize", {
            "processId": os.getpid(), "rootUri": None,
            "capabilities": {"workspace": {"configuration": True},
                             "textDocument": {"completion": {"completionItem": {"snippetSupport": True}},
                                              "hover": {"contentFormat": ["markdown", "plaintext"]}}},
        })
        lsp.notify("initialized", {})
        lsp.notify("workspace/didChangeConfiguration", {"settings": SETTINGS})
        yield lsp
    finally:
        lsp.close()


_opened = 0


def _open(server: LanguageServer, text: str) -> str:
    """Open ``text`` with a modeline naming the runbook schema; its URI."""
    global _opened
    _opened += 1
    uri = f"file:///tmp/runbook-editor-test/doc{_opened}.yml"
    modeline = f"# yaml-language-server: $schema={(SCHEMAS / 'runbook.schema.json').as_uri()}\n"
    server.notify("textDocument/didOpen", {"textDocument": {"uri": uri, "languageId": "yaml", "version": 1,
                                                            "text": modeline + text}})
    return uri


def _at(uri: str, text: str, marker: str, shift: int = 0) -> dict[str, Any]:
    """The position of ``marker`` in ``text`` (after the modeline), plus ``shift`` characters."""
    before = text[:text.index(marker)]
    line = before.count("\n") + 1
    return {"textDocument": {"uri": uri},
            "position": {"line": line, "character": len(before) - (before.rfind("\n") + 1) + shift}}


def _labels(result: Any) -> list[str]:
    items = result["items"] if isinstance(result, dict) else result or []
    return [item["label"] for item in items]


EMPTY_DISPATCH = """\
version: 1
name: editor
providers:
  crm:
    type: membrane
    $BLOCK
steps:
  - id: a
    provider: membrane
    timeout: 30s
    dispatch:
      $DISPATCH
  - id: b
    provider: pipedream
    dispatch: {id: x}
    with:
      $WITH
"""


def test_an_empty_dispatch_offers_the_four_styles(server: LanguageServer) -> None:
    text = EMPTY_DISPATCH.replace("$BLOCK", "").replace("$WITH", "")
    uri = _open(server, text.replace("$DISPATCH", ""))
    labels = _labels(server.request("textDocument/completion", _at(uri, text, "$DISPATCH")))
    assert sorted(labels) == ["api", "code", "id", "key"]


def test_timeout_hovers_with_its_own_help(server: LanguageServer) -> None:
    text = EMPTY_DISPATCH.replace("$BLOCK", "").replace("$WITH", "").replace("$DISPATCH", "id: x")
    uri = _open(server, text)
    hover = server.request("textDocument/hover", _at(uri, text, "timeout: 30s", 2))
    value = hover["contents"]["value"]
    assert value.startswith("#### Timeout\n\nHow long each attempt may take"), value
    assert "Duration" not in value
    assert value.count("Example:") == 3  # the property's own examples, once


def test_provider_blocks_and_with_complete_the_keys_of_their_type(server: LanguageServer) -> None:
    text = EMPTY_DISPATCH.replace("$DISPATCH", "id: x")
    uri = _open(server, text.replace("$BLOCK", "").replace("$WITH", ""))
    block = _labels(server.request("textDocument/completion", _at(uri, text, "$BLOCK")))
    assert {"token", "workspace_key", "base_url", "rate_limit"} <= set(block) and "project_id" not in block
    options = _labels(server.request("textDocument/completion",
                                     _at(uri, text.replace("$BLOCK", ""), "$WITH")))
    assert sorted(options) == ["account_id", "dynamic_props_id", "external_user_id", "stash_id", "version"]


def test_two_dispatch_styles_are_flagged_in_the_editor(server: LanguageServer) -> None:
    text = EMPTY_DISPATCH.replace("$BLOCK", "").replace("$WITH", "{}").replace("$DISPATCH", "{id: x, key: y}")
    text = text.replace("dispatch:\n      {", "dispatch: {")
    uri = _open(server, text)
    assert [d["message"] for d in server.diagnostics_of(uri)] == ["only one of id, key, api, code"]
