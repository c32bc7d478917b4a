"""The snapshot delta: applying diff(a, b) to a gives b, for any JSON values."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.recording.delta import BadPatch, apply, diff

scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=30,
)


@settings(max_examples=300)
@given(json_values, json_values)
def test_apply_of_diff_is_the_new_value(a: Any, b: Any) -> None:
    """apply(a, diff(a, b)) == b, and diff is None exactly when a == b."""
    patch = diff(a, b)
    if patch is None:
        assert a == b and type(a) is type(b)
    else:
        assert apply(copy.deepcopy(a), patch) == b


def test_a_rolling_history_is_a_shift() -> None:
    """A rate history that moved by one sample is sent as one new sample."""
    assert diff([1.0, 2.0, 3.0], [2.0, 3.0, 4.0]) == ["s", 1, [4.0]]
    assert diff({"kicks": 10}, {"kicks": 13}) == ["d", {"kicks": ["+", 3]}, []]


def test_a_patch_that_does_not_fit_is_an_error() -> None:
    """A patch applied to the wrong value raises BadPatch (a damaged recording)."""
    with pytest.raises(BadPatch):
        apply("text", ["+", 1])
    with pytest.raises(BadPatch):
        apply([1], ["l", {"5": ["=", 2]}])
    with pytest.raises(BadPatch):
        apply({}, ["?"])
