"""A demo queue's split ring in a byte buffer, read back like a real one.

The demo's synthetic guest and device write what a real driver and device
would into a ``BufferMemory`` (svqtui.virtio.guest_memory): descriptors
(an indirect table per virtio-blk request and virtio-net TX packet, one
writable buffer per RX buffer), the request headers, the avail and used
rings with their flags and event indices. The view reads it back with
``inspect_ring``, the same call that reads an interposed device's ring, so
every ring column and the oldest request show in the demo.

Layout (guest-physical, one buffer per queue): descriptor table at 0, avail
ring at 4 KiB, used ring at 8 KiB, indirect tables at 12 KiB (48 bytes per
head), request headers at 24 KiB (16 per head). Data buffers point past the
buffer (they are never read).
"""

from __future__ import annotations

import struct

from svqtui.virtio.chain import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from svqtui.virtio.guest_memory import AddressSpace, BufferMemory
from svqtui.virtio.inspect import RingReport, inspect_ring
from svqtui.virtio.requests import DeviceKind
from svqtui.virtio.split_ring import (
    DESC_SIZE,
    F_EVENT_IDX,
    F_INDIRECT_DESC,
    F_VERSION_1,
    SplitRingLayout,
)

DESC_AT = 0
AVAIL_AT = 4096
USED_AT = 8192
INDIRECT_AT = 12288
HEADERS_AT = 24576
BUFFER_BYTES = 28672
DATA_AT = 0x10_0000  # data buffers: never read, so outside the buffer
INDIRECT_BYTES = 3 * DESC_SIZE
BLK_KINDS = (0, 1, 0, 1, 0, 4)  # READ, WRITE, READ, WRITE, READ, FLUSH

_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")
_BLK_HEADER = struct.Struct("<IIQ")
_NET_HEADER = struct.Struct("<BBHHHHH")


class DemoRing:
    """One split ring of ``size`` (at most 256) that the demo writes and reads."""

    def __init__(self, size: int, device: DeviceKind, index: int, event_idx: bool) -> None:
        assert size <= 256, "the layout holds 256 entries"
        self.size = size
        self.device = device
        self.rx = device is DeviceKind.NET and index % 2 == 0  # virtio-net: even queues receive
        self.features = 1 << F_VERSION_1 | 1 << F_INDIRECT_DESC
        if event_idx:
            self.features |= 1 << F_EVENT_IDX
        self.data = bytearray(BUFFER_BYTES)
        self.memory = BufferMemory(self.data)
        self.layout = SplitRingLayout(size, DESC_AT, AVAIL_AT, USED_AT, AddressSpace.GUEST_PHYSICAL)

    def _u16(self, addr: int, value: int) -> None:
        _U16.pack_into(self.data, addr, value & 0xFFFF)

    def post(self, position: int) -> None:
        """The driver makes one request available at avail ring ``position``
        (its head is position % size: in-flight requests never share one)."""
        head = position % self.size
        desc = DESC_AT + DESC_SIZE * head
        data = DATA_AT + head * 0x1_0000
        header = HEADERS_AT + 16 * head
        if self.rx:
            _DESC.pack_into(self.data, desc, data, 1526, VIRTQ_DESC_F_WRITE, 0)
        else:
            table = INDIRECT_AT + INDIRECT_BYTES * head
            _DESC.pack_into(self.data, desc, table, INDIRECT_BYTES, VIRTQ_DESC_F_INDIRECT, 0)
            chain = self._blk(position, header, data) if self.device is DeviceKind.BLK else None
            if chain is None:  # a TX packet: header, then the packet
                size = 64 + position * 37 % 1400
                _NET_HEADER.pack_into(self.data, header, 0, 0, 0, 0, 0, 0, 1)
                chain = [(header, 12, VIRTQ_DESC_F_NEXT), (data, size, 0)]
            for i, (addr, length, flags) in enumerate(chain):
                nxt = i + 1 if flags & VIRTQ_DESC_F_NEXT else 0
                _DESC.pack_into(self.data, table + DESC_SIZE * i, addr, length, flags, nxt)
        self._u16(self.layout.avail_entry(position), head)

    def _blk(self, position: int, header: int, data: int) -> list[tuple[int, int, int]]:
        kind = BLK_KINDS[position % len(BLK_KINDS)]
        sector = position * 2654435761 % (1 << 21) * 8
        _BLK_HEADER.pack_into(self.data, header, kind, 0, sector if kind in (0, 1) else 0)
        status = (data + 0xFFFF, 1, VIRTQ_DESC_F_WRITE)
        if kind == 4:  # FLUSH: header and status only
            return [(header, 16, VIRTQ_DESC_F_NEXT), status]
        length = 4096 << position % 4
        flags = VIRTQ_DESC_F_NEXT | (VIRTQ_DESC_F_WRITE if kind == 0 else 0)
        return [(header, 16, VIRTQ_DESC_F_NEXT), (data, length, flags), status]

    def set_avail_idx(self, idx: int) -> None:
        self._u16(AVAIL_AT + 2, idx)

    def complete(self, old_used: int, new_used: int) -> None:
        """The device uses positions old_used .. new_used - 1, in order."""
        n = (new_used - old_used) & 0xFFFF
        for i in range(min(n, self.size)):
            position = (old_used + i) & 0xFFFF
            head = position % self.size
            _USED_ELEM.pack_into(self.data, self.layout.used_entry(position), head, 0)
        self._u16(USED_AT + 2, new_used)

    def set_avail_flags(self, flags: int) -> None:
        self._u16(AVAIL_AT, flags)

    def set_used_flags(self, flags: int) -> None:
        self._u16(USED_AT, flags)

    def set_used_event(self, idx: int) -> None:
        self._u16(self.layout.used_event, idx)

    def set_avail_event(self, idx: int) -> None:
        self._u16(self.layout.avail_event, idx)

    def report(self) -> RingReport:
        return inspect_ring(self.memory, self.layout, self.features, self.device)
