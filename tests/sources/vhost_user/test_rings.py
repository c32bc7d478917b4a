"""The ring view: the front-end's memory table kept as fds and read by
pread, and split-ring index reads that never fail on a bad address."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from support.vhost_user_rig import open_fds

from svqtui.sources.vhost_user.codec import MemoryRegion
from svqtui.sources.vhost_user.rings import MAX_KEPT_REGIONS, MemoryTable, RingIndices, SplitRing
from svqtui.virtio.guest_memory import AddressSpace, MemoryReleased

SIZE = 1 << 20
UADDR = 0x7F00_0000_0000


@pytest.fixture
def guest() -> Iterator[tuple[int, mmap.mmap]]:
    """A memfd of 1 MiB, mapped writable like a front-end's guest memory."""
    fd = os.memfd_create("ring-test")
    os.ftruncate(fd, SIZE)
    mem = mmap.mmap(fd, SIZE)
    yield fd, mem
    mem.close()
    os.close(fd)


def test_indices_are_read_through_the_region_table(guest: tuple[int, mmap.mmap]) -> None:
    """avail.idx and used.idx are read at user address + 2 of each ring,
    through a region whose file offset is not page-aligned, and track writes."""
    fd, mem = guest
    memory = MemoryTable()
    region = MemoryRegion(0x1000, SIZE - 0x1100, UADDR, 0x100)
    memory.set_table([region], [fd])
    ring = SplitRing(avail=UADDR + 0x2000, used=UADDR + 0x3000)
    mem[0x100 + 0x2002 : 0x100 + 0x2004] = (513).to_bytes(2, "little")
    mem[0x100 + 0x3002 : 0x100 + 0x3004] = (510).to_bytes(2, "little")
    assert ring.indices(memory.table) == RingIndices(513, 510)
    mem[0x100 + 0x3002 : 0x100 + 0x3004] = (513).to_bytes(2, "little")
    assert ring.indices(memory.table) == RingIndices(513, 513)
    memory.close()


def test_addresses_outside_every_region_read_as_unknown_with_the_reason(
    guest: tuple[int, mmap.mmap],
) -> None:
    """Below, above, or straddling the end of a region reads as None and the
    error names the address; inside reads the value."""
    fd, _ = guest
    memory = MemoryTable()
    memory.set_table([MemoryRegion(0, 0x4000, UADDR, 0)], [fd])
    for bad in (UADDR - 4, UADDR + 0x3FFD, UADDR + 0x4000):
        got = SplitRing(avail=bad, used=UADDR).indices(memory.table)
        assert got.avail is None and got.used == 0
        assert got.error is not None and f"{bad + 2:#x}" in got.error
        assert "outside every memory region" in got.error
    memory.close()


def test_a_region_beyond_its_file_reads_as_truncated(guest: tuple[int, mmap.mmap]) -> None:
    """A region that ends past its file's end (an mmap load there would be
    SIGBUS) is kept with a stated problem; a read past the file's end is
    None with 'truncated', a read inside the file still works."""
    fd, mem = guest
    mem[SIZE - 4096 + 2 : SIZE - 4096 + 4] = (9).to_bytes(2, "little")
    memory = MemoryTable()
    memory.set_table([MemoryRegion(0, SIZE, UADDR, 4096)], [fd])
    assert "ends before the region" in memory.problems[0]
    past = SplitRing(avail=UADDR + SIZE - 4096, used=UADDR + SIZE - 8).indices(memory.table)
    assert past.avail is None and past.used is None
    assert past.error is not None and "the memory file is 1048576 bytes long" in past.error
    inside = SplitRing(avail=UADDR + SIZE - 8192, used=UADDR).indices(memory.table)
    assert inside.avail == 9
    memory.close()


def test_new_tables_and_removed_regions_release_fds_and_old_readers_get_released(
    guest: tuple[int, mmap.mmap],
) -> None:
    """A new SET_MEM_TABLE releases the old table's fds (a reader still
    holding it gets MemoryReleased, never another file); REM_MEM_REG drops
    the named region; close() leaves no fd behind."""
    fd, mem = guest
    before = open_fds()
    mem[2:4] = (7).to_bytes(2, "little")
    memory = MemoryTable()
    memory.set_table([MemoryRegion(0, 0x1000, UADDR, 0)], [fd])
    old = memory.table
    assert SplitRing(UADDR, UADDR).indices(old).avail == 7
    memory.set_table([MemoryRegion(0, 0x1000, UADDR + 0x10000, 0)], [fd])
    with pytest.raises(MemoryReleased):
        old.read_user(UADDR + 2, 2)
    assert SplitRing(UADDR + 0x10000, UADDR + 0x10000).indices(memory.table).avail == 7
    memory.add(MemoryRegion(0x1000, 0x1000, UADDR + 0x20000, 0), fd)
    memory.remove(MemoryRegion(0, 0x1000, UADDR + 0x10000, 12345))
    assert [r.user_addr for r in memory.regions] == [UADDR + 0x20000]
    assert len(open_fds()) == len(before) + 1
    memory.close()
    assert memory.regions == ()
    assert open_fds() == before


def test_regions_past_the_limit_are_listed_not_kept(guest: tuple[int, mmap.mmap]) -> None:
    """ADD_MEM_REG past MAX_KEPT_REGIONS keeps no more fds: the region is
    listed with its problem and reads as unreadable."""
    fd, _ = guest
    before = len(open_fds())
    memory = MemoryTable()
    for i in range(MAX_KEPT_REGIONS + 3):
        memory.add(MemoryRegion(i << 12, 0x1000, UADDR + (i << 12), 0), fd)
    assert len(open_fds()) == before + MAX_KEPT_REGIONS
    assert len(memory.problems) == 3 and "not read" in memory.problems[0]
    last = UADDR + ((MAX_KEPT_REGIONS + 2) << 12)
    got = SplitRing(last, last).indices(memory.table)
    assert got.avail is None and got.error is not None and "not read" in got.error
    memory.close()
    assert len(open_fds()) == before


def test_layout_needs_the_descriptor_table_and_size() -> None:
    """SplitRing.layout is the full ring layout in front-end virtual
    addresses once SET_VRING_NUM and SET_VRING_ADDR are known, else None."""
    assert SplitRing(0x2000, 0x3000).layout is None
    layout = SplitRing(0x2000, 0x3000, 0x1000, 256).layout
    assert layout is not None
    assert (layout.size, layout.desc, layout.avail, layout.used) == (256, 0x1000, 0x2000, 0x3000)
    assert layout.space is AddressSpace.FRONTEND_VIRTUAL


@given(st.integers(0, 2**64 - 1))
@settings(deadline=None, max_examples=200)
def test_any_address_reads_a_value_or_none(addr: int) -> None:
    """No user address, however wild, raises: it reads a u16 or None with a reason."""
    fd = os.memfd_create("ring-prop")
    try:
        os.ftruncate(fd, 0x2000)
        memory = MemoryTable()
        memory.set_table([MemoryRegion(0, 0x2000, UADDR, 0)], [fd])
        got = SplitRing(avail=addr - 2, used=UADDR).indices(memory.table)
        inside = UADDR <= addr <= UADDR + 0x2000 - 2
        assert (got.avail is not None) == inside
        assert (got.error is None) == inside
        memory.close()
    finally:
        os.close(fd)
