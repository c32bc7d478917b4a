"""One call for a ring's diagnosis inputs: its state, its in-flight heads and
the oldest request decoded (what the monitor, the JSON and the detail view need).

``inspect_ring`` composes split_ring, inflight, chain and requests; it never
raises and reads a bounded amount of guest memory: two ring headers, two
event indices, at most two stretches of avail entries (<= 64 KiB) and one
chain (<= queue size + 1 descriptors plus the request header).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from svqtui.virtio.chain import MAX_CHAIN_BYTES, walk_chain
from svqtui.virtio.guest_memory import GuestMemory
from svqtui.virtio.inflight import InFlight, in_flight
from svqtui.virtio.requests import DeviceKind, Request, decode_request
from svqtui.virtio.split_ring import RingFeatures, RingState, SplitRingLayout, read_ring_state


@dataclass(frozen=True, slots=True)
class RingReport:
    """A ring at one instant: suppression state, in-flight heads, the oldest decoded."""

    state: RingState
    inflight: InFlight
    oldest: Request | None

    def to_json(self) -> dict[str, Any]:
        """``ring`` (state), ``in_flight`` and ``oldest`` (without its age,
        which only a monitor that watches over time can know)."""
        return {
            "ring": self.state.to_json(),
            "in_flight": self.inflight.to_json(),
            "oldest": self.oldest.to_json() if self.oldest is not None else None,
        }


def inspect_ring(
    memory: GuestMemory,
    layout: SplitRingLayout,
    features: int,
    device: DeviceKind,
    max_bytes: int = MAX_CHAIN_BYTES,
) -> RingReport:
    """Read a split ring's state, its in-flight heads, and decode the oldest."""
    ring_features = RingFeatures.from_bits(features)
    state = read_ring_state(memory, layout, ring_features)
    if state.error is not None and (state.avail_idx is None or state.used_idx is None):
        return RingReport(state, InFlight(error=state.error), None)
    inflight = in_flight(memory, layout, state, ring_features.in_order)
    oldest = None
    if inflight.oldest is not None:
        chain = walk_chain(
            memory,
            layout,
            inflight.oldest,
            indirect_ok=ring_features.indirect_desc,
            max_bytes=max_bytes,
        )
        oldest = decode_request(memory, chain, device, features)
    return RingReport(state, inflight, oldest)
