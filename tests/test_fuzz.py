"""Hostile input, property-based: whatever the input, every command exits 0, 1 or 2, never 3.

Hypothesis draws: the examples in runbooks/ with keys and values replaced, deleted,
renamed and inserted at random paths (other types, unicode, huge and odd numbers,
templates), then sometimes broken as text (anchors and aliases, merges, tags, keys that
are collections, cuts); block YAML of random trees of the format's keys, and tokens
glued together; random ``--var`` values and vars files; and real manifests changed the
same way, for ``run --resume`` and ``replay``. ``validate``, ``plan`` and ``run --emulate``
run in process, through :func:`engine.cli.main` as the console script does. A crash is
exit 3 and "internal error (...); this is a bug" on stderr.

Profiles, registered here (the hypothesis plugin loads ``--hypothesis-profile`` when
pytest starts, before it imports test modules, so pyproject.toml loads this module as a
plugin too):

- ``fuzz-ci``, the default: a fixed seed and 150 examples per test, so CI runs the same
  cases every time, in well under a minute;
- ``long``: ``python -m pytest tests/test_fuzz.py --hypothesis-profile=long``, 100,000
  examples per test and a new seed each time, for hunting.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import io
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

try:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
except ImportError:  # pragma: no cover - the test extra installs it
    pytest.skip("hypothesis is not installed (pip install -e '.[test]')", allow_module_level=True)

import yaml

from engine.cli import main
from engine.loader import load_text

_CI = {
    "max_examples": 150,
    "deadline": None,
    "derandomize": True,
    "database": None,
    "print_blob": True,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
}
settings.register_profile("fuzz-ci", **_CI)
settings.register_profile("long", **{**_CI, "max_examples": 100_000, "derandomize": False})
if settings.get_current_profile_name() in ("default", "ci"):  # not chosen on the command line
    settings.load_profile("fuzz-ci")

ROOT = Path(__file__).resolve().parent.parent
# the examples that stand alone (one that calls runbooks/lib/ needs that folder beside it)
EXAMPLES = sorted(p for p in (ROOT / "runbooks").glob("*.yml") if "\n    runbook: " not in p.read_text())
SOURCES = {p.name: p.read_text(encoding="utf-8") for p in EXAMPLES}
DATA = {name: load_text(text, name).data for name, text in SOURCES.items()}

# --- what to put in a runbook --------------------------------------------------------

#: Keys the runbook format knows (so a mutation often makes a key that means something).
KEYS = [
    "version", "name", "description", "vars", "providers", "defaults", "steps", "finally", "outputs",
    "run_timeout", "id", "provider", "dispatch", "input", "with", "when", "timeout", "step_timeout",
    "retry", "continue_on_error", "assert", "for_each", "as", "concurrency", "fail_fast", "type",
    "token", "base_url", "headers", "project_id", "environment", "external_user_id", "client_id",
    "rate_limit", "requests", "per", "key", "api", "code", "method", "path", "url", "query", "body",
    "attempts", "backoff", "initial_delay", "max_delay", "max_elapsed", "on", "connection_key",
    "connection_id", "integration_key", "meta", "stash_id", "account_id",
]
WORDS = [
    "membrane", "pipedream", "http", "crm", "api", "pd", "GET", "POST", "DELETE", "get", "5xx", "429", "4xx",
    "connection", "timeout", "30s", "500ms", "2m", "-1s", "0", "1h", "exponential", "fixed", "yes", "on",
    "off", "1.0", "proj_abc", "development", "production", "NEW", "/items", "https://example.com/x",
    "company", "contact", "lookup", "s1", "", " ", "\t", "\x00", "\x1b[31m", "é", "日本", "\U0001f600",
    "\u202e", "\ud7ff", "a" * 300,
]
TEMPLATES = [
    "{{ steps.company.output }}", "{{ steps.x.output }}", "{{ steps.lookup.output.tier }}",
    "{{ vars.email | upper }}", "{{ vars.y | upper }}", "{{ vars.count + 1 }}", "{{ vars }}",
    "{% for i in range(3) %}{{ i }}{% endfor %}", "{% for %}", "{% if vars.tier %}x{% endif %}",
    "{{ secrets.MEMBRANE_TOKEN }}", "{{ secrets.X | b64encode }}", "{{ env.HOME }}", "{{ run.id }}",
    "{{ run.status }}", "{{ loop.index }}", "{{ item }}", "{{ steps.contact.output.id is defined }}",
    "{{ vars.nope | default('d') }}", "{{ vars.x | nosuchfilter }}", "{{ x is nosuchtest }}",
    "{{ ''.__class__.__mro__ }}", "{{ 1/0 }}", "{{ [1,2] | first }}", "{{ {'a': 1} }}", "{{ none }}",
    "{{ steps.company.exports.nope }}", "{{ steps.company.nope }}", "{{", "}}", "{{ }}", "{#", "{% %}",
    "steps.lookup.output.tier == 'vip'", "{{ 'a' * 3 }}", "{{ 9 ** 9 }}", "{{ range(5) | list }}",
    "{{ lipsum() }}", "{{ dict(a=1) }}", "{{ vars.items() }}", "{{ [].append(1) }}",
    "{{ steps['company']['output'] }}", "{{ vars[vars.k] }}", "{{ 'x' ~ steps.company.run_id }}",
]
ODD_NUMBERS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**30, 2**64, 0, -0.0, 1e308, 5e-324, 0.1]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-1000, max_value=10**6),
    st.sampled_from(ODD_NUMBERS),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(WORDS),
    st.sampled_from(TEMPLATES),
    st.sampled_from(KEYS),
)
keys = st.one_of(st.sampled_from(KEYS), st.text(max_size=8), st.integers(-3, 3), st.none(), st.booleans())
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(keys, inner, max_size=4)),
    max_leaves=10,
)

#: Text spliced into a dumped runbook: YAML that PyYAML's dumper never writes.
FRAGMENTS = [
    "<<: *defaults", "x: &a [1, 2]", "y: *a", "? [a]\n: 1", "{a: 1}: x", "? {b: 2}\n: y", "[a]: 1",
    "big: 0x<5000 f>", "big: <5000 9>", "n: .nan", "i: -.inf", "f: 1e400", "\t- x", "---",
    "%YAML 1.1\n---", "!!python/object:os.system x", "&anchor", "*undefined", "b: !!binary aGVsbG8=",
    "t: !!timestamp 2001-12-14", "d: 2001-12-14", "'unterminated", "{", "]", "- - -", "k: v: w",
    "s: !!set {a, b}", "o: !!omap [a: 1]", "m: !!map {}", "e: !!str", "z: ~", "? ", ": ", "-", "|", ">-",
    "u: \"\\ud800\"", "c: \"\\x00\\x1b\"", "'k': 1", "\"k\": 1", "k: 'a''b'", "# comment", "...",
    "assert: 1.5", "steps: 3", "providers: [a]", "with: 7", "dispatch: {api: 3}", "retry: {on: 5xx}",
    "vars: [1]", "outputs: 2", "id: 3", "id: [a]", "provider: {a: 1}", "when: [x]", "timeout: {}",
    "as: 1", "for_each: {a: 1}", "concurrency: -1", "fail_fast: maybe",
]


#: A fragment, with ``<N c>`` written out as N times c (a 5,000-digit number; short in reprs).
fragments = st.sampled_from(FRAGMENTS).map(
    lambda text: re.sub(r"<(\d+) (.)>", lambda m: m.group(2) * int(m.group(1)), text))


def _paths(value: Any, path: tuple = ()) -> Iterator[tuple]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, path + (index,))


def _at(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


def _mutate(draw: Any, data: Any) -> Any:
    """One random change of ``data`` (a copy): replace, delete, insert, rename or copy at a path."""
    paths = list(_paths(data))
    path = draw(st.sampled_from(paths))
    operation = draw(st.sampled_from(["leaf", "leaf", "leaf", "replace", "replace", "delete", "insert",
                                      "rename", "copy"]))
    if not path:
        return draw(values) if operation == "replace" else data
    parent, last = _at(data, path[:-1]), path[-1]
    if operation == "leaf":  # a scalar for a scalar: the runbook often stays valid, and runs
        leaves = [p for p in paths if p and not isinstance(_at(data, p), (dict, list))]
        if leaves:
            path = draw(st.sampled_from(leaves))
            _at(data, path[:-1])[path[-1]] = draw(st.one_of(st.sampled_from(TEMPLATES + WORDS), scalars))
    elif operation == "replace":
        parent[last] = draw(values)
    elif operation == "delete":
        del parent[last]
    elif operation == "insert":
        target = _at(data, path)
        if isinstance(target, dict):
            target[draw(keys)] = draw(values)
        elif isinstance(target, list):
            target.insert(draw(st.integers(0, len(target))), draw(values))
        else:
            parent[last] = [target, draw(values)]
    elif operation == "rename" and isinstance(parent, dict):
        parent[draw(keys)] = parent.pop(last)
    else:  # copy another subtree here (a step into steps, a mapping where a scalar stood)
        parent[last] = copy.deepcopy(_at(data, draw(st.sampled_from(paths))))
    return data


def _dump(draw: Any, data: Any) -> str:
    """YAML text of ``data``, in block or flow style, unicode or escaped."""
    try:
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=draw(st.booleans()),
                              default_flow_style=draw(st.sampled_from([False, None, True])),
                              width=draw(st.sampled_from([80, 1_000_000])))
    except (yaml.YAMLError, ValueError):  # a value PyYAML cannot write (e.g. an int of 5,000 digits)
        return json.dumps(data, default=str)


_PLAIN_VALUE = re.compile(r"^(\s*(?:- )?[A-Za-z_][\w-]*:)[ ]+(\S.*)$")


def _splice(draw: Any, text: str) -> str:
    """``text`` with YAML the dumper never writes: fragments, anchors and aliases, cuts."""
    lines = text.split("\n")
    operation = draw(st.sampled_from(["fragment", "fragment", "alias", "merge", "cut", "drop", "dup"]))
    at = draw(st.integers(0, len(lines)))
    if operation == "fragment":
        indent = draw(st.sampled_from(["", "  ", "    ", "      ", "- ", "  - "]))
        lines[at:at] = [indent + line for line in draw(fragments).split("\n")]
    elif operation in ("alias", "merge"):
        plain = [i for i, line in enumerate(lines) if _PLAIN_VALUE.match(line)]
        if len(plain) >= 2:
            first, second = sorted(draw(st.lists(st.sampled_from(plain), min_size=2, max_size=2, unique=True)))
            head, value = _PLAIN_VALUE.match(lines[first]).groups()  # type: ignore[union-attr]
            lines[first] = f"{head} &a {value}"
            head = _PLAIN_VALUE.match(lines[second]).group(1)  # type: ignore[union-attr]
            if operation == "merge":
                lines[second] = re.sub(r"[A-Za-z_][\w-]*:$", "<<:", head) + " *a"
            else:
                lines[second] = f"{head} *a"
    elif operation == "cut":
        return text[: draw(st.integers(0, len(text)))]
    elif operation == "drop" and lines:
        del lines[min(at, len(lines) - 1)]
    elif lines:
        lines.insert(at, lines[min(at, len(lines) - 1)])
    return "\n".join(lines)


@st.composite
def mutated_examples(draw: Any) -> str:
    """An example runbook changed at 1–4 random paths, dumped, sometimes then broken as text."""
    name = draw(st.sampled_from(sorted(DATA)))
    if draw(st.integers(0, 9)) == 0:  # the original text (comments, flow style) as the base
        text = SOURCES[name]
    else:
        data = copy.deepcopy(DATA[name])
        for _ in range(draw(st.sampled_from([1, 1, 1, 2, 2, 3, 4]))):
            data = _mutate(draw, data)
        text = _dump(draw, data)
    for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 2]))):
        text = _splice(draw, text)
    return text


#: Pieces of YAML, for text that is almost a runbook.
TOKENS = [
    "version: 1\n", "name: x\n", "steps:\n", "finally:\n", "vars:\n", "providers:\n", "outputs:\n",
    "defaults:\n", "  - ", "    ", "  ", "- ", "id: ", "provider: ", "dispatch: ", "input: ", "with: ",
    "retry: ", "assert: ", "when: ", "membrane", "http", "pipedream", "a", "b1", "{", "}", "[", "]", ", ",
    ": ", "\n", "&a ", "*a", "&b ", "*b", "<<: ", "? ", "'", '"', "{{ steps.a.output }}", "{{ vars.v }}",
    "|\n", ">\n", "# c\n", "!!str ", "!!int ", "!!float ", "!!bool ", "!!null ", "!!seq ", "!!map ",
    "0x1F", ".nan", "-.inf", "1e400", "0o17", "1.5", "true", "on", "~", "null", "\t", "---\n", "...\n",
    "0x" + "f" * 40, "9" * 40, "{id: x}", "{api: {path: /x}}", "[5xx]", "é", "\\", "%", "@", "`",
]


#: Values for a ``key: value`` line (flow collections, anchors, aliases, tags, odd scalars).
LINE_VALUES = [
    "", "1", "x", "membrane", "http", "pipedream", "a", "b1", "{id: x}", "{key: k}", "{api: {path: /x}}",
    "{code: x}", "[5xx, 429]", "[]", "{}", "&a {id: x}", "*a", "&b [x, y]", "*b", "!!str 1", "!!int 3",
    "0x1F", ".nan", "1e400", "true", "on", "~", "'{{ steps.a.output }}'", "'{{ vars.v }}'", "|", "30s",
    "0x" + "f" * 40, "9" * 40, "[{id: a, provider: membrane, dispatch: {id: x}}]", "? x", "'a: b'", "é",
]


TOP_KEYS = ["providers", "vars", "defaults", "finally", "outputs", "run_timeout", "description"]
STEP = "- id: a\n  provider: membrane\n  dispatch: {id: x}"


def _render(node: tuple[str, Any], indent: int) -> list[str]:
    """Block YAML lines of a drawn tree: ``("raw", text)``, ``("map", [(key, node)])``, ``("seq", [node])``."""
    pad = " " * indent
    kind, body = node
    if kind == "raw":
        return [pad + line for line in body.split("\n")]
    lines: list[str] = []
    for item in body:
        head, child = (f"{item[0]}:", item[1]) if kind == "map" else ("-", item)
        if child[0] == "raw" and "\n" not in child[1]:
            lines.append(f"{pad}{head} {child[1]}".rstrip())
        elif child[0] == "raw" or not child[1]:
            lines.append(f"{pad}{head} {'{}' if child[0] == 'map' else '[]' if child[0] == 'seq' else ''}".rstrip())
            lines += _render(child, indent + 2) if child[0] == "raw" else []
        else:
            lines.append(f"{pad}{head}")
            lines += _render(child, indent + 2)
    return lines


trees = st.recursive(
    st.one_of(st.sampled_from(LINE_VALUES), st.sampled_from(TEMPLATES).map(json.dumps)).map(lambda v: ("raw", v)),
    lambda inner: st.one_of(
        st.lists(st.tuples(st.sampled_from(KEYS), inner), max_size=5, unique_by=lambda kv: kv[0]).map(
            lambda items: ("map", items)),
        st.lists(inner, max_size=4).map(lambda items: ("seq", items)),
        st.just(("raw", STEP)),
    ),
    max_leaves=25,
)


@st.composite
def yaml_like_text(draw: Any) -> str:
    """YAML-ish text: block YAML of random trees with the format's keys and odd values in
    text form (anchors, aliases, tags, flow collections) (mostly), tokens glued together,
    or any text at all."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=200))
    if kind <= 2:
        return "".join(draw(st.lists(st.sampled_from(TOKENS), max_size=60)))
    top = draw(st.lists(st.tuples(st.sampled_from(TOP_KEYS), trees), max_size=4, unique_by=lambda kv: kv[0]))
    if draw(st.integers(0, 3)):
        top.insert(draw(st.integers(0, len(top))), ("steps", draw(st.one_of(st.just(("raw", STEP)), trees))))
    head = "version: 1\nname: x\n" if draw(st.integers(0, 4)) else ""
    return head + "\n".join(_render(("map", top), 0)) + "\n"


