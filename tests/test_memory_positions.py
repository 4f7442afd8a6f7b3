"""A run keeps few positions (memory, issue 10), yet every error it reports names FILE:LINE:COL
exactly: what a full load of the file says, even in a runbook of anchors and merges. Positions
a run did not keep are read from the file again; if the file changed since the run read it, the
location says so instead of pointing at a line that may no longer hold the field."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from engine.emulator import Emulator
from engine.errors import LocatedErrors
from engine.executor import Executor
from engine.loader import SparseSourceMap, load_file
from engine.model import Status
from engine.providers.base import ActionCall, ActionResult, ProviderError
from engine.templating import RECENT_LOOKUPS, Templates
from engine.validation import check_file, load_checked
from tests.conftest import run_cli

MERGED = """\
version: 1
name: located
vars:
  n: 5
  base: &base {provider: membrane, continue_on_error: true, dispatch: {key: fail-500}}
  check: &check ["steps.a.output.nothing == 1"]
steps:
  - <<: *base
    id: a
  - id: b
    <<: *base
    dispatch: {key: ok}
    assert: *check
  - id: c
    provider: membrane
    continue_on_error: true
    dispatch: {key: ok}
    with: {connection_key: "{{ vars.n }}"}
  - id: d
    provider: membrane
    continue_on_error: true
    when: "steps.c.output.nope"
    dispatch: {key: ok}
  - id: e
    <<: *base
    dispatch: {key: ok}
    input: {text: "{{ steps.a.output.missing.deeper }}"}
"""

#: The field each step's error is about, and the text that stands there.
FIELDS = {
    "a": (("steps", 0, "dispatch", "key"), "fail-500"),  # a provider's error, in a merged mapping
    "b": (("steps", 1, "assert", 0), '"steps.a.output.nothing == 1"'),  # an aliased assert
    "c": (("steps", 2, "with"), '{connection_key: "{{ vars.n }}"}'),  # not kept: read again
    "d": (("steps", 3, "when"), '"steps.c.output.nope"'),
    "e": (("steps", 4, "input", "text"), '"{{ steps.a.output.missing'),
}


def where(path: Path, text: str) -> str:
    """``FILE:LINE:COL`` of the first place ``text`` stands in ``path``."""
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if text in line:
            return f"{path}:{number}:{line.index(text) + 1}"
    raise AssertionError(text)


def full_position(path: Path, field: tuple) -> str:
    line, col = load_file(str(path)).source.position(field)
    return f"{path}:{line}:{col}"


def test_every_run_time_error_is_located_as_a_full_load_locates_it(
        tmp_path: Path, emulator: Emulator, membrane_env: dict[str, str]) -> None:
    path = tmp_path / "merged.yml"
    path.write_text(MERGED)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1, result.stderr
    errors = {s["id"]: s["error"] for s in result.manifest["steps"] if s["error"]}
    assert {k: e["type"] for k, e in errors.items()} == {
        "a": "server_error", "b": "template", "c": "configuration", "d": "template", "e": "template"}
    for step, (field, text) in FIELDS.items():
        location = errors[step]["location"]
        assert location == full_position(path, field) == where(path, text), step
        assert f"      {location}: " in result.stdout


def test_an_output_that_fails_is_located_exactly(write, tmp_path: Path, emulator: Emulator,
                                                 membrane_env: dict[str, str]) -> None:
    path = write("""
        version: 1
        name: outputs
        vars: {common: &out "{{ steps.a.output.nothing.here }}"}
        steps:
          - {id: a, provider: membrane, dispatch: {key: ok}}
        outputs:
          fine: "{{ steps.a.status }}"
          broken: *out
    """)
    result = run_cli(["run", str(path)], cwd=tmp_path, env=membrane_env)
    assert result.code == 1
    location = full_position(path, ("outputs", "broken"))
    assert location == where(path, "&out")  # the alias copies where the anchored value stands
    assert f"error: {location}: " in result.stderr


def test_a_run_words_and_locates_problems_as_validate_does(write, tmp_path: Path) -> None:
    """A run's first look is at a sparse load; whatever it finds is located on a full one."""
    path = write("""
        version: 1
        name: warned
        vars: {base: &b {provider: membrane, dispatch: {key: k}}}
        steps:
          - <<: *b
            id: a
            input: {flag: yes, n: 012}
    """)
    warnings = [str(p) for p in check_file(str(path))]
    assert len(warnings) == 2
    runbook, found = load_checked(str(path), Templates(), strict=True, sparse=True)
    assert [str(p) for p in found] == warnings
    assert isinstance(runbook.source, SparseSourceMap)  # the run still keeps few positions
    path.write_text(path.read_text() + "    id: again\n")
    problems = [str(p) for p in check_file(str(path))]
    with pytest.raises(LocatedErrors) as info:
        load_checked(str(path), Templates(), strict=True, sparse=True)
    assert [str(p) for p in info.value.problems] == problems
    assert problems == [f"{path}:8:5: duplicate key 'id' (first defined on line 6)"]


