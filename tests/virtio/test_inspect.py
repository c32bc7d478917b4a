"""inspect_ring: state, in-flight heads and the oldest request in one call,
bounded and never raising on a broken ring."""

from __future__ import annotations

import struct
from dataclasses import replace

from svqtui.virtio.chain import VIRTQ_DESC_F_NEXT
from svqtui.virtio.inspect import inspect_ring
from svqtui.virtio.requests import BlkRequest, DeviceKind, RawRequest
from svqtui.virtio.split_ring import F_EVENT_IDX, F_INDIRECT_DESC, F_RING_PACKED
from tests.support.virtio_ring import USER_BASE, Buffer, RingBuilder


def blk_ring() -> RingBuilder:
    """Two blk requests in flight (heads 3 then 0), one already completed."""
    ring = RingBuilder(16)
    for head, kind, sector in ((3, 1, 64), (0, 0, 2048)):
        hdr = ring.alloc(16)
        ring.write(hdr, struct.pack("<IIQ", kind, 0, sector))
        buffers = [Buffer(hdr, 16), Buffer(ring.alloc(4096), 4096, kind == 0)]
        buffers.append(Buffer(ring.alloc(1), 1, True))
        ring.chain(buffers, [head, head + 1, head + 2])
    ring.set_avail_entry(0, 9)
    ring.set_avail_entry(1, 3)
    ring.set_avail_entry(2, 0)
    ring.set_avail(0, 3)
    ring.set_used(0, 1)
    ring.set_used_event(1)
    ring.set_avail_event(3)
    return ring


def test_the_oldest_in_flight_request_is_decoded() -> None:
    """The head at used.idx is decoded; both in-flight heads are listed,
    oldest first; the JSON has ring, in_flight and oldest."""
    ring = blk_ring()
    features = 1 << F_EVENT_IDX | 1 << F_INDIRECT_DESC
    report = inspect_ring(ring.memory(), ring.layout, features, DeviceKind.BLK)
    assert report.inflight.heads == (3, 0)
    assert report.oldest == BlkRequest(3, 1, 64, 4096)
    doc = report.to_json()
    assert doc["ring"]["used_event"] == 1 and doc["ring"]["avail_event"] == 3
    assert doc["oldest"]["kind"] == "WRITE" and doc["in_flight"]["count"] == 2


def test_a_broken_ring_gives_reasons_not_exceptions() -> None:
    """A looping oldest chain decodes as raw with the loop; a packed ring and
    an unreadable ring give the reason with no in-flight heads."""
    ring = blk_ring()
    ring.put_desc(ring.desc, 4, 0, 4096, VIRTQ_DESC_F_NEXT, 3)
    report = inspect_ring(ring.memory(), ring.layout, 0, DeviceKind.BLK)
    assert isinstance(report.oldest, RawRequest) and report.oldest.chain.error is not None
    packed = inspect_ring(ring.memory(), ring.layout, 1 << F_RING_PACKED, DeviceKind.BLK)
    assert packed.state.error == "packed ring: not decoded" and packed.oldest is None
    assert packed.inflight.error == "packed ring: not decoded"
    gone = replace(ring.layout, used=USER_BASE + (1 << 30))
    lost = inspect_ring(ring.memory(), gone, 0, DeviceKind.BLK)
    assert lost.oldest is None and lost.inflight.error is not None
    assert lost.inflight.error.startswith("used ring: ")
