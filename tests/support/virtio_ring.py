"""A split virtqueue in bytes-backed guest memory, for building rings by hand.

``RingBuilder`` lays out a descriptor table, avail ring and used ring in a
``bytearray`` (guest-physical base 0, front-end user addresses at
``USER_BASE``), writes descriptors, chains, indirect tables and ring fields,
and serves them through ``svqtui.virtio.guest_memory.BufferMemory``, whose
reads ``CountingMemory`` counts. Hostile rings are built by writing anything.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from svqtui.virtio.chain import VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE
from svqtui.virtio.guest_memory import AddressSpace, BufferMemory
from svqtui.virtio.split_ring import SplitRingLayout

USER_BASE = 0x7F00_0000_0000
MEM_SIZE = 1 << 20
DESC_BASE = 0x1000
DATA_BASE = 0x8_0000  # buffers and indirect tables go from here
_DESC = struct.Struct("<QIHH")
_U16 = struct.Struct("<H")
_USED_ELEM = struct.Struct("<II")


@dataclass(frozen=True)
class Buffer:
    """A buffer of a chain to build: where, how long, device-writable or not."""

    addr: int
    len: int
    write: bool = False


class CountingMemory:
    """A GuestMemory that counts the reads it passes on."""

    def __init__(self, inner: BufferMemory) -> None:
        self.inner = inner
        self.reads = 0

    def read(self, addr: int, size: int) -> bytes:
        self.reads += 1
        return self.inner.read(addr, size)

    def read_user(self, addr: int, size: int) -> bytes:
        self.reads += 1
        return self.inner.read_user(addr, size)


class RingBuilder:
    """One split ring of ``size`` entries in a fresh zeroed guest memory."""

    def __init__(self, size: int = 256, mem_size: int = MEM_SIZE) -> None:
        self.size = size
        self.mem = bytearray(mem_size)
        self.desc = DESC_BASE
        self.avail = self.desc + 16 * size
        self.used = (self.avail + 6 + 2 * size + 4095) & ~4095
        self.next_free = DATA_BASE

    @property
    def layout(self) -> SplitRingLayout:
        """The ring in front-end user addresses, as SET_VRING_ADDR gives it."""
        return SplitRingLayout(
            self.size,
            USER_BASE + self.desc,
            USER_BASE + self.avail,
            USER_BASE + self.used,
            AddressSpace.FRONTEND_VIRTUAL,
        )

    def memory(self) -> CountingMemory:
        return CountingMemory(BufferMemory(self.mem, 0, USER_BASE))

    def alloc(self, size: int) -> int:
        """Guest-physical space for a buffer or an indirect table (16-aligned)."""
        addr = self.next_free
        self.next_free += (size + 15) & ~15
        assert self.next_free <= len(self.mem)
        return addr

    # -- descriptors -------------------------------------------------------------

    def put_desc(
        self, table: int, index: int, addr: int, length: int, flags: int, nxt: int
    ) -> None:
        _DESC.pack_into(self.mem, table + 16 * index, addr, length, flags, nxt)

    def chain(self, buffers: list[Buffer], indices: list[int]) -> int:
        """Write a direct chain into the ring's table at ``indices``; returns the head."""
        for i, (buf, index) in enumerate(zip(buffers, indices, strict=True)):
            last = i == len(buffers) - 1
            flags = (0 if last else VIRTQ_DESC_F_NEXT) | (VIRTQ_DESC_F_WRITE if buf.write else 0)
            nxt = 0 if last else indices[i + 1]
            self.put_desc(self.desc, index, buf.addr, buf.len, flags, nxt)
        return indices[0]

    def indirect_chain(self, buffers: list[Buffer], head: int, order: list[int]) -> int:
        """An indirect table holding ``buffers`` (entry ``order[k]`` is the
        k-th buffer), pointed to by descriptor ``head`` of the ring."""
        table = self.alloc(16 * len(buffers))
        for k, buf in enumerate(buffers):
            last = k == len(buffers) - 1
            flags = (0 if last else VIRTQ_DESC_F_NEXT) | (VIRTQ_DESC_F_WRITE if buf.write else 0)
            nxt = 0 if last else order[k + 1]
            self.put_desc(table, order[k], buf.addr, buf.len, flags, nxt)
        assert order[0] == 0, "an indirect table's chain starts at entry 0"
        self.put_desc(self.desc, head, table, 16 * len(buffers), VIRTQ_DESC_F_INDIRECT, 0)
        return head

    # -- ring fields -------------------------------------------------------------

    def set_avail(self, flags: int, idx: int) -> None:
        struct.pack_into("<HH", self.mem, self.avail, flags, idx)

    def set_used(self, flags: int, idx: int) -> None:
        struct.pack_into("<HH", self.mem, self.used, flags, idx)

    def set_avail_entry(self, position: int, head: int) -> None:
        _U16.pack_into(self.mem, self.avail + 4 + 2 * (position % self.size), head)

    def set_used_entry(self, position: int, head: int, length: int) -> None:
        _USED_ELEM.pack_into(self.mem, self.used + 4 + 8 * (position % self.size), head, length)

    def set_used_event(self, value: int) -> None:
        _U16.pack_into(self.mem, self.avail + 4 + 2 * self.size, value)

    def set_avail_event(self, value: int) -> None:
        _U16.pack_into(self.mem, self.used + 4 + 8 * self.size, value)

    def write(self, addr: int, data: bytes) -> None:
        self.mem[addr : addr + len(data)] = data
