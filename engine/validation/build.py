"""Building the frozen model (:class:`~engine.model.Runbook`) of a runbook that passed validation."""

from __future__ import annotations

import hashlib
from typing import Any

from engine.loader import Document, SparseSourceMap, load_file
from engine.model import CALL, PollPolicy, ProviderSpec, RetryPolicy, Runbook, Step, parse_duration, provider_config

__all__ = ["build_runbook", "built"]


_NO_RETRY = RetryPolicy()


def _retry(raw: dict[str, Any] | None) -> RetryPolicy:
    if not raw:
        return _NO_RETRY
    kwargs: dict[str, Any] = {}
    if "attempts" in raw:
        kwargs["attempts"] = raw["attempts"]
    if "backoff" in raw:
        kwargs["backoff"] = raw["backoff"]
    for key in ("initial_delay", "max_delay", "max_elapsed"):
        if key in raw:
            kwargs[key] = parse_duration(raw[key])
    if "on" in raw:
        kwargs["on"] = frozenset(str(c) for c in raw["on"])
    return RetryPolicy(**kwargs)


def build_runbook(doc: Document, path: str) -> Runbook:
    """The frozen :class:`Runbook` of a document that passed validation."""
    data = doc.data
    providers: dict[str, ProviderSpec] = {
        name: ProviderSpec(name, block["type"], provider_config(block),
                           ("providers", name), _rate_limit(block.get("rate_limit")))
        for name, block in (data.get("providers") or {}).items()
    }
    defaults = data.get("defaults") or {}
    inputs: dict[str, dict[str, Any]] = dict(data.get("inputs") or {})

    def make(section: str, i: int, raw: dict[str, Any]) -> Step:
        child: Runbook | None = None
        if "runbook" in raw:  # a call: the called runbook, built too (it passed validation with this one)
            from engine.validation.calls import called_path

            called = called_path(path, raw["runbook"])
            child = built(load_file(called), called)
            pname, style, target = CALL, CALL, raw["runbook"]
        else:
            pname = raw["provider"]
            if pname not in providers:
                providers[pname] = ProviderSpec(pname, pname, {}, ())
            style, target = next(iter(raw["dispatch"].items()))
        timeout = raw.get("timeout", defaults.get("timeout"))
        step_timeout = raw.get("step_timeout", defaults.get("step_timeout"))
        return Step(
            id=raw["id"],
            name=raw.get("name"),
            provider=pname,
            provider_type=providers[pname].type if child is None else CALL,
            style=style,
            target=target,
            input=raw.get("input"),
            options=raw.get("with") or {},
            when=raw.get("when"),
            timeout=parse_duration(timeout) if timeout is not None else None,
            retry=_retry(raw["retry"] if "retry" in raw else defaults.get("retry")),
            continue_on_error=bool(raw.get("continue_on_error", False)),
            asserts=tuple(raw.get("assert") or ()),
            path=(section, i),
            is_finally=section == "finally",
            step_timeout=parse_duration(step_timeout) if step_timeout is not None else None,
            for_each=raw.get("for_each"),
            item_name=raw.get("as", "item"),
            concurrency=int(raw.get("concurrency", 1)),
            fail_fast=bool(raw.get("fail_fast", True)),
            until=raw.get("until"),
            poll=_poll(raw.get("poll")),
            child=child,
        )

    steps = tuple(make("steps", i, s) for i, s in enumerate(data["steps"]))
    fin = tuple(make("finally", i, s) for i, s in enumerate(data.get("finally") or []))
    return Runbook(
        path=path,
        name=data["name"],
        description=data.get("description"),
        vars={**(data.get("vars") or {}), **{name: spec["default"] for name, spec in inputs.items()
                                              if "default" in spec}},
        providers=providers,
        steps=steps,
        finally_steps=fin,
        outputs=dict(data.get("outputs") or {}),
        sha256=hashlib.sha256(doc.text.encode("utf-8")).hexdigest(),
        source=doc.source,
        run_timeout=parse_duration(data["run_timeout"]) if "run_timeout" in data else None,
        inputs=inputs,
    )


def built(doc: Document, path: str) -> Runbook:
    """:func:`build_runbook`, its sparse source map readied for the run (exact positions read
    from the file again while it holds the text that was run)."""
    runbook = build_runbook(doc, path)
    if isinstance(runbook.source, SparseSourceMap):
        runbook.source.for_run(runbook.sha256)
    return runbook


def _poll(raw: Any) -> PollPolicy | None:
    """``poll: {interval, timeout, backoff}``."""
    if not isinstance(raw, dict):
        return None
    return PollPolicy(parse_duration(raw["interval"]), parse_duration(raw["timeout"]), raw.get("backoff", "fixed"))


def _rate_limit(raw: Any) -> tuple[int, float] | None:
    """``rate_limit: {requests, per}`` as (requests, seconds)."""
    if not isinstance(raw, dict):
        return None
    return int(raw["requests"]), parse_duration(raw["per"])
