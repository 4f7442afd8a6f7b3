"""Frozen data built from a validated runbook, and the results of running it."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from engine.loader import SourceMap

__all__ = [
    "RetryPolicy",
    "ProviderSpec",
    "Step",
    "Runbook",
    "Status",
    "Attempt",
    "StepError",
    "StepResult",
    "parse_duration",
]

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: float | int | str) -> float:
    """Seconds from a number or a string like ``500ms``, ``30s``, ``2m``, ``1h``."""
    if isinstance(value, (int, float)):
        return float(value)
    unit = "ms" if value.endswith("ms") else value[-1]
    return float(value[: -len(unit)]) * _UNITS[unit]


@dataclass(frozen=True)
class RetryPolicy:
    """When and how often a step is tried again (SPEC §3)."""

    attempts: int = 1
    backoff: str = "exponential"
    initial_delay: float = 1.0
    max_delay: float = 30.0
    max_elapsed: float | None = None
    on: frozenset[str] = frozenset({"connection", "429"})


@dataclass(frozen=True)
class ProviderSpec:
    """A named provider instance: its type and its (templated) configuration."""

    name: str
    type: str
    config: dict[str, Any]
    path: tuple = ()


@dataclass(frozen=True)
class Step:
    """One validated step, its templated fields still unrendered."""

    id: str
    name: str | None
    provider: str
    provider_type: str
    style: str
    target: Any
    input: Any
    options: dict[str, Any]
    when: str | bool | None
    timeout: float | None
    retry: RetryPolicy
    continue_on_error: bool
    asserts: tuple[str, ...]
    path: tuple
    is_finally: bool = False
    step_timeout: float | None = None

    def identity(self) -> dict[str, Any]:
        """The fields that name a step in the manifest, reports and plans."""
        return {
            "id": self.id,
            "name": self.name,
            "section": "finally" if self.is_finally else "steps",
            "provider": self.provider,
            "provider_type": self.provider_type,
            "dispatch": self.style,
        }


@dataclass(frozen=True)
class Runbook:
    """A validated runbook."""

    path: str
    name: str
    description: str | None
    vars: dict[str, Any]
    providers: dict[str, ProviderSpec]
    steps: tuple[Step, ...]
    finally_steps: tuple[Step, ...]
    outputs: dict[str, Any]
    sha256: str
    source: SourceMap
    run_timeout: float | None = None


class Status(str, enum.Enum):
    """The fate of a step (and, for SUCCEEDED/FAILED/INTERRUPTED/RUNNING, of a run)."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"
    NOT_RUN = "not_run"
    RUNNING = "running"


@dataclass
class Attempt:
    """One try of a step."""

    number: int
    started_at: str
    duration_ms: int
    http_status: int | None = None
    error: str | None = None


@dataclass
class StepError:
    """A step's typed failure (see :mod:`engine.providers.base` for the types)."""

    type: str
    message: str
    http_status: int | None = None
    attribution: str | None = None
    provider_error: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.type,
            "message": self.message,
            "http_status": self.http_status,
            "attribution": self.attribution,
        }
        if self.provider_error:
            out["provider_error"] = self.provider_error
        return out


@dataclass
class StepResult:
    """What happened to one step; the runner's only output per step."""

    step: Step
    status: Status
    started_at: str | None = None
    finished_at: str | None = None
    duration_ms: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    request: Any = None
    request_sha256: str | None = None
    output: Any = None
    exports: dict[str, Any] = field(default_factory=dict)
    logs: list[Any] = field(default_factory=list)
    run_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: StepError | None = None
    reused_from: str | None = None

    def context(self) -> dict[str, Any]:
        """The step as later templates see it: ``steps.<id>``."""
        ctx = {
            "status": self.status.value,
            "output": self.output,
            "exports": self.exports,
            "logs": self.logs,
            "run_id": self.run_id,
            "error": self.error.to_json() if self.error else None,
            "duration_ms": self.duration_ms,
        }
        ctx.update(self.extra)
        return ctx