class _Editor:
    """A membrane stand-in that rewrites the runbook while its first step is in flight."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.text = path, text

    def request_body(self, call: ActionCall) -> Any:
        return {call.style: call.target}

    def send(self, call: ActionCall, timeout: float | None) -> ActionResult:
        if self.text is not None:
            self.path.write_text(self.text)
            self.text = None
        if call.target == "fail":
            raise ProviderError("server_error", "it failed", http_status=500)
        return ActionResult({"ok": True}, run_id="r", http_status=200)

    def close(self) -> None:
        pass


CHANGED = """\
version: 1
name: changed
vars: {n: 5}
steps:
  - id: first
    provider: membrane
    dispatch: {key: ok}
  - id: options
    provider: membrane
    dispatch: {key: ok}
    with: {connection_key: "{{ vars.n }}"}
  - id: failing
    provider: membrane
    dispatch: {key: fail}
"""


def _run(tmp_path: Path, edited: str | None) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "changed.yml"
    path.write_text(CHANGED)
    templates = Templates()
    runbook, _ = load_checked(str(path), templates, strict=True, sparse=True)
    executor = Executor(runbook, templates, environ={}, providers={"membrane": _Editor(path, edited)})
    context: dict[str, Any] = {"vars": runbook.vars, "steps": {}, "run": {"id": "r"}}
    errors = {}
    for step in runbook.steps:
        result = executor.run_step(step, context)
        context["steps"][step.id] = result.context()
        if result.status is Status.FAILED:
            errors[step.id] = result.error.location
    return path, errors


def test_a_position_read_again_is_exact_when_the_file_is_unchanged(tmp_path: Path) -> None:
    path, errors = _run(tmp_path, CHANGED)  # written again, the same text
    assert errors == {
        "options": f"{path}:11:11",
        "failing": f"{path}:14:21",
    }
    assert errors["options"] == full_position(path, ("steps", 1, "with"))


def test_a_file_changed_during_the_run_gets_no_wrong_line(tmp_path: Path) -> None:
    """The runbook is edited while step 1 runs (two lines added on top). A position the run kept
    is still exact (it is of the text that runs); one it did not keep is not guessed from the
    new text: the location names the step as it stood, and says so."""
    path, errors = _run(tmp_path, "# edited\n# while running\n" + CHANGED)
    assert errors["failing"] == f"{path}:14:21"  # the dispatch style: kept
    assert errors["options"] == (f"{path}:8:5 (approximate: {path} has changed since the run read it, "
                                 "so this is where steps[1] starts)")
    assert CHANGED.splitlines()[7] == "  - id: options"  # line 8, column 5 of the text run


def test_a_run_keeps_a_few_positions_per_step(tmp_path: Path) -> None:
    steps = "".join(f"  - id: s{i}\n    provider: membrane\n    dispatch: {{id: x}}\n"
                    f"    input: {{n: \"{{{{ vars.n }}}}\", i: {i}, text: plain}}\n" for i in range(200))
    path = tmp_path / "long.yml"
    path.write_text(f"version: 1\nname: long\nvars: {{n: 1}}\nsteps:\n{steps}")
    runbook, _ = load_checked(str(path), Templates(), strict=True, sparse=True)
    source = runbook.source
    assert isinstance(source, SparseSourceMap)
    assert source.keys == {} and source.scalar_text == {}
    assert len(source.values) <= 4 * 200 + 10  # steps[i], its provider, dispatch style, template
    full = load_file(str(path)).source
    assert len(full.values) + len(full.keys) > 2.5 * len(source.values)
    assert source.locate(("steps", 7, "input", "i")) == (*full.values[("steps", 7, "input", "i")], "")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == runbook.sha256


def test_after_preflight_templates_keep_only_the_recent_lookups() -> None:
    templates = Templates()
    lookups = [f"{{{{ steps.s{i}.output.value }}}}" for i in range(RECENT_LOOKUPS * 3)]
    jinja = "{{ vars.n | default(1) }}"
    compiled = {source: templates.compile(source) for source in [*lookups, jinja]}
    templates.forget_lookups()
    assert list(templates._cache) == [jinja]  # Jinja's work is kept
    context = {"steps": {f"s{i}": {"output": {"value": i}} for i in range(RECENT_LOOKUPS * 3)}, "vars": {}}
    for i, source in enumerate(lookups):
        assert templates.compile(source) is compiled[source]  # the one validation made, used once
        assert templates.render(source, context) == i
    assert templates._unused == {} and len(templates._recent or {}) == RECENT_LOOKUPS
    assert templates.compile(lookups[0]) is not compiled[lookups[0]]  # dropped, lexed again
    assert templates.render(lookups[0], context) == 0 and templates.render(jinja, context) == 1
    first, second = (templates.compile(s)._parts[0][1] for s in lookups[-2:])  # type: ignore[index]
    assert first[1] is second[1] and first[2] is second[2]  # (True, "output"): one tuple for all
