"""Guest memory reads by pread on kept fds: both address spaces, precise
errors for every failure, bounded sizes, and fds released exactly once."""

from __future__ import annotations

import errno
import os
import resource
import threading
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.virtio.guest_memory import (
    MAX_READ,
    AddressSpace,
    BufferMemory,
    GuestMemoryError,
    KeptFd,
    MemoryReleased,
    ReadTooLarge,
    RegionTable,
    RegionTruncated,
    RegionUnreadable,
    UnmappedAddress,
    keep_region,
    read_in,
)
from tests.support.vhost_user_rig import open_fds

SIZE = 0x10000
GPA = 0x4000_0000
UADDR = 0x7F00_0000_0000


@pytest.fixture
def memfd() -> Iterator[int]:
    """A 64 KiB memfd whose byte i is i % 251 (so every offset is recognisable)."""
    fd = os.memfd_create("gm-test")
    os.write(fd, bytes(i % 251 for i in range(SIZE)))
    yield fd
    os.close(fd)


def expected(offset: int, size: int) -> bytes:
    return bytes(i % 251 for i in range(offset, offset + size))


def test_reads_by_guest_physical_and_user_address(memfd: int) -> None:
    """The same bytes are found by guest-physical and by front-end virtual
    address, through the region's file offset."""
    table = RegionTable([keep_region(GPA, 0x8000, UADDR, 0x1000, memfd)])
    assert table.read(GPA + 0x10, 32) == expected(0x1010, 32)
    assert table.read_user(UADDR + 0x10, 32) == expected(0x1010, 32)
    assert read_in(table, AddressSpace.GUEST_PHYSICAL, GPA, 4) == expected(0x1000, 4)
    assert read_in(table, AddressSpace.FRONTEND_VIRTUAL, UADDR + 0x7FFC, 4) == expected(0x8FFC, 4)
    table.release()


def test_a_read_spans_regions_contiguous_in_its_address_space(memfd: int) -> None:
    """Two regions adjacent in guest-physical space (different file offsets)
    serve one read across their boundary; a gap between regions is unmapped."""
    table = RegionTable(
        [
            keep_region(GPA, 0x1000, UADDR, 0x3000, memfd),
            keep_region(GPA + 0x1000, 0x1000, UADDR + 0x10000, 0x5000, memfd),
        ]
    )
    assert table.read(GPA + 0xFF0, 32) == expected(0x3FF0, 16) + expected(0x5000, 16)
    with pytest.raises(UnmappedAddress):  # not contiguous in user space
        table.read_user(UADDR + 0xFF0, 32)
    table.release()


@pytest.mark.parametrize(
    ("addr", "size"),
    [(GPA - 1, 2), (GPA + 0x8000 - 1, 2), (GPA + 0x8000, 1), (0, 1), (2**64 - 1, 1)],
)
def test_addresses_outside_every_region_raise_unmapped(memfd: int, addr: int, size: int) -> None:
    """Below, past the end of, straddling the end of the only region: UnmappedAddress
    with the address in its message."""
    table = RegionTable([keep_region(GPA, 0x8000, UADDR, 0, memfd)])
    with pytest.raises(UnmappedAddress, match=f"{addr:#x}"):
        table.read(addr, size)
    table.release()


def test_a_truncated_file_raises_truncated_not_sigbus(memfd: int) -> None:
    """After the peer shrinks its memory file, reads past the new end raise
    RegionTruncated naming the file's end; reads before it still work."""
    table = RegionTable([keep_region(GPA, SIZE, UADDR, 0, memfd)])
    os.ftruncate(memfd, 0x1000)
    with pytest.raises(RegionTruncated, match="file is 4096 bytes long, the read needs 4112"):
        table.read(GPA + 0xFF0, 32)
    with pytest.raises(RegionTruncated, match="is 4096 bytes long, the read needs 8194"):
        table.read(GPA + 0x2000, 2)
    assert table.read(GPA + 0xFF0, 16) == expected(0xFF0, 16)
    table.release()


def test_reads_are_bounded(memfd: int) -> None:
    """MAX_READ bytes read; one more (or a negative size) is refused before any I/O."""
    table = RegionTable([keep_region(GPA, SIZE, UADDR, 0, memfd)])
    assert len(table.read(GPA, MAX_READ)) == MAX_READ
    with pytest.raises(ReadTooLarge):
        table.read(GPA, MAX_READ + 1)
    with pytest.raises(ReadTooLarge):
        table.read_user(UADDR, -1)
    with pytest.raises(ReadTooLarge):
        BufferMemory(bytes(10)).read(0, MAX_READ + 1)
    table.release()


