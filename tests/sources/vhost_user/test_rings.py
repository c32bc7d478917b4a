"""The ring view: read-only maps of the front-end's memory regions and
split-ring index reads that never fail on a bad address."""

from __future__ import annotations

import mmap
import os
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.sources.vhost_user.codec import MemoryRegion
from svqtui.sources.vhost_user.rings import GuestMemory, SplitRing, read_u16

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
    through a region whose mmap offset is not page-aligned, and track writes."""
    fd, mem = guest
    memory = GuestMemory()
    region = MemoryRegion(0x1000, SIZE - 0x1100, UADDR, 0x100)
    memory.set_table([region], [fd])
    ring = SplitRing(avail=UADDR + 0x2000, used=UADDR + 0x3000)
    mem[0x100 + 0x2002 : 0x100 + 0x2004] = (513).to_bytes(2, "little")
    mem[0x100 + 0x3002 : 0x100 + 0x3004] = (510).to_bytes(2, "little")
    assert ring.indices(memory.regions) == (513, 510)
    mem[0x100 + 0x3002 : 0x100 + 0x3004] = (513).to_bytes(2, "little")
    assert ring.indices(memory.regions) == (513, 513)
    memory.close()


def test_addresses_outside_every_region_read_as_unknown(guest: tuple[int, mmap.mmap]) -> None:
    """Below, above, or straddling the end of a region reads as None."""
    fd, _ = guest
    memory = GuestMemory()
    memory.set_table([MemoryRegion(0, 0x4000, UADDR, 0)], [fd])
    assert read_u16(memory.regions, UADDR - 2) is None
    assert read_u16(memory.regions, UADDR + 0x3FFF) is None
    assert read_u16(memory.regions, UADDR + 0x4000) is None
    assert read_u16(memory.regions, UADDR + 0x3FFE) == 0
    memory.close()


def test_a_region_beyond_its_file_is_not_mapped(guest: tuple[int, mmap.mmap]) -> None:
    """A region that would end past the file's size (SIGBUS on access) is
    left unmapped with a stated problem; its addresses read as None."""
    fd, _ = guest
    memory = GuestMemory()
    memory.set_table([MemoryRegion(0, SIZE, UADDR, 4096)], [fd])
    assert memory.regions[0].map is None
    assert "ends before the region" in memory.problems[0]
    assert read_u16(memory.regions, UADDR) is None


def test_new_tables_and_removed_regions_unmap_and_old_readers_get_none(
    guest: tuple[int, mmap.mmap],
) -> None:
    """A new SET_MEM_TABLE closes the old maps (a reader still holding them
    gets None, not a crash); REM_MEM_REG drops the named region."""
    fd, mem = guest
    mem[2:4] = (7).to_bytes(2, "little")
    memory = GuestMemory()
    memory.set_table([MemoryRegion(0, 0x1000, UADDR, 0)], [fd])
    old = memory.regions
    assert read_u16(old, UADDR + 2) == 7
    memory.set_table([MemoryRegion(0, 0x1000, UADDR + 0x10000, 0)], [fd])
    assert read_u16(old, UADDR + 2) is None
    assert read_u16(memory.regions, UADDR + 0x10002) == 7
    memory.add(MemoryRegion(0x1000, 0x1000, UADDR + 0x20000, 0), fd)
    memory.remove(MemoryRegion(0, 0x1000, UADDR + 0x10000, 12345))
    assert [r.region.user_addr for r in memory.regions] == [UADDR + 0x20000]
    memory.close()
    assert memory.regions == ()


@given(st.integers(0, 2**64 - 1))
@settings(max_examples=200)
def test_any_address_reads_a_value_or_none(addr: int) -> None:
    """No user address, however wild, raises: it reads a u16 or None."""
    fd = os.memfd_create("ring-prop")
    try:
        os.ftruncate(fd, 0x2000)
        memory = GuestMemory()
        memory.set_table([MemoryRegion(0, 0x2000, UADDR, 0)], [fd])
        value = read_u16(memory.regions, addr)
        inside = UADDR <= addr <= UADDR + 0x2000 - 2
        assert (value is not None) == inside
        memory.close()
    finally:
        os.close(fd)
