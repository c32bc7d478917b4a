"""The ring view: the front-end's guest memory, mapped read-only, and split ring indices.

The front-end shares guest memory with the back-end as fds plus a region
table (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG). The interposer maps the same
regions PROT_READ / MAP_SHARED and translates the ring addresses of
SET_VRING_ADDR (front-end user addresses) to read ``avail.idx`` and
``used.idx`` of each split ring when the console asks. Anything that does not
translate, does not fit the region's file or cannot be mapped reads as
unknown (None): the view never crashes on a bad address.

Mappings are immutable once made; a new table replaces the tuple of mapped
regions and closes the old maps, so a reader in another thread either reads
a live map or gets None.
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Sequence
from dataclasses import dataclass

from svqtui.sources.vhost_user.codec import MemoryRegion

PAGE = mmap.PAGESIZE


@dataclass(frozen=True, slots=True)
class MappedRegion:
    """One region of guest memory and its read-only map (None: not mappable)."""

    region: MemoryRegion
    map: mmap.mmap | None
    delta: int  # offset of the region's first byte inside ``map``
    problem: str | None = None

    def contains(self, user_addr: int, length: int) -> bool:
        start = self.region.user_addr
        return start <= user_addr and user_addr + length <= start + self.region.size

    def close(self) -> None:
        if self.map is not None:
            self.map.close()


def map_region(region: MemoryRegion, fd: int) -> MappedRegion:
    """Map a region read-only from the fd the front-end sent (not consumed)."""
    try:
        st = os.fstat(fd)
        end = region.mmap_offset + region.size
        if region.size <= 0:
            return MappedRegion(region, None, 0, "empty region")
        if st.st_size < end:
            why = f"file of {st.st_size} bytes ends before the region ({end})"
            return MappedRegion(region, None, 0, why)
        start = region.mmap_offset - region.mmap_offset % PAGE
        delta = region.mmap_offset - start
        mm = mmap.mmap(
            fd, delta + region.size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=start
        )
        return MappedRegion(region, mm, delta)
    except (OSError, ValueError, OverflowError) as err:
        return MappedRegion(region, None, 0, f"cannot map: {err}")


class GuestMemory:
    """The front-end's memory table as this connection currently knows it.

    Changed only by the I/O loop thread; ``regions`` is an immutable
    tuple that other threads may read at any time.
    """

    def __init__(self) -> None:
        self.regions: tuple[MappedRegion, ...] = ()

    def set_table(self, regions: Sequence[MemoryRegion], fds: Sequence[int]) -> None:
        """SET_MEM_TABLE: replace every region (one fd per region, in order)."""
        old = self.regions
        self.regions = tuple(map_region(r, fd) for r, fd in zip(regions, fds, strict=True))
        for m in old:
            m.close()

    def add(self, region: MemoryRegion, fd: int) -> None:
        """ADD_MEM_REG."""
        self.regions = (*self.regions, map_region(region, fd))

    def remove(self, region: MemoryRegion) -> None:
        """REM_MEM_REG: the region is named by guest address, user address and size."""
        keep: list[MappedRegion] = []
        gone: list[MappedRegion] = []
        for m in self.regions:
            r = m.region
            same = (r.guest_addr, r.user_addr, r.size) == (
                region.guest_addr,
                region.user_addr,
                region.size,
            )
            (gone if same and not gone else keep).append(m)
        self.regions = tuple(keep)
        for m in gone:
            m.close()

    def close(self) -> None:
        old, self.regions = self.regions, ()
        for m in old:
            m.close()

    @property
    def problems(self) -> list[str]:
        return [
            f"region at user address {m.region.user_addr:#x}: {m.problem}"
            for m in self.regions
            if m.problem
        ]


def read_u16(regions: Sequence[MappedRegion], user_addr: int) -> int | None:
    """A little-endian u16 at a front-end user address, or None if unknown."""
    for m in regions:
        if m.map is None or not m.contains(user_addr, 2):
            continue
        off = m.delta + user_addr - m.region.user_addr
        try:
            return int.from_bytes(m.map[off : off + 2], "little")
        except (ValueError, IndexError):  # closed by a newer table meanwhile
            return None
    return None


@dataclass(frozen=True, slots=True)
class SplitRing:
    """Where a split virtqueue's avail and used rings are (user addresses)."""

    avail: int
    used: int

    def indices(self, regions: Sequence[MappedRegion]) -> tuple[int | None, int | None]:
        """(avail.idx, used.idx), each None when unreadable."""
        # struct vring_avail / vring_used: u16 flags, u16 idx, ...
        return read_u16(regions, self.avail + 2), read_u16(regions, self.used + 2)
