"""write_json (issue 19): the streamed JSON is byte for byte json.dumps(value,
indent=1), whatever the value's shape, and reaches its writer in a few large
chunks, never token by token."""

from __future__ import annotations

import enum
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loaderdbg.snapshot_json import write_json


def streamed(value, end: str = "") -> tuple[str, list[str]]:
    chunks: list[str] = []
    write_json(value, chunks.append, end=end)
    return "".join(chunks), chunks


def assert_same(value) -> None:
    text, _ = streamed(value)
    assert text == json.dumps(value, indent=1)


class Colour(enum.IntEnum):
    RED = 1


class Text(str):
    pass


class Table(dict):
    pass


SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(1 << 70), 1 << 70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["%s", "%%", "\n", "\x00", "é", "\U0001f600", '"', "\\", "\u2028"]),
)
KEYS = st.one_of(st.text(max_size=6), st.sampled_from(["%s", "a%d", "%(x)s", "\n", "é"]))
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(KEYS, inner, max_size=5),
                            st.lists(inner, max_size=3).map(tuple)),
    max_leaves=30)
# Lists of same-shaped rows take the column path: build them on purpose.
ROWS = st.lists(st.sampled_from(["object", "address", "%s", "binding"]), min_size=1, max_size=4,
                unique=True).flatmap(
    lambda keys: st.lists(st.fixed_dictionaries({k: VALUES for k in keys}), min_size=1, max_size=40))


@settings(max_examples=150, deadline=None)
@given(VALUES)
def test_any_value_matches_json_dumps(value):
    assert_same(value)


@settings(max_examples=100, deadline=None)
@given(ROWS)
def test_rows_of_one_shape_match_json_dumps(rows):
    assert_same({"relocations": rows})


def test_mixed_shapes_subclasses_and_odd_keys():
    rows = [{"a": 1, "b": None}, {"b": None, "a": 1}, {"a": Text("x"), "b": Colour.RED},
            {"a": Table(k=1), "b": {}}, {"a": [], "b": {"n": [1, {"deep": ()}]}}]
    assert_same({"rows": rows, "empty": [], "mixed": [{}, {"x": 1}, 2],
                 "keys": {1: "int", 2.5: "float", True: "bool", None: "none", "%": "pct"},
                 "floats": [math.nan, math.inf, -math.inf, 1e300, -0.0]})


def test_bindings_null_or_dict_like_relocations():
    rows = [{"object": f"lib{i}.so", "address": hex(i), "binding": None if i % 3 else
             {"object": "libc.so.6", "symbol": f"f{i}", "version": None}} for i in range(1000)]
    assert_same({"relocations": rows})


def test_unserialisable_value_is_the_same_error_as_json():
    with pytest.raises(TypeError, match="not JSON serializable"):
        streamed({"rows": [{"a": object()}]})
    with pytest.raises(TypeError):
        streamed({(1, 2): "tuple key"})


def test_end_is_appended_once():
    text, _ = streamed({"a": [1, 2]}, end="\n")
    assert text == json.dumps({"a": [1, 2]}, indent=1) + "\n"


def test_big_lists_are_written_in_chunks_of_hundreds_of_rows():
    rows = [{"object": "libx.so", "address": hex(0x1000 + 8 * i), "type": "R_X86_64_RELATIVE",
             "symbol": None, "binding": None} for i in range(100_000)]
    text, chunks = streamed({"format": "x", "relocations": rows})
    assert text == json.dumps({"format": "x", "relocations": rows}, indent=1)
    # One write per ~256 rows: never per token, never all at once.
    assert 100 <= len(chunks) <= 100_000 // 200 + 10
    assert max(len(c) for c in chunks) < 256 * 200
