"""A ring inspection (svqtui.virtio.inspect) as the QueueView fields every
source fills the same way: ``ring``, ``oldest``, ``oldest_head``,
``oldest_position`` and ``in_flight_note``."""

from __future__ import annotations

from typing import Any

from svqtui.virtio.inspect import RingReport

IN_ORDER_NOTE = (
    "avail ring positions used.idx..avail.idx-1: exact for in-order completion; "
    "out of order, the count is right but the heads may not be"
)


def ring_fields(report: RingReport) -> dict[str, Any]:
    """The QueueView fields of one inspection (keyword arguments)."""
    inflight = report.inflight
    note = inflight.error
    if note is None and not inflight.exact:
        note = IN_ORDER_NOTE
    return {
        "ring": report.state,
        "oldest": report.oldest,
        "oldest_head": inflight.oldest,
        "oldest_position": inflight.first_position if inflight.count else None,
        "in_flight_note": note,
    }
