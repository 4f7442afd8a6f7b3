"""A headless Chromium driven over its DevTools protocol, for tests that load a page for real.

It starts Debian's ``chromium`` (as root: no sandbox; a fresh profile; none of its background
connections, which this machine's closed network would refuse) on a DevTools port of its
choosing, opens one page and records what the page says: console errors, uncaught exceptions,
log entries (a Content Security Policy violation is one), every network request and any
dialog. Without Chromium the test is skipped, except in CI (``CI=true``), where ``.ci/run``
installs it and its absence is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
          "--disable-component-update", "--disable-sync", "--no-first-run", "--no-default-browser-check",
          "--disable-extensions", "--mute-audio", "--hide-scrollbars"]


def chromium_path() -> str:
    """The browser to drive; skips the test (fails it in CI) when there is none."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed: .ci/run installs Debian's chromium; the HTML report must be "
                    "tested in a real browser")
    pytest.skip("chromium is not installed (apt-get install -y chromium)")


class Page:
    """One page of a headless Chromium, and what it said."""

    def __init__(self, width: int = 1280, height: int = 900) -> None:
        import websocket  # websocket-client, a test extra

        self.profile = tempfile.mkdtemp(prefix="runbook-chromium-")
        self._log = open(os.path.join(self.profile, "chromium.log"), "wb")  # noqa: SIM115 closed in close()
        self.proc = subprocess.Popen(
            [chromium_path(), *_FLAGS, f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--remote-debugging-address=127.0.0.1", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log)
        self.events: list[dict[str, Any]] = []
        self._id = 0
        try:
            port, path = self._devtools_port()
            self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60,
                                                  suppress_origin=True)
            target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
            for domain in ("Page", "Runtime", "Log", "Network"):
                self.call(f"{domain}.enable")
            self.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        except BaseException:
            self.close()
            raise

    def _devtools_port(self) -> tuple[int, str]:
        marker = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if marker.exists():
                lines = marker.read_text().split()
                if len(lines) >= 2:
                    return int(lines[0]), lines[1]
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"chromium did not open its DevTools port: {self.browser_log()[-2000:]}")

    def browser_log(self) -> str:
        self._log.flush()
        return Path(self.profile, "chromium.log").read_text(errors="replace")

    # --- the protocol ---------------------------------------------------------------------------

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 60) -> dict[str, Any]:
        """Send a command; return its result, recording the events that came meanwhile."""
        self._id += 1
        message: dict[str, Any] = {"id": self._id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = self._recv(deadline)
            if reply is None:
                continue
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                result: dict[str, Any] = reply.get("result", {})
                return result
            if "method" in reply:
                self.events.append(reply)
        raise TimeoutError(method)

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.send(method, params, self.session)

    def wait_for(self, method: str, timeout: float = 60) -> dict[str, Any]:
        """The first event ``method`` (already received, or the next one)."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if event["method"] == method and not event.get("_seen"):
                    event["_seen"] = True
                    return event
            if time.monotonic() > deadline:
                raise TimeoutError(method)
            message = self._recv(deadline)
            if message is not None and "method" in message:
                self.events.append(message)

    def _recv(self, deadline: float) -> dict[str, Any] | None:
        """The next message, or None when none came before ``deadline``."""
        import websocket

        self.ws.settimeout(max(deadline - time.monotonic(), 0.05))
        try:
            message: dict[str, Any] = json.loads(self.ws.recv())
        except websocket.WebSocketTimeoutException:
            return None
        return message

    # --- what a test does -----------------------------------------------------------------------

    def open(self, path: Path) -> float:
        """Load the file and wait for its load event; the seconds it took."""
        started = time.monotonic()
        self.call("Page.navigate", {"url": path.resolve().as_uri()})
        self.wait_for("Page.loadEventFired")
        return time.monotonic() - started

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (an exception fails the test)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        self.eval(f"document.querySelector({json.dumps(selector)}).click()")

    def screenshot(self, path: Path, *, full_page: bool = False) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            params["captureBeyondViewport"] = True
        data = self.call("Page.captureScreenshot", params)["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))

    def problems(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, error log entries, dialogs."""
        self.eval("0")  # let the events of what already happened arrive
        found = []
        for event in self.events:
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.exceptionThrown":
                found.append(f"exception: {params['exceptionDetails']}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert", "warning"):
                args = [a.get("value", a.get("description")) for a in params["args"]]
                found.append(f"console.{params['type']}: {args}")
            elif method == "Log.entryAdded" and params["entry"].get("level") in ("error", "warning"):
                found.append(f"log {params['entry'].get('source')}: {params['entry'].get('text')}")
            elif method == "Page.javascriptDialogOpening":
                found.append(f"dialog: {params.get('message')}")
        return found

    def requests(self) -> list[str]:
        """The URL of every request the page made."""
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    def close(self) -> None:
        try:
            if getattr(self, "ws", None) is not None:
                self.ws.close()
        finally:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self._log.close()
            shutil.rmtree(self.profile, ignore_errors=True)
