"""The requests a split ring's device has not completed, oldest first.

How it is derived: the driver makes heads available by writing
``avail.ring[avail.idx % size]`` and then incrementing ``avail.idx``; the
device completes a request by writing a used element and incrementing
``used.idx``. So ``avail.idx - used.idx`` (mod 2^16) requests are
outstanding, and this module takes them to be the heads in the avail ring's
positions ``used.idx .. avail.idx - 1``, in that order: position ``used.idx``
is the oldest. That is exact for a device that completes in order (and is
guaranteed when VIRTIO_F_IN_ORDER is negotiated: ``InFlight.exact``).

Where it can be wrong:

* Out-of-order completion (a back-end with several I/O threads, a network
  device completing TX out of order): ``used.idx`` counts completions, not
  which requests completed. With heads A, B, C at positions 10, 11, 12 and C
  completed first, ``used.idx`` is 11 and this says {B, C} while A and B are
  in flight. The *count* is right; the heads may not be, and the true oldest
  is at or before the reported one. (The used ring says which heads completed,
  but heads are reused by the driver, so its entries cannot be matched to
  avail positions without the device's private state.)
* "Taken": the device's own ``last_avail_idx`` is not in shared memory;
  the outstanding requests include heads the device has not yet fetched
  (a kick not yet delivered or processed). With EVENT_IDX, ``avail_event``
  is where the device last asked to be kicked, a hint of how far it read.
* A snapshot, not atomic: the indices and the avail entries are read one
  after the other while the guest and device run; an entry can change
  between the reads (only after its request completed, so only when the
  indices moved meanwhile).
* Indices further apart than the queue size mean corrupt indices or a ring
  being reset; that is reported (``error``), not decoded.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from svqtui.virtio.guest_memory import GuestMemory, GuestMemoryError
from svqtui.virtio.split_ring import RingState, SplitRingLayout

_U16 = struct.Struct("<H")


@dataclass(frozen=True, slots=True)
class InFlight:
    """The outstanding heads of a ring, oldest first (see the module docstring)."""

    heads: tuple[int, ...] = ()
    first_position: int | None = None  # avail ring position of heads[0] (= used.idx)
    exact: bool = False  # VIRTIO_F_IN_ORDER: the device completes in order
    error: str | None = None

    @property
    def count(self) -> int:
        return len(self.heads)

    @property
    def oldest(self) -> int | None:
        return self.heads[0] if self.heads else None

    def to_json(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "heads": list(self.heads),
            "oldest": self.oldest,
            "exact": self.exact,
            "error": self.error,
        }


def in_flight(
    memory: GuestMemory, layout: SplitRingLayout, state: RingState, in_order: bool = False
) -> InFlight:
    """The heads at avail positions used.idx .. avail.idx - 1; never raises.

    ``state`` is a ``read_ring_state`` of the same ring; ``in_order``:
    VIRTIO_F_IN_ORDER was negotiated."""
    if state.error is not None and (state.avail_idx is None or state.used_idx is None):
        return InFlight(error=state.error)
    count = state.in_flight
    if count is None or state.used_idx is None:
        return InFlight(error="ring indices unknown")
    if count > layout.size:
        return InFlight(
            error=(
                f"avail.idx {state.avail_idx} - used.idx {state.used_idx} = {count} "
                f"exceeds the queue size {layout.size}: indices corrupt or ring being reset"
            )
        )
    start = state.used_idx
    heads: list[int] = []
    try:
        while len(heads) < count:  # at most two reads: up to the ring's end, then from 0
            slot = (start + len(heads)) % layout.size
            n = min(count - len(heads), layout.size - slot)
            raw = layout.read(memory, layout.avail_entry(slot), 2 * n)
            heads.extend(h for (h,) in _U16.iter_unpack(raw))
    except GuestMemoryError as err:
        return InFlight(tuple(heads), start, in_order, f"avail ring entries: {err}")
    return InFlight(tuple(heads), start, in_order)