#: Example runbooks whose manifests are mutated for ``--resume`` and ``replay``.
MANIFEST_BASES = ["control-flow.yml", "demo.yml"]
_BASE_MANIFESTS: dict[str, dict[str, Any]] = {}


def base_manifest(name: str) -> dict[str, Any]:
    """The manifest of a real emulated run of ``runbooks/NAME`` (made once per session)."""
    if name not in _BASE_MANIFESTS:
        folder = Path(tempfile.mkdtemp(prefix="runbook-fuzz-base-"))
        try:
            code, err = cli(["run", str(ROOT / "runbooks" / name), "--emulate", "--manifest", str(folder / "m.json")])
            assert code == 0, err
            _BASE_MANIFESTS[name] = json.loads((folder / "m.json").read_text(encoding="utf-8"))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return _BASE_MANIFESTS[name]


@st.composite
def odd_manifests(draw: Any) -> tuple[str, str]:
    """(runbook, manifest text): a real manifest of the runbook changed at 1–3 paths, or cut short."""
    name = draw(st.sampled_from(MANIFEST_BASES))
    data = copy.deepcopy(base_manifest(name))
    for _ in range(draw(st.sampled_from([1, 1, 2, 3]))):
        data = _mutate(draw, data)
    text = json.dumps(data, ensure_ascii=draw(st.booleans()), default=str)
    if draw(st.integers(0, 9)) == 0:
        text = text[: draw(st.integers(0, len(text)))]
    return name, text


