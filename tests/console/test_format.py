"""Cell formatting: every figure is short, exact where it fits, and "-"
where the source cannot know."""

from __future__ import annotations

import pytest

from svqtui.console import format as fmt
from svqtui.model import MaskState


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "-"),
        (0, "0"),
        (9_999_999, "9999999"),
        (10_000_000, "10.0M"),
        (123_456_789, "123M"),
        (2_500_000_000, "2.5G"),
    ],
)
def test_count_is_exact_then_compact(value: int | None, text: str) -> None:
    """Totals stay exact up to 7 digits, then M/G, never wider than 7 chars."""
    assert fmt.count(value) == text
    assert len(fmt.count(value)) <= 7


@pytest.mark.parametrize(
    ("value", "text"), [(0.0, "0.0"), (12.34, "12.3"), (99.96, "100"), (12345.6, "12346")]
)
def test_rate(value: float, text: str) -> None:
    """Rates: one decimal below 100, whole numbers above."""
    assert fmt.rate(value) == text


def test_rate_unknown_without_counts() -> None:
    """A source that cannot count shows "-" rather than a false 0.0."""
    assert fmt.rate(0.0, known=False) == "-"
    assert fmt.rate(None) == "-"


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (0.04, "0.0s"), (3.26, "3.3s"), (42.0, "42s"), (125.0, "2m"), (7300.0, "2h")],
)
def test_age(seconds: float | None, text: str) -> None:
    """Ages fit in five characters."""
    assert fmt.age(seconds) == text
    assert len(fmt.age(seconds)) <= 5


def test_sparkline_scales_to_the_peak_and_pads() -> None:
    """The peak is a full block, idle is blank, any activity at least the lowest block."""
    line = fmt.sparkline([0.0, 1.0, 50.0, 100.0], 6)
    assert line == "   ▁▄█"  # half the peak is a half block
    assert len(fmt.sparkline([], 6)) == 6
    assert fmt.sparkline([5.0] * 20, 4) == "████"


def test_states_are_words_not_colours() -> None:
    """MASKED/PENDING/STUCK are words in the text, so NO_COLOR loses nothing."""
    assert fmt.mask_text(MaskState.PENDING).plain == "PENDING"
    assert fmt.mask_text(None).plain == "-"
    assert fmt.stuck_text("3 kick(s) and no call for 6s").plain.startswith("STUCK ")
    assert fmt.stuck_text(None).plain == ""
