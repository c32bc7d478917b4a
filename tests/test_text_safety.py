"""svqtui.text_safety: peer text is one bounded printable line; clean text is unchanged."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from svqtui.text_safety import (
    MAX_JSON_DEPTH,
    MAX_NAME,
    JSONTooDeep,
    is_unsafe,
    safe_json,
    safe_name,
    safe_text,
)

NOTE_ROOM = len("…(+999999999 chars)")


def _clean(text: str) -> bool:
    return not any(is_unsafe(ch) for ch in text)


@given(st.text(), st.integers(min_value=1, max_value=300))
def test_output_is_printable_and_bounded(text: str, limit: int) -> None:
    """Whatever the input, the output has no control, separator or bidi
    character and is at most ``limit`` characters plus the cut note."""
    out = safe_text(text, limit)
    assert _clean(out)
    assert len(out) <= limit + NOTE_ROOM


@given(st.text().filter(_clean))
def test_clean_text_within_the_limit_is_unchanged(text: str) -> None:
    """Text without unsafe characters, within the limit, comes back as it is."""
    assert safe_text(text, max(len(text), 1)) == text


@given(st.text())
def test_safe_text_is_idempotent_on_its_output_when_not_cut(text: str) -> None:
    """Made-safe text that was not cut is a fixed point (escaping never
    produces something that needs escaping)."""
    once = safe_text(text, 10_000)
    assert safe_text(once, 10_000) == once


@given(st.binary())
def test_bytes_are_decoded_and_made_safe(data: bytes) -> None:
    """Raw bytes (any encoding) become a clean string."""
    assert _clean(safe_text(data))


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("vm\x1b[2J\x1b]0;owned\x07", "vm\\x1b[2J\\x1b]0;owned\\x07"),
        ("a\nb\rc\td", "a\\x0ab\\x0dc\\x09d"),
        ("csi\x9b31m", "csi\\x9b31m"),
        ("evil\u202etxt.exe", "evil\\u202etxt.exe"),
        ("line\u2028sep", "line\\u2028sep"),
        ("plain vm-01 ü 名前", "plain vm-01 ü 名前"),
    ],
)
def test_known_attacks_are_escaped_visibly(raw: str, expected: str) -> None:
    """ESC/OSC/CSI sequences, newlines, C1 CSI, bidi overrides and line
    separators are shown as escapes; ordinary Unicode is kept."""
    assert safe_text(raw) == expected


def test_long_text_is_cut_with_a_note() -> None:
    """A 10 MB name becomes MAX_NAME characters and says how much was cut."""
    out = safe_name("x" * 10_000_000)
    assert out == "x" * MAX_NAME + f"…(+{10_000_000 - MAX_NAME} chars)"


def test_escapes_are_never_cut_in_half() -> None:
    """When escaping pushes text over the limit, whole escapes are dropped."""
    out = safe_text("ab\x1b\x1b\x1b", 6)
    assert out.startswith("ab\\x1b") and "\\x" not in out[len("ab\\x1b") :].split("…")[0]


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=20,
    )
)
def test_safe_json_cleans_every_string(value: object) -> None:
    """Every string of a (shallow) JSON value, keys included, is clean after safe_json."""
    out = json.dumps(safe_json(value), ensure_ascii=False)
    assert _clean(out)


def test_safe_json_refuses_deep_nesting() -> None:
    """A value nested deeper than MAX_JSON_DEPTH is one precise error."""
    deep: object = "x"
    for _ in range(MAX_JSON_DEPTH + 1):
        deep = [deep]
    with pytest.raises(JSONTooDeep):
        safe_json(deep)


def test_the_queue_table_is_made_safe() -> None:
    """`--once` / `ctl status`: a VM name and a status with escape sequences
    (the snapshot may come from another process) print escaped."""
    import dataclasses

    from svqtui.outputs.table import format_table
    from tests.support.console import synthetic_snapshot

    snap = synthetic_snapshot(devices=1, queues=1)
    vm = dataclasses.replace(snap.vms[0], name="\x1b]0;x\x07vm", devices=(), status="\x1b[2J")
    out = format_table(dataclasses.replace(snap, vms=(vm,)))
    assert "\x1b" not in out and "\\x1b" in out