# --- running the commands --------------------------------------------------------------


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A scratch folder, and an environment without the developer's provider credentials."""
    folder = Path(tempfile.mkdtemp(prefix="runbook-fuzz-"))
    saved = {k: v for k, v in os.environ.items() if k.startswith(("MEMBRANE_", "PIPEDREAM_"))}
    for key in saved:
        del os.environ[key]
    cwd = os.getcwd()
    os.chdir(folder)  # a run without --manifest, or a report, writes under .runbook/ here
    try:
        yield folder
    finally:
        os.chdir(cwd)
        os.environ.update(saved)
        shutil.rmtree(folder, ignore_errors=True)


def cli(args: list[str]) -> tuple[int, str]:
    """``runbook ARGS`` in process: the exit code and what it wrote to stderr."""
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(args)
    gc.unfreeze()  # `run` freezes what it loaded, for a process that ends with the run
    return code, err.getvalue()


def check(args: list[str]) -> int:
    """Run ``runbook ARGS``; fail unless it exits 0, 1 or 2 without an internal error."""
    code, err = cli(args)
    assert code in (0, 1, 2) and "internal error" not in err and "this is a bug" not in err, (
        f"runbook {' '.join(args)} exited {code}:\n{err}")
    return code


def check_manifest_case(folder: Path, case: tuple[str, str], record: Any = None) -> None:
    """``run --resume`` and ``replay`` of an odd manifest: exit 0, 1 or 2 (``record``: the explorer's hook)."""
    name, text = case
    path = folder / "odd.json"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    for args in (["run", str(ROOT / "runbooks" / name), "--emulate", "--resume", str(path),
                  "--manifest", str(folder / "resumed.json")],
                 ["replay", str(path), "--emulate", "--manifest", str(folder / "replayed.json")]):
        if record is None:
            check(args)
        else:
            record(args[0], args, text)


