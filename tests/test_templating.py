"""engine.templating: native values, strict undefined, the sandbox, taint."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.templating import REDACTED, TemplateError, Templates, render_value
from tests.conftest import base_env

CONTEXT = {
    "vars": {"n": 3, "name": "jane", "flag": False, "items": [1, 2]},
    "steps": {"a": {"output": {"id": 7, "tags": ["x"], "nested": {"k": None}}}},
    "secrets": {"TOKEN": "tok-123456"},
    "env": {"HOME": "/root"},
    "run": {"id": "r1"},
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ vars.n }}", 3),
        ("{{ vars.flag }}", False),
        ("{{ vars.items }}", [1, 2]),
        ("{{ steps.a.output.nested }}", {"k": None}),
        ("{{ steps.a.output.nested.k }}", None),
        ("{{ '123' }}", "123"),  # a string stays a string: no literal_eval guessing
        ("n={{ vars.n }}", "n=3"),
        ("{{ vars.n }}{{ vars.n }}", "33"),
        ("plain text", "plain text"),
        ("{{ steps.a.output.id is defined and steps.a.output.missing is not defined }}", True),
        ("{{ 'abc' | b64encode }}", "YWJj"),
    ],
)
def test_lone_expressions_keep_their_native_type(source: str, expected: object) -> None:
    real, redacted = render_value(source, Templates(), CONTEXT)
    assert real == expected and type(real) is type(expected)
    assert redacted == expected


def test_undefined_names_are_errors_naming_the_field() -> None:
    with pytest.raises(TemplateError, match=r"^input\.x: 'dict object' has no attribute 'idd'"):
        render_value({"x": "{{ steps.a.output.idd }}"}, Templates(), CONTEXT, "input")


@pytest.mark.parametrize(
    "source",
    [
        "{{ vars.__class__.__mro__ }}",
        "{{ ''.__class__.__subclasses__() }}",
        "{{ vars.items.append(3) }}",  # immutable sandbox: earlier outputs cannot be changed
    ],
)
def test_the_sandbox_refuses_unsafe_access(source: str) -> None:
    with pytest.raises(TemplateError):
        render_value(source, Templates(), CONTEXT)


def test_taint_redacts_whatever_touched_secrets() -> None:
    learned: list[object] = []
    value = {
        "a": "{{ secrets.TOKEN }}",
        "b": "{{ secrets.TOKEN | b64encode }}",
        "c": "{% set t = secrets.TOKEN %}{{ t[::-1] }}",
        "d": "{{ {'k': secrets.TOKEN} }}",
        "e": "{{ vars.name }}",
    }
    real, redacted = render_value(value, Templates(), CONTEXT, on_tainted=learned.append)
    assert real["a"] == "tok-123456" and real["c"] == "654321-kot"
    assert redacted == {"a": REDACTED, "b": REDACTED, "c": REDACTED, "d": REDACTED, "e": "jane"}
    assert "dG9rLTEyMzQ1Ng==" in learned  # the base64 is known, so an echo of it is scrubbed


def test_each_source_is_compiled_once() -> None:
    templates = Templates()
    first = templates.compile("{{ vars.n + 1 }}")
    assert templates.compile("{{ vars.n + 1 }}") is first
    assert first.analysis.names == frozenset({"vars"})


def test_analysis_finds_step_and_secret_references() -> None:
    analysis = Templates().compile(
        "{{ steps.a.output.id }} {{ steps['b'].x }} {{ secrets.T }} {{ vars.v }}").analysis
    assert analysis.steps == ("a", "b")
    assert analysis.secrets == ("T",)
    assert analysis.vars == ("v",)
    assert analysis.tainted and not analysis.dynamic_steps


@pytest.mark.parametrize(
    "source",
    [
        "{{ steps.a.output.id }}",
        "{{ steps['a'].output['tags'][0] }}",
        "id={{ steps.a.output.id }}, tags={{ steps.a.output.tags }}, k={{ steps.a.output.nested.k }}",
        "{{ vars.items }}",
        "{{ vars.name.upper }}",
        "{{ steps.a.output.missing }}",
        "{{ steps.a.output.id.nope }}",
        "{{ steps.a.output.__class__ }}",
        "x{{ steps.a.output.tags[5] }}",
        "{{ steps.a.output.tags[0] }}",
        "{{ steps.a.output['id'] }}",
        "{{ steps.a.output.nested.k.x }}",
        "{{ vars.name[0] }}",
        "{{ vars.items[1] }}",
        "{{ vars.keys }}",
        "{{ secrets['TOKEN'] }}",
        "{{ run.nope }}",
        "{{ steps.b }}",
        "{{ steps['a'].output.id[0] }}",
    ],
)
def test_fast_lookups_render_exactly_as_jinja_does(source: str) -> None:
    """Simple lookups skip compilation; the result or error must be Jinja's own."""
    templates = Templates()
    assert templates.compile(source)._parts is not None
    env = templates.env
    expected: object
    try:
        if source.startswith("{{") and source.endswith("}}") and source.count("{{") == 1:
            value = env.compile_expression(source[2:-2], undefined_to_none=False)(CONTEXT)
            if hasattr(value, "_fail_with_undefined_error"):
                value._fail_with_undefined_error()
            expected = value
        else:
            expected = env.from_string(source).render(CONTEXT)
    except Exception as exc:  # noqa: BLE001 - compare the error Jinja raises
        expected = ("error", str(exc))
    try:
        got: object = templates.render(source, CONTEXT)
    except TemplateError as exc:
        got = ("error", str(exc))
    assert got == expected


