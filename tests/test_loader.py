"""engine.loader: YAML 1.2 scalars, duplicate keys, positions, refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from engine.errors import LocatedErrors, Problem
from engine.loader import SourceMap, load_text, parse_scalar
from tests.conftest import base_env


def test_yaml_12_booleans_keep_on_off_yes_no_as_strings() -> None:
    doc = load_text("retry: {on: [5xx, 429]}\na: [on, off, yes, no, y, n, true, False]\n", "f.yml")
    assert doc.data["retry"] == {"on": ["5xx", 429]}
    assert doc.data["a"] == ["on", "off", "yes", "no", "y", "n", True, False]


def test_numbers_dates_and_nulls_follow_the_core_schema() -> None:
    doc = load_text("a: 012\nb: 0x1f\nc: 1.0\nd: 2024-01-01\ne: ~\nf: 1:30\ng: '3'\n", "f.yml")
    assert doc.data == {"a": 12, "b": 31, "c": 1.0, "d": "2024-01-01", "e": None,
                        "f": "1:30", "g": "3"}


def test_positions_of_keys_and_values_are_one_based() -> None:
    doc = load_text("top:\n  inner:\n    - x\n    - {k: v}\n", "f.yml")
    assert doc.source.values[("top", "inner", 1, "k")] == (4, 11)
    assert doc.source.keys[("top", "inner")] == (2, 3)
    assert doc.source.position(("top", "inner", 7)) == (3, 5)  # the list, its nearest parent


def test_duplicate_keys_are_errors_anywhere() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("a:\n  b: 1\n  c: 2\n  b: 3\nd: 1\nd: 2\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:4:3: duplicate key 'b' (first defined on line 2)",
        "f.yml:6:1: duplicate key 'd' (first defined on line 5)",
    ]


def test_merge_keys_work_and_own_keys_win() -> None:
    doc = load_text("base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  y: 3\n", "f.yml")
    assert doc.data["m"] == {"x": 1, "y": 3}


@pytest.mark.parametrize(
    ("text", "position", "fragment"),
    [
        ("a: !!python/object:os.system x\n", "1:4", "unsupported YAML tag"),
        ("a: [1\nb: 2\n", "2:2", "YAML syntax error"),
        ("a: 1\n---\nb: 2\n", "2:1", "only one YAML document"),
        ("a: !custom 3\n", "1:4", "unsupported YAML tag"),
    ],
)
def test_unsafe_or_broken_yaml_is_refused_with_a_position(text: str, position: str,
                                                           fragment: str) -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text(text, "f.yml")
    message = str(info.value)
    assert message.startswith(f"f.yml:{position}: ")
    assert fragment in message


def test_var_values_are_yaml_scalars() -> None:
    assert parse_scalar("3", "--var n") == 3
    assert parse_scalar("true", "--var b") is True
    assert parse_scalar("yes", "--var s") == "yes"
    assert parse_scalar("[1, 2]", "--var l") == [1, 2]
    assert parse_scalar("", "--var e") == ""


def test_positions_of_keys_and_values_in_nested_lists() -> None:
    doc = load_text("l:\n  - [a, {k: 1}]\n  -\n    - x\n    - k2: [y]\n", "f.yml")
    assert doc.data == {"l": [["a", {"k": 1}], ["x", {"k2": ["y"]}]]}
    values, keys = doc.source.values, doc.source.keys
    assert values[("l",)] == (2, 3)
    assert values[("l", 0)] == (2, 5)
    assert values[("l", 0, 0)] == (2, 6)
    assert values[("l", 0, 1)] == (2, 9)
    assert keys[("l", 0, 1, "k")] == (2, 10)
    assert values[("l", 0, 1, "k")] == (2, 13)
    assert values[("l", 1)] == (4, 5)
    assert values[("l", 1, 1, "k2")] == (5, 11)
    assert keys[("l", 1, 1, "k2")] == (5, 7)
    assert values[("l", 1, 1, "k2", 0)] == (5, 12)
    assert ("l", 0) not in keys  # list items have no key position
    assert doc.source.position(("l", 1, 1, "k2"), key=True) == (5, 7)


def test_scalar_text_keeps_the_source_of_every_non_string_scalar() -> None:
    doc = load_text("a: 0x1F\nb: [True, ~, null, '', -3, .5]\nc: text\nd: '7'\ne:\n", "f.yml")
    assert doc.data == {"a": 31, "b": [True, None, None, "", -3, 0.5], "c": "text", "d": "7", "e": None}
    assert doc.source.scalar_text == {
        ("a",): "0x1F", ("b", 0): "True", ("b", 1): "~", ("b", 2): "null",
        ("b", 4): "-3", ("b", 5): ".5", ("e",): "",
    }


def test_keys_are_their_text_whatever_they_look_like() -> None:
    doc = load_text("1: a\ntrue: b\nnull: c\n'<<': d\n", "f.yml")
    assert doc.data == {"1": "a", "true": "b", "null": "c", "<<": "d"}
    assert doc.source.scalar_text == {}


def test_aliases_copy_the_anchored_value_with_its_positions() -> None:
    doc = load_text("a: &x [1, {k: v}]\nb: *x\n", "f.yml")
    assert doc.data == {"a": [1, {"k": "v"}], "b": [1, {"k": "v"}]}
    assert doc.data["a"] is not doc.data["b"]
    assert doc.source.values[("b",)] == (1, 4)  # where the anchored node stands
    assert doc.source.values[("b", 1, "k")] == (1, 15)
    assert doc.source.keys[("b",)] == (2, 1)
    assert doc.source.scalar_text[("b", 0)] == "1"


def test_an_alias_inside_its_own_anchor_is_an_error() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("a: &x {b: [*x]}\nc: &y {<<: *y}\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:1:4: this alias refers to itself",
        "f.yml:2:4: this alias refers to itself",
    ]


def test_merged_keys_are_not_duplicates_and_merge_sources_may_overlap() -> None:
    text = "a: &a {x: 1, k: 1}\nb: &b {x: 2, z: 2}\nm:\n  k: 0\n  <<: [*a, *b]\n"
    doc = load_text(text, "f.yml")
    assert doc.data["m"] == {"x": 1, "z": 2, "k": 0}
    assert list(doc.data["m"]) == ["x", "k", "z"]  # merged keys first, then the mapping's own


def test_duplicate_keys_inside_merged_mappings_and_around_a_merge() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("b: &b {x: 1, x: 2}\nm:\n  y: 1\n  <<: *b\n  y: 2\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:1:14: duplicate key 'x' (first defined on line 1)",  # where the anchor is defined
        "f.yml:1:14: duplicate key 'x' (first defined on line 1)",  # again where it is merged
        "f.yml:5:3: duplicate key 'y' (first defined on line 3)",
    ]


def test_malformed_merges_keys_and_typed_scalars_are_located() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("m:\n  <<: [1, {a: 1}]\n? [k]\n: v\ni: !!int 1.5\nf: !!float x\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:2:8: '<<' merges only mappings",
        "f.yml:3:3: a mapping key must be a plain string",
        "f.yml:5:4: '1.5' is not a valid int",
        "f.yml:6:4: 'x' is not a valid float",
    ]


def test_source_map_and_document_construction() -> None:
    source = SourceMap("f.yml")
    assert (source.file, source.values, source.keys, source.scalar_text) == ("f.yml", {}, {}, {})
    assert source.position(("a", 0)) == (1, 1)
    assert source.problem(("a",), "bad", severity="warning") == Problem("f.yml", 1, 1, "bad", "warning")
    filled = SourceMap("f.yml", values={(): (2, 1)}, keys={("a",): (2, 1)}, scalar_text={("a",): "1"})
    assert filled.position(("a",), key=True) == (2, 1) and filled.position(("b",)) == (2, 1)
    assert filled.scalar_text == {("a",): "1"}
    doc = load_text("a: 1\n", "f.yml")
    assert (doc.data, doc.text) == ({"a": 1}, "a: 1\n")
    source = doc.source
    assert (source.file, source.values, source.keys, source.scalar_text) == (
        "f.yml", {(): (1, 1), ("a",): (1, 4)}, {("a",): (1, 1)}, {("a",): "1"})


_SLIPS = [
    # a tab in the indentation: where the tab is, whichever parser reads it
    ("version: 1\nsteps:\n\t- id: a\n", "3:1", "YAML syntax error: a tab in the indentation: YAML indents with "
                                              "spaces only"),
    ("a:\n  b: 1\n\tc: 2\n", "3:1", "a tab in the indentation"),
    ("a:\n  b:\n  \tc: 1\n", "3:3", "a tab in the indentation"),
    ("a: 1\r\nb:\r\n\tc: 1\r\n", "3:1", "a tab in the indentation"),
    # an unquoted ': ' inside a value, on the key's line: at the second colon
    ("name: x\ndescription: Note: this is it\n", "2:18",
     "YAML syntax error: mapping values are not allowed here (a ': ' inside an unquoted value starts a mapping: "
     "quote the whole value)"),
    ("steps:\n  - id: a\n    when: a: b\n", "3:12", "quote the whole value"),
    # a key indented under a plain value: the value runs on over its line
    ("a: value\n  other: x\n", "2:8", "mapping values are not allowed here (the unquoted value above goes on over "
                                      "this line, so this ': ' is inside it: indent this key like the keys beside "
                                      "it, or quote the value)"),
]


@pytest.mark.parametrize(("text", "position", "message"), _SLIPS)
def test_tabs_and_unquoted_colons_are_explained(text: str, position: str, message: str) -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text(text, "f.yml")
    (problem,) = info.value.problems
    assert str(problem).startswith(f"f.yml:{position}: YAML syntax error: ")
    assert message in str(problem)
    assert "cannot start any token" not in str(problem) and "in this context" not in str(problem)


def test_pure_python_parser_explains_the_same_slips() -> None:
    """Without libyaml, PyYAML words the errors its own way ("found character '\\t' ..."); same messages."""
    code = (
        "import sys\n"
        "sys.modules['yaml._yaml'] = None  # as if PyYAML had been built without libyaml\n"
        "import json\n"
        "from engine.errors import LocatedErrors\n"
        "from engine.loader import load_text, yaml\n"
        "assert not yaml.__with_libyaml__\n"
        "for text in json.loads(sys.argv[1]):\n"
        "    try:\n"
        "        load_text(text, 'f.yml')\n"
        "    except LocatedErrors as exc:\n"
        "        print(exc.problems[0])\n"
    )
    texts = [text for text, _, _ in _SLIPS]
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(texts)], env=base_env(), capture_output=True,
                          text=True, timeout=60, check=True)
    lines = proc.stdout.splitlines()
    assert len(lines) == len(_SLIPS), proc.stdout
    for line, (_, position, message) in zip(lines, _SLIPS, strict=True):
        assert line.startswith(f"f.yml:{position}: YAML syntax error: ") and message in line, line


def test_other_syntax_errors_keep_the_parsers_words() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("a: @foo\n", "f.yml")
    message = str(info.value)
    assert message.startswith("f.yml:1:4: YAML syntax error: found character ") and "tab" not in message
    assert message.endswith("that cannot start any token")


# --- hostile input: alias bombs, numbers JSON cannot carry, nesting --------------------------------


def _laughs(levels: int) -> str:
    """A "billion laughs": each level a list of ten aliases of the one before (10**levels values)."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for level in range(1, levels):
        lines.append(f"a{level}: &a{level} [" + ", ".join([f"*a{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_at_once_at_its_alias() -> None:
    """Six levels (a million values) here, so that a broken bound fails in seconds instead of
    eating a gigabyte; tests/test_fuzz.py gives the console script nine."""
    import time

    started = time.perf_counter()
    with pytest.raises(LocatedErrors) as info:
        load_text(_laughs(6), "f.yml")
    assert time.perf_counter() - started < 1
    (problem,) = info.value.problems
    assert (problem.line, problem.col) == (4, 10)  # the first alias of the anchor being copied: *a2 in a3
    # 73 values written out (1 + 6 keys and 6 values + 6 lists of 10): at most 10 * 73 + 10,000 more
    assert problem.message.startswith("YAML aliases expand this document past 10,803 values, from 73 written out")
    assert "each *a2 copies all of &a2" in problem.message and "billion laughs" in problem.message


def test_a_merge_bomb_is_refused_too() -> None:
    lines = ["m0: &m0 {k0: 1, k1: 2}"]
    for level in range(1, 30):
        lines.append(f"m{level}: &m{level} {{<<: [*m{level - 1}], x: [*m{level - 1}, *m{level - 1}]}}")
    with pytest.raises(LocatedErrors) as info:
        load_text("\n".join(lines), "f.yml")
    assert "YAML aliases expand this document past" in str(info.value)


def test_aliases_that_expand_a_document_a_few_times_are_fine() -> None:
    """A runbook that merges its defaults into every one of 3,000 steps, and a few levels of laughs."""
    steps = "".join(f"  - {{<<: *d, id: s{i}}}\n" for i in range(3000))
    doc = load_text("d: &d {provider: membrane, dispatch: {id: x}, retry: {attempts: 2, on: [5xx]}}\n"
                    f"steps:\n{steps}", "f.yml")
    assert len(doc.data["steps"]) == 3000
    assert doc.data["steps"][-1] == {"provider": "membrane", "dispatch": {"id": "x"},
                                     "retry": {"attempts": 2, "on": ["5xx"]}, "id": "s2999"}
    assert len(load_text(_laughs(3), "f.yml").data["a2"]) == 10  # 1,000 values from 30 written: allowed


def test_the_expansion_bound_counts_the_whole_document_not_what_came_first() -> None:
    """Aliases early, most of the text after them: the bound is ten times the whole document."""
    head = "base: &b [" + ", ".join(["v"] * 100) + "]\ncopies: [" + ", ".join(["*b"] * 150) + "]\n"
    tail = "".join(f"k{i}: [a, b, c, d, e, f, g, h, i, j]\n" for i in range(200))
    assert len(load_text(head + tail, "f.yml").data["copies"]) == 150  # 15,000 copied, 2,600 written
    with pytest.raises(LocatedErrors):
        load_text(head, "f.yml")  # the same aliases without the rest: 15,000 from 252


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("n: 9223372036854775808\n", "9223372036854775808 is too large to send as JSON"),
        ("n: -9223372036854775809\n", "-9223372036854775809 is too large to send as JSON"),
        ("n: 0x8000000000000000\n", "0x8000000000000000 is too large to send as JSON"),
        ("n: 0x" + "f" * 5000 + "\n", "0xffffffffffffffffffffffffff… (5,002 characters) is too large"),
        ("n: " + "9" * 5000 + "\n", "(5,000 characters) is too large to send as JSON"),
        ("n: !!int " + "9" * 5000 + "\n", "(5,000 characters) is too large to send as JSON"),
        ("n: .nan\n", ".nan is not a JSON number (JSON has no NaN or Infinity); quote it to keep it as text"),
        ("n: .inf\n", ".inf is not a JSON number"),
        ("n: [-.Inf]\n", "-.Inf is not a JSON number"),
        ("n: !!float nan\n", "nan is not a JSON number"),
        ("n: 1e400\n", "1e400 is not a JSON number (it is too large: it reads as infinity); quote it"),
    ],
)
def test_numbers_json_cannot_carry_are_located_errors(text: str, fragment: str) -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text(text, "f.yml")
    (problem,) = info.value.problems
    assert str(problem).startswith("f.yml:1:")
    assert fragment in problem.message and "quote it to keep it as text" in problem.message
    assert len(problem.message) < 200


def test_numbers_at_the_edges_of_json_load() -> None:
    doc = load_text("a: 9223372036854775807\nb: -9223372036854775808\nc: 0x7fffffffffffffff\n"
                    "d: 1e308\ne: 0x" + "0" * 100 + "1\nf: '.nan'\ng: 5e-324\n", "f.yml")
    assert doc.data == {"a": 2**63 - 1, "b": -(2**63), "c": 2**63 - 1, "d": 1e308, "e": 1, "f": ".nan",
                        "g": 5e-324}
    assert parse_scalar("0x10", "--var n") == 16
    with pytest.raises(LocatedErrors, match="not a JSON number"):
        parse_scalar(".nan", "--var n")


def test_explicit_tags_take_only_their_own_values() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("a: !!int\nb: !!bool yes\nc: !!null x\nd: !!float " + "1" * 100 + "x\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:1:4: '' is not a valid int",
        "f.yml:2:4: 'yes' is not a valid bool",
        "f.yml:3:4: 'x' is not a valid null",
        "f.yml:4:4: '1111111111111111111111111111… (101 characters)' is not a valid float",
    ]
    assert load_text("a: !!bool FALSE\nb: !!null ~\nc: !!int ' 7'\n", "f.yml").data == {"a": False, "b": None, "c": 7}


def test_nesting_deeper_than_the_limit_is_one_located_error() -> None:
    from engine.loader import MAX_DEPTH

    value = load_text("[" * MAX_DEPTH + "]" * MAX_DEPTH, "f.yml").data  # the document itself is one level
    for _ in range(MAX_DEPTH - 1):
        (value,) = value
    assert value == []
    deep = "[" * MAX_DEPTH + "]" * MAX_DEPTH  # under the top-level mapping: one too many
    with pytest.raises(LocatedErrors) as info:
        load_text(f"a: {deep}\nb: {deep}\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [  # once, not once per list too deep
        f"f.yml:1:{MAX_DEPTH + 3}: lists and mappings nested more than {MAX_DEPTH} levels deep"]
    with pytest.raises(LocatedErrors, match="maximum nesting depth"):  # libyaml's own limit, further down
        load_text("[" * 100_000, "f.yml")


def test_keys_that_are_collections_are_located_errors() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("? [a]\n: 1\n{a: 1}: x\n? {b: [c]}\n: y\nok: 1\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:1:3: a mapping key must be a plain string",
        "f.yml:3:1: a mapping key must be a plain string",
        "f.yml:4:3: a mapping key must be a plain string",
    ]


# --- built from events: what the node tree gave, without it --------------------------------------


def test_anchors_inside_nodes_that_are_not_built_are_still_defined() -> None:
    """The value of a duplicate key, a key that is a collection, a list nested too deep: never
    built, but an alias further on copies an anchor defined inside them, as the composer allowed."""
    with pytest.raises(LocatedErrors) as info:
        load_text("d: 1\nd: &w [1]\nv: *w\nk: {? [&z a] : 1}\nb: *z\n", "f.yml")
    assert [str(p) for p in info.value.problems] == [
        "f.yml:2:1: duplicate key 'd' (first defined on line 1)",
        "f.yml:4:7: a mapping key must be a plain string",
    ]
    with pytest.raises(LocatedErrors, match="undefined alias"):  # and an alias in them must name one
        load_text("d: 1\nd: *nowhere\n", "f.yml")


def test_a_duplicate_key_names_the_line_of_the_mappings_own_key_across_merges() -> None:
    with pytest.raises(LocatedErrors) as info:
        load_text("b: &b {y: 9}\nm:\n  y: 1\n  <<: *b\n  y: 2\n", "f.yml")
    assert [str(p) for p in info.value.problems] == ["f.yml:5:3: duplicate key 'y' (first defined on line 3)"]


def test_aliases_of_aliases_are_copied_once_each() -> None:
    doc = load_text("a: &a [x]\nb: &b [*a, *a]\nc: *b\nm: &m {}\nn: *m\ne: &e []\nf: [*e]\n", "f.yml")
    assert doc.data == {"a": ["x"], "b": [["x"], ["x"]], "c": [["x"], ["x"]], "m": {}, "n": {}, "e": [],
                        "f": [[]]}
    assert doc.source.values[("c", 1, 0)] == (1, 8)  # where the copied value is written


def test_repeated_short_strings_are_one_object() -> None:
    doc = load_text("steps:\n- {id: a, provider: crm}\n- {id: b, provider: crm}\n", "f.yml")
    first, second = doc.data["steps"]
    assert first["provider"] is second["provider"]
    assert next(iter(first)) is next(iter(second))  # the key "id"


# --- sparse loads: the positions a run reports -----------------------------------------------------

_SPARSE = """\
version: 1
name: sparse
vars: {flag: yes, quoted: 'no', n: 012, deep: {a: {b: on}}}
defaults: &d {provider: membrane, timeout: 30s}
steps:
  - id: a
    <<: *d
    dispatch: {key: "k-{{ vars.n }}"}
    input: {x: plain, t: "{{ vars.n }}", l: [1, "{{ vars.n }}"]}
    when: "vars.n > 1"
    assert: ["steps.a.status == 'succeeded'", "{{ true }}"]
  - id: b
    provider: crm
    dispatch: {api: {path: /x}}
"""


def test_a_sparse_load_keeps_the_positions_a_run_reports() -> None:
    from engine.loader import SparseSourceMap

    full, sparse = load_text(_SPARSE, "f.yml"), load_text(_SPARSE, "f.yml", sparse=True)
    assert sparse.data == full.data and isinstance(sparse.source, SparseSourceMap)
    kept = {path for path in full.source.values if sparse.source.recorded(path) is not None}
    assert kept == {
        (), ("version",), ("name",), ("vars",), ("vars", "flag"), ("vars", "quoted"), ("vars", "n"),
        ("vars", "deep"), ("vars", "deep", "a", "b"),  # YAML 1.1 words, for the linter
        ("defaults",), ("defaults", "provider"), ("defaults", "timeout"), ("steps",), ("steps", 0),
        ("steps", 0, "provider"), ("steps", 0, "dispatch", "key"), ("steps", 0, "input", "t"),
        ("steps", 0, "input", "l", 1), ("steps", 0, "when"), ("steps", 0, "assert", 0),
        ("steps", 0, "assert", 1), ("steps", 1), ("steps", 1, "provider"), ("steps", 1, "dispatch", "api"),
    }
    for path in kept:  # exactly where a full load has them
        assert sparse.source.recorded(path) == full.source.values[path] == sparse.source.position(path)
    assert sparse.source.keys == {} and sparse.source.scalar_text == full.source.scalar_text
    assert all(type(v) is int for v in sparse.source.values.values())  # packed


def test_a_sparse_load_with_a_problem_words_it_as_a_full_load() -> None:
    text = "a:\n  b: 1\n  b: 2\nc: !!int x\n"
    with pytest.raises(LocatedErrors) as full:
        load_text(text, "f.yml")
    with pytest.raises(LocatedErrors) as sparse:
        load_text(text, "f.yml", sparse=True)
    assert [str(p) for p in sparse.value.problems] == [str(p) for p in full.value.problems] == [
        "f.yml:3:3: duplicate key 'b' (first defined on line 2)", "f.yml:4:4: 'x' is not a valid int"]


def test_the_linters_words_are_the_ones_a_sparse_load_keeps() -> None:
    from engine.loader import _YAML11_WORDS
    from engine.validation import YAML11_BOOLEANS

    assert _YAML11_WORDS == YAML11_BOOLEANS and max(len(w) for w in YAML11_BOOLEANS) <= 3


def test_a_sparse_map_reads_what_it_did_not_keep_from_the_file_once(tmp_path, monkeypatch) -> None:
    import hashlib

    from engine import loader

    path = tmp_path / "f.yml"
    path.write_text(_SPARSE, encoding="utf-8")
    source = loader.load_file(str(path), sparse=True).source
    full = loader.load_file(str(path)).source
    reads: list[str] = []
    real_read = loader._read
    monkeypatch.setattr(loader, "_read", lambda p: reads.append(p) or real_read(p))
    # before the run is armed: the nearest recorded parent, nothing read (validation's first look)
    assert source.locate(("steps", 0, "input", "x")) == (*full.values[("steps", 0)], "")
    source.for_run(hashlib.sha256(_SPARSE.encode("utf-8")).hexdigest())
    assert source.scalar_text == {}
    assert source.locate(("steps", 0, "when")) == (*full.values[("steps", 0, "when")], "")
    assert reads == []  # recorded: no read
    for where in [("steps", 0, "input", "x"), ("steps", 0, "id"), ("vars", "deep", "a")]:
        assert source.locate(where) == (*full.values[where], "")
    assert source.position(("steps", 0, "id"), key=True) == full.keys[("steps", 0, "id")]
    assert source.problem(("steps", 0, "input", "x"), "m") == full.problem(("steps", 0, "input", "x"), "m")
    assert reads == [str(path)]  # once


def test_a_sparse_map_says_so_when_the_file_changed(tmp_path) -> None:
    import hashlib

    from engine.loader import load_file

    path = tmp_path / "f.yml"
    path.write_text(_SPARSE, encoding="utf-8")
    source = load_file(str(path), sparse=True).source
    source.for_run(hashlib.sha256(_SPARSE.encode("utf-8")).hexdigest())
    path.write_text("# a line more\n" + _SPARSE, encoding="utf-8")  # every line moved down
    assert source.locate(("steps", 0, "dispatch", "key")) == (8, 21, "")  # recorded: still exact
    line, col, note = source.locate(("steps", 0, "input", "x"))
    assert (line, col) == (6, 5)  # steps[0], as it stood in the text that was run
    assert note == f" (approximate: {path} has changed since the run read it, so this is where steps[0] starts)"
    assert source.problem(("steps", 0, "input", "x"), "m").message == "m" + note
    path.unlink()  # gone: the same, never a wrong line
    assert source.locate(("outputs", "x")) == (1, 1, f" (approximate: {path} has changed since the run read "
                                                      "it, so this is where the document starts)")


def test_a_merging_mapping_keeps_its_own_positions_and_merged_keys_theirs() -> None:
    """Values and positions agree: the mapping's own keys win, then the first merge that has a key."""
    text = ("a: &a {x: 1, n: 5, k: {p: 1}}\nb: &b {x: 2, z: 2}\n"
            "m:\n  n: 012\n  <<: [*a, *b]\n  k: {q: 2}\n")
    for sparse in (False, True):
        doc = load_text(text, "f.yml", sparse=sparse)
        assert doc.data["m"] == {"x": 1, "n": 12, "k": {"q": 2}, "z": 2}
        where = doc.source.position
        assert where(("m",)) == (4, 3)  # where m is written, not where &a is
        assert where(("m", "n")) == (4, 6) and where(("m", "k")) == (6, 6)  # its own keys
        assert where(("m", "x")) == (1, 11) and where(("m", "z")) == (2, 17)  # the first merge that has it
        assert doc.source.scalar_text[("m", "n")] == "012"  # the text of the value kept, for the linter
    full = load_text(text, "f.yml").source
    assert full.keys[("m", "n")] == (4, 3) and full.keys[("m", "x")] == (1, 8)
    assert ("m", "k", "p") not in full.values  # &a's k lost to m's own