def check_runbook(folder: Path, text: str) -> tuple[int, int, int]:
    """``validate``, ``plan`` and ``run --emulate`` of ``text``: their exit codes."""
    path = folder / "fuzz.yml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    file = str(path)
    return (check(["validate", file]), check(["plan", file]),
            check(["run", file, "--emulate", "--manifest", str(folder / "manifest.json")]))


# --- the properties ----------------------------------------------------------------------


@given(text=mutated_examples())
def test_mutated_examples_never_crash(workdir: Path, text: str) -> None:
    check_runbook(workdir, text)


@given(text=yaml_like_text())
def test_yaml_like_text_never_crashes(workdir: Path, text: str) -> None:
    check_runbook(workdir, text)


VARS_RUNBOOK = """\
version: 1
name: vars
vars: {v: 1}
steps:
  - {id: a, provider: membrane, dispatch: {id: x}, input: {v: "{{ vars.v }}", w: "{{ vars.w | default(0) }}"}}
"""


@given(value=st.one_of(st.sampled_from(TOKENS + WORDS + TEMPLATES), fragments, st.text(max_size=40),
                       yaml_like_text()),
       vars_text=st.one_of(mutated_examples(), yaml_like_text(), values.map(lambda v: yaml.safe_dump(v))),
       run_with_file=st.booleans())