def test_a_non_regular_file_is_kept_unreadable() -> None:
    """A pipe (or any non-regular file) as a region is listed with its
    problem, keeps no fd, and reads raise RegionUnreadable."""
    r, w = os.pipe()
    before = open_fds()
    try:
        region = keep_region(GPA, 0x1000, UADDR, 0, r)
        assert region.fd is None and region.problem == "not a regular file"
        table = RegionTable([region])
        assert table.problems == [f"{region.describe()}: not a regular file"]
        with pytest.raises(RegionUnreadable, match="not a regular file"):
            table.read(GPA, 2)
        assert open_fds() == before
    finally:
        os.close(r)
        os.close(w)


def test_out_of_fds_a_region_is_listed_unreadable(memfd: int) -> None:
    """With every fd number up to the soft limit in use (real EMFILE), a
    region is still listed, without an fd and with the reason, so the
    connection lives on and only that region's reads fail."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    fillers: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(open_fds()) + 8, hard))
    try:
        while True:
            try:
                fillers.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as err:
                assert err.errno == errno.EMFILE
                break
        region = keep_region(GPA, SIZE, UADDR, 0, memfd)
    finally:
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert region.fd is None and region.problem is not None
    assert region.problem.startswith("fd not kept: [Errno 24]")
    with pytest.raises(RegionUnreadable, match="fd not kept"):
        RegionTable([region]).read(GPA, 2)


def test_release_closes_each_kept_fd_once_and_later_reads_say_released(memfd: int) -> None:
    """Kept fds are dups: the caller's fd stays open, release() closes the
    dup (once, however often called), and the table then raises MemoryReleased."""
    before = open_fds()
    table = RegionTable([keep_region(GPA, SIZE, UADDR, 0, memfd)])
    assert len(open_fds()) == len(before) + 1
    table.release()
    table.release()
    assert open_fds() == before
    with pytest.raises(MemoryReleased, match="replaced or the connection closed"):
        table.read(GPA, 2)
    os.fstat(memfd)  # the caller's fd is untouched


def test_a_release_during_reads_never_lets_a_reader_use_a_reused_fd_number(memfd: int) -> None:
    """Readers in other threads racing a release either read the right bytes
    or get MemoryReleased; the fd is closed exactly once, after the last read
    (a second close of a reused number would raise EBADF or close another file)."""
    before = open_fds()
    results: list[bytes] = []
    for _ in range(20):
        kept = KeptFd(memfd)
        errors: list[BaseException] = []

        def reader(
            kept: KeptFd = kept,
            errors: list[BaseException] = errors,
            results: list[bytes] = results,
        ) -> None:
            try:
                for _ in range(200):
                    results.append(kept.pread(64, 128))
            except LookupError:
                pass
            except BaseException as err:
                errors.append(err)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        kept.release()
        for t in threads:
            t.join()
        assert not errors, errors
        assert all(r == expected(128, 64) for r in results)
    assert open_fds() == before


@given(
    st.integers(-(2**20), 2**64),
    st.integers(0, MAX_READ),
)
@settings(deadline=None, max_examples=300)
def test_buffer_and_file_memory_agree_on_any_read(addr: int, size: int) -> None:
    """BufferMemory (tests, demo) and RegionTable give the same bytes or the
    same error class for any address and size over the same contents."""
    data = bytes(i % 251 for i in range(0x3000))
    fd = os.memfd_create("gm-prop")
    try:
        os.write(fd, data)
        table = RegionTable([keep_region(GPA, len(data), UADDR, 0, fd)])
        buffer = BufferMemory(data, GPA, UADDR)
        outcomes: list[object] = []
        for memory in (table, buffer):
            try:
                outcomes.append(memory.read(GPA + addr, size))
            except GuestMemoryError as err:
                outcomes.append(type(err))
        assert outcomes[0] == outcomes[1]
        inside = size == 0 or (addr >= 0 and addr + size <= len(data))
        assert isinstance(outcomes[0], bytes) == inside
        table.release()
    finally:
        os.close(fd)


def test_an_unreleased_kept_fd_is_closed_when_collected(memfd: int) -> None:
    """A table dropped without release() does not leak its fds (a backstop)."""
    before = open_fds()
    table = RegionTable([keep_region(GPA, SIZE, UADDR, 0, memfd)])
    assert len(open_fds()) == len(before) + 1
    del table
    assert open_fds() == before
