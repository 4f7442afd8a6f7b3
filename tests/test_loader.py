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


def test_pyyaml_is_imported_without_compiling_the_pure_python_readers_check() -> None:
    """The check is compiled when the pure-Python reader first uses it, and re.compile is left as it was."""
    code = (
        "import re, engine.loader, yaml.reader\n"
        "check = yaml.reader.Reader.NON_PRINTABLE\n"
        "print(type(check).__name__, re.compile.__module__)\n"
        "try:\n"
        "    yaml.reader.Reader('ok\\x01')\n"
        "except yaml.reader.ReaderError as exc:\n"
        "    print(str(exc).splitlines()[0])\n"
        "print(yaml.load('a: [1, ok]', Loader=yaml.SafeLoader))\n"  # the pure-Python loader end to end
    )
    proc = subprocess.run([sys.executable, "-c", code], env=base_env(), capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.splitlines() == [
        "_LazyPattern re",
        "unacceptable character #x0001: special characters are not allowed",
        "{'a': [1, 'ok']}",
    ]


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
