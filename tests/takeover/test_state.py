"""The state document's versioning: a version this svqtui does not
understand, or fd references that do not match the fds sent, are refused
whole with one line."""

from __future__ import annotations

import pytest

from svqtui.takeover.errors import StateRefused
from svqtui.takeover.state import STATE_VERSION, check, header


def test_a_known_version_with_matching_fds_is_accepted() -> None:
    doc = header({"devices": []})
    got = check(doc, 3, [2, 0, 1])
    assert got.version == STATE_VERSION


def test_an_unknown_version_is_refused_in_one_line() -> None:
    """A newer svqtui's state: refused, naming both versions, nothing taken over."""
    doc = {**header({}), "state_version": STATE_VERSION + 1, "svqtui": "9.9"}
    with pytest.raises(StateRefused) as raised:
        check(doc, 0, [])
    text = str(raised.value)
    assert "\n" not in text and f"state version {STATE_VERSION + 1}" in text
    assert "svqtui 9.9" in text and "nothing was taken over" in text


@pytest.mark.parametrize(
    ("refs", "count", "why"),
    [
        ([0, 0], 2, "referenced twice"),
        ([0, 5], 2, "fd #5 referenced, 2 sent"),
        ([0], 2, "not referenced: [1]"),
    ],
)
def test_fd_references_must_match_the_fds_sent(refs: list[int], count: int, why: str) -> None:
    with pytest.raises(StateRefused, match=why.replace("[", r"\[").replace("]", r"\]")):
        check(header({}), count, refs)


def test_a_document_without_a_version_is_refused() -> None:
    with pytest.raises(StateRefused, match="no state_version"):
        check({"devices": []}, 0, [])