def test_var_values_and_vars_files_never_crash(workdir: Path, value: str, vars_text: str,
                                               run_with_file: bool) -> None:
    path = workdir / "vars.yml"
    path.write_text(VARS_RUNBOOK, encoding="utf-8")
    vars_file = workdir / "vars-file.yml"
    vars_file.write_text(vars_text, encoding="utf-8", errors="surrogatepass")
    for given_vars in (["--var", f"v={value}"], ["--vars-file", str(vars_file)]):
        check(["validate", str(path), *given_vars])
        check(["plan", str(path), *given_vars])
        if run_with_file == (given_vars[0] == "--vars-file"):  # one run per example: a run costs 0.1 s
            check(["run", str(path), "--emulate", "--manifest", str(workdir / "m.json"), *given_vars])


@given(case=odd_manifests())
def test_odd_manifests_for_resume_and_replay_never_crash(workdir: Path, case: tuple[str, str]) -> None:
    check_manifest_case(workdir, case)


def test_the_strategies_reach_every_command_and_exit_code(workdir: Path) -> None:
    """The seeds the CI profile draws are not all refused at load: some run, some fail, some succeed."""
    codes = {check_runbook(workdir, SOURCES[name]) for name in sorted(SOURCES)}
    assert codes == {(0, 0, 0)}
    broken = check_runbook(workdir, SOURCES["demo.yml"].replace("provider: crm", "provider: nope", 1))
    assert broken == (2, 2, 2)


