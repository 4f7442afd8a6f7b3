"""engine.loader: YAML 1.2 scalars, duplicate keys, positions, refusals."""

from __future__ import annotations

import pytest

from engine.errors import LocatedErrors
from engine.loader import load_text, parse_scalar


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
