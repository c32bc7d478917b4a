"""Cell formatting for the console: counts, rates, ages, sparklines, masking.

Pure functions from model values to short strings or Rich ``Text``, shared by
the queue table, the detail screen and the status bar, so every view writes a
figure the same way. "-" always means "this source cannot know".
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from svqtui.model import MaskState
from svqtui.virtio.split_ring import RingState

UNKNOWN = "-"
SPARK_BLOCKS = " ▁▂▃▄▅▆▇█"

MASK_STYLES = {
    MaskState.UNMASKED: "green",
    MaskState.MASKED: "bold yellow",
    MaskState.PENDING: "bold magenta",
}


def count(value: int | None) -> str:
    """A counter total: exact up to 9,999,999, then M/G (at most 7 chars)."""
    if value is None:
        return UNKNOWN
    if value < 10_000_000:
        return str(value)
    for unit, scale in (("G", 1e9), ("M", 1e6)):
        if value >= scale:
            return (
                f"{value / scale:.1f}{unit}"
                if value < 100 * scale
                else f"{value / scale:.0f}{unit}"
            )
    return str(value)  # pragma: no cover - unreachable


def rate(value: float | None, known: bool = True) -> str:
    """A per-second rate: one decimal below 100, whole numbers above, k above 10^5."""
    if value is None or not known:
        return UNKNOWN
    if value < 99.95:
        return f"{value:.1f}"
    if value < 100_000:
        return f"{value:.0f}"
    return f"{value / 1000:.0f}k"


def age(seconds: float | None) -> str:
    """How long ago: "0.3s", "12s", "4m", "2h", "3d"; "-" for never or unknown."""
    if seconds is None or seconds < 0:
        return UNKNOWN
    if seconds < 10:
        return f"{seconds:.1f}s"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds // 60:.0f}m"
    if seconds < 86400:
        return f"{seconds // 3600:.0f}h"
    return f"{seconds // 86400:.0f}d"


def index(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


def sparkline(history: Sequence[float], width: int) -> str:
    """The last ``width`` samples as block characters, scaled to their maximum.

    An idle sample is a space, any activity at least "▁", so a trickle is
    visible next to a burst. Left-padded with spaces to ``width``.
    """
    samples = list(history)[-width:]
    if not samples:
        return " " * width
    peak = max(samples)
    top = len(SPARK_BLOCKS) - 1
    chars = []
    for v in samples:
        if v <= 0 or peak <= 0:
            chars.append(SPARK_BLOCKS[0])
        else:
            chars.append(SPARK_BLOCKS[max(1, min(top, round(v / peak * top)))])
    return "".join(chars).rjust(width)


def mask_text(mask: MaskState | None) -> Text:
    """The masking state as a coloured word (the word carries the meaning)."""
    if mask is None:
        return Text(UNKNOWN)
    return Text(mask.value, style=MASK_STYLES[mask])


def shadow_text(on: bool) -> Text:
    return Text("on", style="bold cyan") if on else Text("off", style="dim")


def stuck_text(reason: str | None) -> Text:
    """ "STUCK: reason" in words (NO_COLOR keeps the word), or nothing."""
    if not reason:
        return Text("")
    return Text.assemble(("STUCK", "bold reverse red"), f" {reason}")


NO_FLAGS = "·"


def suppression(ring: RingState | None) -> str:
    """A ring's notification suppression in a few cells: ``E`` (EVENT_IDX
    negotiated: the event indices decide), ``NI`` (the guest's NO_INTERRUPT),
    ``NN`` (the device's NO_NOTIFY), "·" for none of them; "pk" for a packed
    ring (not decoded), "?" when unreadable, "-" when not read."""
    if ring is None:
        return UNKNOWN
    if ring.packed:
        return "pk"
    if ring.avail_flags is None and ring.used_flags is None:
        return "?"
    parts = [
        name
        for on, name in ((ring.event_idx, "E"), (ring.no_interrupt, "NI"), (ring.no_notify, "NN"))
        if on
    ]
    return " ".join(parts) or NO_FLAGS


def why_text(row_stuck: str | None, diagnosis: str | None) -> str:
    """What the table's last column says: the diagnosis (or the stuck
    reason) of a stuck queue, or "why: " and a diagnosis of one not stuck."""
    if row_stuck:
        return diagnosis or row_stuck
    return f"why: {diagnosis}" if diagnosis else ""


def right(text: str, style: str = "") -> Text:
    """A right-aligned cell (numbers)."""
    return Text(text, style=style, justify="right")