# --- what fuzzing found, one case each: a located error (exit 2), not a crash (exit 3) -------------

STEP_A = "  - id: a\n    provider: membrane\n    dispatch: {id: x}\n"
SHAPES = {
    "assert is a number": ("version: 1\nname: t\nsteps:\n" + STEP_A + "    assert: 1.5\n",
                           ":7:13: steps[0] (a) assert: expected a list, got the number 1.5"),
    "steps is a number": ("version: 1\nname: t\nsteps: 3\n", ":3:8: steps: expected a list, got the number 3"),
    "steps is true": ("version: 1\nname: t\nsteps: true\n", ":3:8: steps: expected a list, got the boolean true"),
    "finally is a number": ("version: 1\nname: t\nsteps:\n" + STEP_A + "finally: 2\n",
                            ":7:10: finally: expected a list, got the number 2"),
    "provider is a list": ("version: 1\nname: t\nproviders: {crm: {type: membrane}}\nsteps:\n"
                           "  - {id: a, provider: [crm], dispatch: {id: x}, with: {connection_key: k}}\n",
                           ":5:23: steps[0] (a) provider: expected a string, got a list"),
    "provider is a mapping, with a style rule": (
        "version: 1\nname: t\nproviders: {pd: {type: pipedream}}\nsteps:\n"
        "  - {id: a, provider: {pd: 1}, dispatch: {id: x}, with: {version: '1'}}\n",
        ":5:23: steps[0] (a) provider: expected a string, got a mapping"),
    "a mapping as a key": ("version: 1\nname: t\n{a: 1}: x\nsteps:\n" + STEP_A,
                           ":3:1: a mapping key must be a plain string"),
    "a list as a key": ("version: 1\nname: t\n? [a]\n: 1\nsteps:\n" + STEP_A,
                        ":3:3: a mapping key must be a plain string"),
    "with is a number": ("version: 1\nname: t\nsteps:\n" + STEP_A + "    with: 7\n",
                         ":7:11: steps[0] (a) with: expected a mapping, got the number 7"),
    "dispatch api is a number": ("version: 1\nname: t\nsteps:\n  - {id: a, provider: membrane, dispatch: {api: 3}}\n",
                                 ":4:49: steps[0] (a) dispatch.api: expected a mapping, got the number 3"),
    "a step id is a number": ("version: 1\nname: t\nsteps:\n  - {id: 3, provider: membrane, dispatch: {id: x}}\n",
                              ":4:10: steps[0] id: expected a string, got the number 3"),
    "a huge hex number": ("version: 1\nname: t\nsteps:\n" + STEP_A + "    input: 0x" + "f" * 5000 + "\n",
                          ":7:12: 0xffffffffffffffffffffffffff… (5,002 characters) is too large to send as JSON"),
    "NaN in the input": ("version: 1\nname: t\nsteps:\n" + STEP_A + "    input: {n: .nan}\n",
                         ":7:16: .nan is not a JSON number (JSON has no NaN or Infinity); quote it to keep it as text"),
    "a billion laughs": ("version: 1\nname: t\nvars:\n"
                         + "".join(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 10) + "]\n"
                                   for i in range(6))
                         + "steps:\n" + STEP_A, ":7:12: YAML aliases expand this document past"),
}


