"""``runbook plan`` as text: one block per step (what ``plan --json`` prints as data)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["format_plan"]


def _seconds(value: float) -> str:
    """``500ms``, ``30s``, ``10m``, ``2h``: as a runbook would write it."""
    if value < 1:
        return f"{value * 1000:g}ms"
    for unit, size in (("h", 3600), ("m", 60)):
        if value >= size and value % size == 0:
            return f"{value / size:g}{unit}"
    return f"{value:g}s"


def _json_block(value: Any, indent: str) -> str:
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return text.replace("\n", "\n" + indent)


def _when_text(when: dict[str, Any]) -> str:
    if when["expression"] is None:
        return "always"
    if when["decided"]:
        return f"{'runs' if when['runs'] else 'skipped'}: {when['expression']} is {str(when['runs']).lower()}"
    return f"{when.get('note', 'at run time')}: {when['expression']}"


def _policy_text(step: dict[str, Any]) -> str:
    parts = []
    if step["timeout"] is not None:
        parts.append(f"timeout {_seconds(step['timeout'])} per attempt")
    retry = step["retry"]
    if retry["attempts"] > 1:
        parts.append(f"up to {retry['attempts']} attempts ({retry['backoff']}, on {', '.join(retry['on'])})")
    else:
        parts.append("one attempt")
    if step["continue_on_error"]:
        parts.append("continue on error")
    return ", ".join(parts)


def _input_text(spec: dict[str, Any]) -> str:
    """``email (string, required)=a@b.c``."""
    kind = ", ".join(p for p in (spec.get("type"), "required" if spec.get("required") else None) if p)
    value = json.dumps(spec["value"], ensure_ascii=False, default=str)
    return f"{spec['name']}" + (f" ({kind})" if kind else "") + f"={value}"


def _poll_text(poll: dict[str, Any]) -> str:
    """``re-sends this request (a read) every 5s until X, for at most 10m``."""
    every = f"every {_seconds(poll['interval'])}" + (", doubling" if poll["backoff"] == "exponential" else "")
    return f"re-sends this request (a read) {every} until {poll['until']}, for at most {_seconds(poll['timeout'])}"


def _fan_out_text(fan_out: dict[str, Any]) -> str:
    """``3 items as user, concurrency 2, fail fast; the request shown is the first item's``."""
    count = fan_out["items"]
    what = (f"{count} item{'s' if count != 1 else ''}" if count is not None
            else f"the items of {fan_out['expression']} (counted at run time)")
    policy = f"concurrency {fan_out['concurrency']}, " + ("fail fast" if fan_out["fail_fast"] else "every item runs")
    shown = "; no request (no items)" if count == 0 else (
        "; the request shown is the first item's" if count else "")
    return f"{what} as {fan_out['as']}, {policy}{shown}"


def _step_block(step: dict[str, Any], label: str, indent: str) -> list[str]:
    """One step's lines (a called runbook's steps follow it, numbered ``1.1``, indented)."""
    pad = indent + " " * 13
    out = ["", f"{indent}{label} {step['id']}" + (f"  {step['name']}" if step["name"] else "")]

    def line(key: str, text: str) -> None:
        out.append(f"{indent}   {key.ljust(9)} {text}")

    if "calls" in step:
        line("runbook", f"{step['runbook']} ({step['called']['name']}), its steps below")
    else:
        provider = step["provider"] if step["provider"] == step["provider_type"] \
            else f"{step['provider']} ({step['provider_type']})"
        line("provider", provider + (f": {step['endpoint']}" if step["endpoint"] else ""))
        if step["headers"]:
            line("headers", ", ".join(f"{k}: {v}" for k, v in step["headers"].items()))
        line("dispatch", step["dispatch"])
        if step.get("action"):  # plan --remote: what the remote check resolved the action to
            action = step["action"]
            line("action", f"{action['name']} v {action['version']}" + (" (from cache)" if action["cached"] else ""))
    if step.get("for_each"):
        line("for each", _fan_out_text(step["for_each"]))
    line("when", _when_text(step["when"]))
    if step["uses"]:
        line("uses", f"{', '.join(step['uses'])} (placeholders until they run)")
    if "calls" in step:
        line("inputs", _json_block(step["with"], pad))
        for j, child in enumerate([*step["calls"], *step["finally"]], 1):
            out += _step_block(child, f"{label.rstrip('.')}.{j}", indent + "   ")
        return out
    line("policy", _policy_text(step))
    if step.get("poll"):
        line("polls", _poll_text(step["poll"]))
    line("request", _json_block(step["request"], pad))
    if "with" in step:
        line("with", _json_block(step["with"], pad))
    for expression in step["assert"]:
        line("assert", f"{expression} (after the step)")
    return out


def format_plan(data: dict[str, Any]) -> str:
    """The plan as text, one block per step."""
    rb = data["runbook"]
    total = len(data["steps"]) + len(data["finally"])
    out = [f"plan: {rb['name']} ({rb['path']}), {total} step{'s' if total != 1 else ''}; nothing is sent", ""]
    if data.get("inputs"):
        out.append("inputs:   " + ", ".join(_input_text(i) for i in data["inputs"]))
        data = {**data, "vars": {k: v for k, v in data["vars"].items()
                                 if k not in {i["name"] for i in data["inputs"]}}}
    if data["vars"]:
        out.append("vars:     " + ", ".join(f"{k}={json.dumps(v, ensure_ascii=False, default=str)}"
                                            for k, v in data["vars"].items()))
    if data["secrets"]:
        out.append("secrets:  " + ", ".join(f"{s['name']} ({'set' if s['set'] else 'NOT SET'})"
                                            for s in data["secrets"]))
        if not all(s["set"] for s in data["secrets"]):
            out.append("          (a run stops at its pre-flight check until every secret is set, "
                       "unless --emulate)")
    number = 0
    for section in ("steps", "finally"):
        if section == "finally" and data["finally"]:
            out += ["", "finally (always runs after the steps):"]
        for step in data[section]:
            number += 1
            out += _step_block(step, f"{number}.", "")
    if data["outputs"]:
        out += ["", "outputs:"]
        width = max(len(k) for k in data["outputs"])
        for key, value in data["outputs"].items():
            out.append(f"  {key.ljust(width)}  {_json_block(value, ' ' * (width + 4))}")
    return "\n".join(out) + "\n"