@pytest.mark.parametrize(
    "source",
    [
        "{{ steps.a.output.id }}",
        "{{steps.a.output.id}}",
        "Contact {{ steps.contact.output.id }} created\n",
        "{{ steps['a'].output[\"b c\"][0] }} and {{ vars.x }}",
        "{{ secrets.TOKEN }}:{{ env.HOME }}",
        "{{ steps[ 'a' ] }}",
        "} {{ vars.a }} }}",
    ],
)
def test_lookup_lexer_agrees_with_jinjas_parser(source: str) -> None:
    from jinja2 import nodes

    from engine.templating import _analysis, _lex_lookups, _simple_path, _tree_facts, _tree_paths

    templates = Templates()
    tree = templates.env.parse(source)
    # what Jinja's parser sees: literal text and simple paths, one output node
    assert len(tree.body) == 1 and isinstance(tree.body[0], nodes.Output)
    parsed = tuple(n.data if isinstance(n, nodes.TemplateData) else _simple_path(n) for n in tree.body[0].nodes)
    assert None not in parsed
    assert _lex_lookups(source) == parsed
    paths, loads, _ = _tree_paths(tree)
    assert templates.compile(source).analysis == _analysis(paths, frozenset(loads), *_tree_facts(tree))


@pytest.mark.parametrize(
    "source",
    ["{{ vars.a | upper }}", "{{ vars.a }}{% if 1 %}x{% endif %}", "{{- vars.a }}", "{{ foo.a }}",
     "{{ vars.a }} {# c #}", "{{ vars.a + 1 }}", "{{ vars['a\\'b'] }}"],
)
def test_anything_else_goes_to_jinja(source: str) -> None:
    from engine.templating import _lex_lookups

    assert _lex_lookups(source) is None


def test_a_run_of_lookups_never_imports_jinja(tmp_path: Path) -> None:
    """Plain lookups are walked over the JSON data; Jinja is loaded only for real templates."""
    runbook = tmp_path / "lookups.yml"
    runbook.write_text(textwrap.dedent("""\
        version: 1
        name: lookups
        providers:
          mb: {type: membrane, token: test-token-123456}
        steps:
          - id: a
            provider: mb
            dispatch: {id: echo}
            input: {n: 1, tags: [x, y]}
          - id: b
            provider: mb
            dispatch: {id: echo}
            input: {n: "{{ steps.a.output.n }}", tag: "tag={{ steps.a.output['tags'][1] }}"}
        outputs:
          n: "{{ steps.b.output.n }}"
    """))
    code = (
        "import sys\n"
        "from engine.cli import main\n"
        f"code = main(['run', {str(runbook)!r}, '--emulate', '--manifest', 'm.json'])\n"
        "sys.stderr.write('jinja2 imported: %s\\n' % ('jinja2' in sys.modules))\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=base_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "jinja2 imported: False" in proc.stderr
    manifest = json.loads((tmp_path / "m.json").read_text())
    assert manifest["steps"][1]["request"]["input"] == {"n": 1, "tag": "tag=y"}
    assert manifest["outputs"] == {"n": 1}
