"""The ring view: the front-end's memory table, read by pread, and split ring indices.

The front-end shares guest memory with the back-end as fds plus a region
table (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG). ``MemoryTable`` keeps a
duplicate of each region's fd and publishes the table as an immutable
``RegionTable`` (svqtui.virtio.guest_memory): reads are ``os.pread`` calls,
so a front-end that shrinks its memory file gets a precise error on that
ring's view, never a SIGBUS in svqtui. ``SplitRing`` is where SET_VRING_ADDR
put a ring (front-end user addresses) and reads its indices; anything that
does not translate or read comes back as None with the reason.

A new table releases the fds of the regions it drops; a reader in another
thread still holding the old table gets MemoryReleased, never another file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from svqtui.sources.vhost_user.codec import MemoryRegion
from svqtui.virtio.guest_memory import (
    AddressSpace,
    GuestMemory,
    GuestMemoryError,
    Region,
    RegionTable,
    keep_region,
)
from svqtui.virtio.split_ring import RingFeatures, SplitRingLayout

MAX_KEPT_REGIONS = 512  # regions whose fds are kept per connection (QEMU has at most 512 slots)


def _keep(region: MemoryRegion, fd: int) -> Region:
    return keep_region(region.guest_addr, region.size, region.user_addr, region.mmap_offset, fd)


def _unkept(region: MemoryRegion, why: str) -> Region:
    r = region
    return Region(r.guest_addr, r.size, r.user_addr, r.mmap_offset, None, why)


class MemoryTable:
    """The front-end's memory table as this connection currently knows it.

    Changed only by the I/O loop thread; ``table`` is an immutable
    RegionTable that other threads may read at any time."""

    def __init__(self) -> None:
        self.table = RegionTable()

    @property
    def regions(self) -> tuple[Region, ...]:
        return self.table.regions

    def set_table(self, regions: Sequence[MemoryRegion], fds: Sequence[int]) -> None:
        """SET_MEM_TABLE: replace every region (one fd per region, in order)."""
        new = RegionTable(_keep(r, fd) for r, fd in zip(regions, fds, strict=True))
        old, self.table = self.table, new
        old.release()

    def add(self, region: MemoryRegion, fd: int) -> None:
        """ADD_MEM_REG (past MAX_KEPT_REGIONS the region is listed, not read)."""
        if len(self.table.regions) >= MAX_KEPT_REGIONS:
            kept = _unkept(region, f"more than {MAX_KEPT_REGIONS} regions: not read")
        else:
            kept = _keep(region, fd)
        self.table = RegionTable((*self.table.regions, kept))

    def remove(self, region: MemoryRegion) -> None:
        """REM_MEM_REG: the region is named by guest address, user address and size."""
        keep: list[Region] = []
        gone: list[Region] = []
        for r in self.table.regions:
            same = (r.guest_addr, r.user_addr, r.size) == (
                region.guest_addr,
                region.user_addr,
                region.size,
            )
            (gone if same and not gone else keep).append(r)
        self.table = RegionTable(keep)
        RegionTable(gone).release()

    def adopt(self, table: RegionTable) -> None:
        """Take a table handed over by a takeover (svqtui.sources.vhost_user.handover)."""
        old, self.table = self.table, table
        old.release()

    def close(self) -> None:
        """Release every kept fd (the connection closed)."""
        old, self.table = self.table, RegionTable()
        old.release()

    @property
    def problems(self) -> list[str]:
        return self.table.problems


@dataclass(frozen=True, slots=True)
class RingIndices:
    """avail.idx and used.idx of a split ring (None: unreadable, ``error`` says why)."""

    avail: int | None
    used: int | None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class SplitRing:
    """Where a split virtqueue is (front-end user addresses) and its size, if known."""

    avail: int
    used: int
    desc: int | None = None
    num: int | None = None

    @property
    def layout(self) -> SplitRingLayout | None:
        """The full layout for svqtui.virtio (None until SET_VRING_NUM and the
        descriptor table's address are known)."""
        if self.desc is None or self.num is None:
            return None
        return SplitRingLayout(
            self.num, self.desc, self.avail, self.used, AddressSpace.FRONTEND_VIRTUAL
        )

    def indices(self, memory: GuestMemory) -> RingIndices:
        """(avail.idx, used.idx) at user address + 2 of each ring; never raises."""
        # struct vring_avail / vring_used: u16 flags, u16 idx, ...
        values: list[int | None] = []
        errors: list[str] = []
        for what, addr in (("avail ring", self.avail), ("used ring", self.used)):
            try:
                values.append(int.from_bytes(memory.read_user(addr + 2, 2), "little"))
            except GuestMemoryError as err:
                values.append(None)
                errors.append(f"{what}: {err}")
        return RingIndices(values[0], values[1], errors[0] if errors else None)


@dataclass(frozen=True, slots=True)
class RingAccess:
    """What svqtui.virtio needs to read one ring of a live connection: the
    published memory table, the ring's layout, and the negotiated features."""

    memory: GuestMemory
    layout: SplitRingLayout
    features: int

    @property
    def not_decoded(self) -> str | None:
        """Why this ring is not decoded (packed ring, IOVA addresses), or None."""
        return RingFeatures.from_bits(self.features).not_decoded
