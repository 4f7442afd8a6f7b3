"""In-process stand-ins for the outside world: a provider that answers from a script, a clock
that only moves when told. They implement the engine's own interfaces (the Provider
protocol, :class:`~engine.clock.Clock`); nothing of the engine is replaced."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from engine.clock import Clock
from engine.providers.base import ActionCall, ActionResult, ProviderError


class FakeClock(Clock):
    """Seconds that pass only by :meth:`sleep` and :meth:`advance`; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def timestamp(self) -> str:
        whole = int(self.now)
        return f"2026-12-01T00:{whole // 60 % 60:02d}:{whole % 60:02d}.{int(self.now * 1000) % 1000:03d}Z"

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds


Answer = Mapping[str, Any] | Callable[[ActionCall, float | None], Any]


class ScriptedProvider:
    """Answers each call from ``script[target]``, a list of answers used in turn (the last one
    repeats): ``{"output": ...}``, ``{"error": {"type", "status", "retry_after", "message"}}``,
    ``{"takes": seconds, ...}`` (the clock advances), ``{"raise": "KeyboardInterrupt"|"bug"}``."""

    type_name: ClassVar[str] = "membrane"
    styles: ClassVar[tuple[str, ...]] = ("id", "key", "api", "code")

    def __init__(self, script: Mapping[str, list[Mapping[str, Any]]], clock: FakeClock | None = None) -> None:
        self.script = {k: list(v) for k, v in script.items()}
        self.clock = clock
        self.calls: list[ActionCall] = []

    def request_body(self, call: ActionCall) -> Any:
        body: dict[str, Any] = {call.style: call.target}
        if call.input is not None:
            body["input"] = call.input
        return body

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        self.calls.append(call)
        answers = self.script.get(str(call.target), [{"output": {"echo": call.input}}])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if self.clock is not None and answer.get("takes"):
            self.clock.advance(float(answer["takes"]))
        if answer.get("raise") == "KeyboardInterrupt":
            raise KeyboardInterrupt
        if answer.get("raise") == "bug":
            raise ValueError("a bug in the provider")
        if "error" in answer:
            err = answer["error"]
            raise ProviderError(err["type"], err.get("message", err["type"]), http_status=err.get("status"),
                                retry_after=err.get("retry_after"), run_id=err.get("run_id"))
        return ActionResult(answer.get("output"), run_id=answer.get("run_id"), http_status=200)

    def close(self) -> None:
        pass
