"""The emulator's contract with the official JS SDKs: ``@membranehq/sdk`` and ``@pipedream/sdk``,
at the versions tests/sdk/package-lock.json pins, driven by tests/sdk/contract.cjs against
``engine.emulator`` over real HTTP on loopback.

The SDKs are installed with ``npm ci`` from the npm registry into a cache folder outside the
repository (``$RUNBOOK_SDK_CACHE``, else ``~/.cache/runbook``; one folder per lock file, so a new
lock installs afresh and an old folder can be deleted at any time). Without ``node`` and ``npm``,
or without the registry, the tests skip; with ``RUNBOOK_REQUIRE_JS_SDK=1`` (CI) they fail instead.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from engine.emulator import Emulator, start

SDK_DIR = Path(__file__).resolve().parent / "sdk"
SECRET = "js-workspace-secret"


def _unavailable(reason: str) -> None:
    if os.environ.get("RUNBOOK_REQUIRE_JS_SDK") == "1":
        pytest.fail(f"the JS SDK contract tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def installed() -> Path:
    """The folder the SDKs are installed in (``npm ci`` the first time)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _unavailable("node and npm are not installed")
    lock = (SDK_DIR / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("RUNBOOK_SDK_CACHE") or Path.home() / ".cache" / "runbook")
    folder = cache / f"js-sdk-{hashlib.sha256(lock).hexdigest()[:12]}"
    done = folder / "node_modules" / ".runbook-installed"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copyfile(SDK_DIR / name, folder / name)
        try:
            result = subprocess.run([str(npm), "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=folder,
                                    capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            _unavailable("npm ci timed out")
        if result.returncode != 0:
            _unavailable(f"npm ci failed (no registry?): {result.stderr.strip()[-500:]}")
        done.write_text("ok\n")
    shutil.copyfile(SDK_DIR / "contract.cjs", folder / "contract.cjs")
    return folder


def drive(folder: Path, which: str, emu: Emulator, *extra: str) -> dict[str, Any]:
    result = subprocess.run(["node", "contract.cjs", which, emu.url, *extra], cwd=folder,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out: dict[str, Any] = json.loads(result.stdout)
    return out


@pytest.fixture(scope="module")
def membrane_run(installed: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with start(membrane_workspace_secret=SECRET) as emu:
        return drive(installed, "membrane", emu, SECRET), emu.requests


@pytest.fixture(scope="module")
def pipedream_run(installed: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    with start() as emu:
        return drive(installed, "pipedream", emu), emu.requests


def ok(result: dict[str, Any]) -> Any:
    assert "ok" in result, result
    return result["ok"]


def err(result: dict[str, Any]) -> dict[str, Any]:
    assert "error" in result, result
    error: dict[str, Any] = result["error"]
    return error


# -- Membrane ---------------------------------------------------------------------------------


def test_membrane_act_and_its_headers(membrane_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, requests = membrane_run
    act = ok(out["act"])
    assert act["output"]["email"] == "jane@example.com" and act["actionRunId"].startswith("run_")
    first = requests[0]
    assert first["path"] == "/act"
    assert first["headers"]["authorization"] == "Bearer pat-emulator-token"
    assert first["headers"]["membrane-api-version"] == "2025-10-21"


def test_membrane_errors_become_the_sdks_error_classes(
        membrane_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, _ = membrane_run
    bad = err(out["actBadInput"])
    assert (bad["name"], bad["type"]) == ("BadRequestError", "bad_request")
    assert bad["data"]["actionRunId"].startswith("run_")
    failing = err(out["actFailing"])
    assert (failing["name"], failing["type"]) == ("ActionRunError", "action_run")
    defunct = err(out["actDefunct"])
    assert (defunct["name"], defunct["type"], defunct["key"]) == ("ConnectionError", "connection",
                                                                  "connection_is_defunct")
    missing = err(out["getMissing"])
    assert (missing["name"], missing["type"], missing["key"]) == ("BadRequestError", "bad_request", "not_found")


def test_membrane_action_definitions(membrane_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, _ = membrane_run
    action = ok(out["getAction"])
    assert action["key"] == "hubspot-create-contact" and action["name"] == "Create contact"
    assert action["inputSchema"]["required"] == ["email"] and action["revision"]
    assert ok(out["getActionByQuery"])["key"] == "gmail-send-email"


def test_membrane_legacy_and_connection_runs(membrane_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, requests = membrane_run
    assert ok(out["runSaved"])["output"]["email"] == "a@b.io"
    assert err(out["runSavedBadInput"])["type"] == "bad_request"
    assert ok(out["runOnConnection"])["output"]["subject"] == "hi"
    legacy = next(r for r in requests if r["path"] == "/actions/hubspot-create-contact/run")
    assert legacy["body"] == {"input": {"email": "a@b.io"}}  # what the SDK sends: {input}, not the input
    assert legacy["query"] == {"connectionKey": "crm"}
    on_connection = next(r for r in requests if r["path"] == "/connections/crm/actions/gmail-send-email/run")
    assert on_connection["body"] == {"to": "a@b.io", "subject": "hi"}  # here the body is the input


def test_membrane_run_logs(membrane_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, _ = membrane_run
    log = ok(out["runLog"])
    assert log["id"] == ok(out["act"])["actionRunId"]
    for field in ("name", "integrationId", "connectionId", "input", "completedAt", "duration", "meta", "status",
                  "createdAt", "userId", "integrationActionId"):
        assert field in log, field
    assert log["meta"] == {"from": "sdk"} and log["input"] == {"email": "jane@example.com"}
    assert log["action"]["key"] == "hubspot-create-contact"  # the /act body, to replay
    listed = ok(out["runLogs"])
    assert len(listed["items"]) == 2 and listed["cursor"]
    assert all(item["status"] == "success" for item in listed["items"])
    errors = ok(out["runLogsErrors"])["items"]
    assert errors and all(item["status"] == "error" for item in errors)


def test_membrane_tokens(membrane_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, requests = membrane_run
    assert "valid JWT" in err(out["opaqueToken"])["message"]  # refused by the SDK itself
    assert not any(r["headers"].get("authorization") == "Bearer emulator-token" for r in requests)
    assert ok(out["workspaceKey"])["output"]["n"] == 1  # the SDK's own HS256 JWT, verified
    wrong = err(out["wrongSecret"])
    assert (wrong["type"], wrong["key"]) == ("bad_request", "not_authenticated")


# -- Pipedream --------------------------------------------------------------------------------


def test_pipedream_run_and_token_exchange(pipedream_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, requests = pipedream_run
    run = ok(out["run"])
    assert run["ret"]["channel"] == "C1" and run["stashId"].startswith("sth_")
    assert requests[0]["path"] == "/v1/oauth/token"
    assert requests[1]["headers"]["user-agent"].startswith("@pipedream/sdk/")
    bad = err(out["runBadProps"])
    assert bad["status"] == 400 and "'slack' is required" in bad["body"]["error"]["message"]
    failing = err(out["failing"])
    assert failing["status"] == 404 and failing["body"]["error"]["code"] == "not_found"


def test_pipedream_components_props_and_accounts(
        pipedream_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, _ = pipedream_run
    action = ok(out["retrieve"])["data"]
    assert action["version"] == "1.2.0" and [p["name"] for p in action["configurableProps"]][:2] == ["github", "repo"]
    assert ok(out["component"])["data"] == action
    assert ok(out["reload"])["dynamicProps"]["id"].startswith("dyp_")
    accounts = ok(out["accounts"])
    assert len(accounts) == 1 and accounts[0]["app"]["nameSlug"] == "slack"


def test_pipedream_proxy_as_the_js_sdk_encodes_it(
        pipedream_run: tuple[dict[str, Any], list[dict[str, Any]]]) -> None:
    out, requests = pipedream_run
    got = ok(out["proxyGet"])
    assert got["url"] == "https://api.github.com/user?page=2" and got["headers"]["x-trace"] == "t-1"
    proxied = [r for r in requests if "/proxy/" in r["path"]]
    assert "%3D" in proxied[0]["path"] or "%2B" in proxied[0]["path"] or "%2F" in proxied[0]["path"]
    assert ok(out["proxyPost"])["body"] == {"title": "t"}
    png = base64.b64decode(ok(out["proxyBinary"])["base64"])
    assert png.startswith(b"\x89PNG")