@pytest.mark.parametrize("case", list(SHAPES))
def test_shapes_that_crashed_are_located_errors(workdir: Path, case: str) -> None:
    text, message = SHAPES[case]
    path = workdir / "shape.yml"
    path.write_text(text, encoding="utf-8")
    for args in (["validate", str(path)], ["plan", str(path)],
                 ["run", str(path), "--emulate", "--manifest", str(workdir / "m.json")]):
        code, err = cli(args)
        assert code == 2 and f"{path}{message}" in err, (args, err)


def test_shapes_through_the_console_script(tmp_path: Path) -> None:
    """The same files in one real ``runbook validate``: every file's problem, exit 2."""
    from tests.conftest import run_cli

    paths = []
    for i, (text, _) in enumerate(SHAPES.values()):
        paths.append(tmp_path / f"shape{i}.yml")
        paths[-1].write_text(text, encoding="utf-8")
    result = run_cli(["validate", *map(str, paths)], cwd=tmp_path)
    assert result.code == 2 and "internal error" not in result.stderr
    for path, (_, message) in zip(paths, SHAPES.values(), strict=True):
        assert f"{path}{message}" in result.stderr


def test_a_billion_laughs_through_the_console_script(tmp_path: Path) -> None:
    """Nine levels of ten aliases (10**9 values, a gigabyte, when expanded): refused in well under a second."""
    import time

    from tests.conftest import run_cli

    laughs = "".join(f"  l{i}: &l{i} [" + ", ".join([f"*l{i - 1}" if i else "x"] * 10) + "]\n" for i in range(9))
    path = tmp_path / "laughs.yml"
    path.write_text("version: 1\nname: t\nvars:\n" + laughs + "steps:\n" + STEP_A, encoding="utf-8")
    started = time.perf_counter()
    for command in ("validate", "plan", "run"):
        result = run_cli([command, str(path)], cwd=tmp_path, timeout=30)
        assert result.code == 2 and f"{path}:7:12: YAML aliases expand this document past" in result.stderr
    assert time.perf_counter() - started < 10  # three processes, each well under a second of work


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (".nan", "--var v: .nan is not a JSON number (JSON has no NaN or Infinity); quote it to keep it as text"),
        ("-.inf", "--var v: -.inf is not a JSON number"),
        ("[1, 0x" + "f" * 5000 + "]", "--var v: 0xffffffffffffffffffffffffff… (5,002 characters) is too large"),
        ("9223372036854775808", "--var v: 9223372036854775808 is too large to send as JSON"),
    ],
)
def test_var_values_json_cannot_carry_are_refused(workdir: Path, value: str, message: str) -> None:
    path = workdir / "vars.yml"
    path.write_text(VARS_RUNBOOK, encoding="utf-8")
    for command in ("validate", "plan", "run"):
        code, err = cli([command, str(path), "--var", f"v={value}"])
        assert code == 2 and message in err, err
    vars_file = workdir / "vars-file.yml"
    vars_file.write_text(f"v: {value}\n", encoding="utf-8")
    code, err = cli(["plan", str(path), "--vars-file", str(vars_file)])
    assert code == 2 and f"{vars_file}:1:" in err and message.removeprefix("--var v: ")[:30] in err, err
