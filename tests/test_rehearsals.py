"""Data-driven rehearsals (in the style of orquesta's): each file under tests/data/rehearsals
holds a runbook, the provider's answers and the run the engine must make of them. The real
conductor, executor and runner run it against an in-process scripted provider and clock."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.model import StepResult
from engine.runner import Runner
from engine.validation import load_runbook
from tests.fakes import FakeClock, ScriptedProvider

REHEARSALS = sorted((Path(__file__).parent / "data" / "rehearsals").glob("*.yml"))


class Collect:
    def __init__(self) -> None:
        self.results: list[StepResult] = []

    def step_started(self, step: object, result: object = None) -> None:
        pass

    def step_finished(self, result: StepResult) -> None:
        self.results.append(result)

    def items_started(self, step: object, count: int) -> None:
        pass

    def item_finished(self, result: StepResult) -> None:
        pass


@pytest.mark.parametrize("path", REHEARSALS, ids=[p.stem for p in REHEARSALS])
def test_rehearsal(path: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    runbook_path = tmp_path / "runbook.yml"
    runbook_path.write_text(yaml.safe_dump(case["runbook"], sort_keys=False))
    runbook, templates = load_runbook(str(runbook_path))
    clock = FakeClock()
    provider = ScriptedProvider(case.get("answers") or {}, clock)
    observer = Collect()
    runner = Runner(runbook, templates, vars=runbook.vars, environ={}, run_info={"id": "rehearsal"},
                    providers={"membrane": provider}, observer=observer, clock=clock)
    outcome = runner.run()
    expect = case["expect"]
    assert outcome.status.value == expect["status"]
    assert clock.slept == expect.get("slept", [])
    if "outputs" in expect:
        assert outcome.outputs == expect["outputs"]
    got = []
    for result, want in zip(observer.results, expect["steps"], strict=True):
        row = {"id": result.step.id, "status": result.status.value, "attempts": len(result.attempts)}
        if "output" in want:
            row["output"] = result.output
        if "error" in want:
            row["error"] = result.error.type if result.error else None
        got.append(row)
    assert got == expect["steps"]
    sent = [{"key": c.target, **({"input": c.input} if c.input is not None else {})} for c in provider.calls]
    assert sent == expect["sent"]
