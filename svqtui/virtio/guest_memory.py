"""Guest memory reads that cannot fault: ``pread`` on kept fds, never loads
from a peer-controlled mapping.

A vhost-user front-end shares guest memory as file descriptors plus a region
table. Loading from an ``mmap`` of such a file lets the peer kill the reader
with SIGBUS by shrinking the file (``ftruncate``); ``os.pread`` on a kept
duplicate of the fd returns a short read instead, which is reported here as
``RegionTruncated``. Every read is bounded (``MAX_READ`` bytes) and every
failure is a precise ``GuestMemoryError`` subclass.

Two address spaces reach a reader: guest-physical addresses (what the guest
puts in descriptors) and front-end virtual addresses (QEMU's own addresses of
guest memory, which is how SET_VRING_ADDR names the rings). ``GuestMemory``
reads either; ``RegionTable`` implements it over a vhost-user region table and
``BufferMemory`` over bytes (tests, the demo).

Lifetime: a ``RegionTable`` is immutable and may be read from any thread. Its
fds are ``KeptFd`` objects: ``release()`` (the table was replaced or the
connection closed) closes the fd as soon as no read is using it, so a reader
in another thread never reads an fd number that meanwhile names another file;
its later reads raise ``MemoryReleased``.
"""

from __future__ import annotations

import enum
import os
import stat
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from svqtui.errors import SvqtuiError

MAX_READ = 64 * 1024  # bytes per read; larger reads are refused (ReadTooLarge)


class GuestMemoryError(SvqtuiError):
    """A read of guest memory failed; ``str()`` says where and why in one line."""

    def __init__(self, message: str, addr: int, size: int) -> None:
        super().__init__(message)
        self.addr = addr
        self.size = size


class UnmappedAddress(GuestMemoryError):
    """Some byte of the read is in no region of the memory table."""


class RegionTruncated(GuestMemoryError):
    """The region's file ends before the bytes read (the peer shrank or never sized it)."""


class ReadTooLarge(GuestMemoryError):
    """A read of more than MAX_READ bytes (or a negative size) was refused."""


class RegionUnreadable(GuestMemoryError):
    """The region cannot be read: not a regular file, or pread failed."""


class MemoryReleased(GuestMemoryError):
    """The table was replaced or its connection closed while this reader held it."""


class AddressSpace(enum.Enum):
    """Which addresses a read is given in."""

    GUEST_PHYSICAL = "guest-physical"
    FRONTEND_VIRTUAL = "front-end virtual"  # QEMU's user addresses (SET_VRING_ADDR)


class GuestMemory(Protocol):
    """Bounded reads of guest memory that raise GuestMemoryError, never fault.

    A read of 0 bytes returns b"" wherever it is."""

    def read(self, addr: int, size: int) -> bytes:
        """``size`` bytes at guest-physical address ``addr``."""
        ...

    def read_user(self, addr: int, size: int) -> bytes:
        """``size`` bytes at front-end (QEMU) virtual address ``addr``."""
        ...


def read_in(memory: GuestMemory, space: AddressSpace, addr: int, size: int) -> bytes:
    """``memory.read`` or ``memory.read_user``, by address space."""
    if space is AddressSpace.GUEST_PHYSICAL:
        return memory.read(addr, size)
    return memory.read_user(addr, size)


def _check_size(addr: int, size: int, space: AddressSpace) -> None:
    if size < 0 or size > MAX_READ:
        raise ReadTooLarge(
            f"read of {size} bytes at {space.value} {addr:#x} refused (at most {MAX_READ})",
            addr,
            size,
        )


def _unmapped(addr: int, size: int, space: AddressSpace) -> UnmappedAddress:
    return UnmappedAddress(
        f"{space.value} {addr:#x} (+{size} bytes) is outside every memory region", addr, size
    )


class KeptFd:
    """A duplicate of a peer's fd, closed once released and no read uses it."""

    def __init__(self, fd: int) -> None:
        self._released = True  # until the dup exists (see __del__)
        self._fd = os.dup(fd)  # close-on-exec, like every fd Python makes
        self._users = 0
        self._released = False
        self._lock = threading.Lock()

    def __del__(self) -> None:
        # A backstop: a KeptFd nobody released is closed when collected (no
        # read can be in progress on an unreachable object).
        if not self._released:
            self._released = True
            os.close(self._fd)

    def _acquire(self) -> int:
        """The fd, open until the matching _drop(); LookupError once released."""
        with self._lock:
            if self._released:
                raise LookupError("released")
            self._users += 1
            return self._fd

    def _drop(self) -> None:
        with self._lock:
            self._users -= 1
            last = self._released and self._users == 0
        if last:
            os.close(self._fd)

    def pread(self, size: int, offset: int) -> bytes:
        """Up to ``size`` bytes at ``offset`` (fewer at end of file); raises
        ``LookupError`` once released (RegionTable turns it into MemoryReleased)."""
        fd = self._acquire()
        try:
            out = os.pread(fd, size, offset)
            while 0 < len(out) < size:  # regular files return short only at EOF
                chunk = os.pread(fd, size - len(out), offset + len(out))
                if not chunk:
                    break
                out += chunk
            return out
        finally:
            self._drop()

    def fileno(self) -> int:
        """The kept fd (a takeover sends it; LookupError once released)."""
        with self._lock:
            if self._released:
                raise LookupError("released")
            return self._fd

    def file_size(self) -> int:
        """The file's current size (LookupError once released)."""
        fd = self._acquire()
        try:
            return os.fstat(fd).st_size
        finally:
            self._drop()

    def release(self) -> None:
        """Close the fd now, or when the last read in progress ends (idempotent)."""
        with self._lock:
            if self._released:
                return
            self._released = True
            last = self._users == 0
        if last:
            os.close(self._fd)


@dataclass(frozen=True, slots=True)
class Region:
    """One region of guest memory: where it is in both address spaces and in its file."""

    guest_addr: int
    size: int
    user_addr: int
    mmap_offset: int
    fd: KeptFd | None  # None: not readable (``problem`` says why)
    problem: str | None = None

    def offset_of(self, addr: int, space: AddressSpace) -> int | None:
        """Offset of ``addr`` inside this region, or None if outside it."""
        start = self.guest_addr if space is AddressSpace.GUEST_PHYSICAL else self.user_addr
        if start <= addr < start + self.size:
            return addr - start
        return None

    def describe(self) -> str:
        return (
            f"region at guest {self.guest_addr:#x} / user {self.user_addr:#x} "
            f"({self.size} bytes at file offset {self.mmap_offset})"
        )


def keep_region(guest_addr: int, size: int, user_addr: int, mmap_offset: int, fd: int) -> Region:
    """A Region reading from a duplicate of ``fd`` (the caller keeps ``fd``).

    Only regular files (memfd, tmpfs, hugetlbfs, files) are read: pread on a
    device or FIFO could block or have side effects. A file already shorter
    than the region is kept (it may grow) with the problem stated. Out of
    fds (EMFILE), the region is listed unreadable instead of failing."""
    try:
        st = os.fstat(fd)
    except OSError as err:
        return Region(guest_addr, size, user_addr, mmap_offset, None, f"fstat failed: {err}")
    if not stat.S_ISREG(st.st_mode):
        return Region(guest_addr, size, user_addr, mmap_offset, None, "not a regular file")
    problem = None
    end = mmap_offset + size
    if st.st_size < end:
        problem = f"file of {st.st_size} bytes ends before the region ({end})"
    try:
        kept = KeptFd(fd)
    except OSError as err:  # EMFILE: the region stays listed, unreadable
        return Region(guest_addr, size, user_addr, mmap_offset, None, f"fd not kept: {err}")
    return Region(guest_addr, size, user_addr, mmap_offset, kept, problem)


class RegionTable:
    """An immutable table of regions implementing GuestMemory by pread.

    A read may span regions that are contiguous in its address space."""

    __slots__ = ("regions",)

    def __init__(self, regions: Iterable[Region] = ()) -> None:
        self.regions: tuple[Region, ...] = tuple(regions)

    def read(self, addr: int, size: int) -> bytes:
        return self._read(addr, size, AddressSpace.GUEST_PHYSICAL)

    def read_user(self, addr: int, size: int) -> bytes:
        return self._read(addr, size, AddressSpace.FRONTEND_VIRTUAL)

    def _find(self, addr: int, space: AddressSpace) -> tuple[Region, int] | None:
        for region in self.regions:
            offset = region.offset_of(addr, space)
            if offset is not None:
                return region, offset
        return None

    def _read(self, addr: int, size: int, space: AddressSpace) -> bytes:
        _check_size(addr, size, space)
        out = b""
        while len(out) < size:
            at = addr + len(out)
            found = self._find(at, space)
            if found is None:
                raise _unmapped(addr, size, space)
            region, offset = found
            want = min(size - len(out), region.size - offset)
            out += self._pread(region, offset, want, addr, size, space)
        return out

    @staticmethod
    def _pread(
        region: Region, offset: int, want: int, addr: int, size: int, space: AddressSpace
    ) -> bytes:
        where = f"{space.value} {addr:#x} (+{size} bytes)"
        if region.fd is None:
            raise RegionUnreadable(f"{where}: {region.describe()}: {region.problem}", addr, size)
        file_offset = region.mmap_offset + offset
        try:
            data = region.fd.pread(want, file_offset)
        except LookupError:
            raise MemoryReleased(
                f"{where}: the memory table was replaced or the connection closed", addr, size
            ) from None
        except (OSError, OverflowError, ValueError) as err:
            raise RegionUnreadable(f"{where}: {region.describe()}: {err}", addr, size) from None
        if len(data) < want:
            try:
                end = f"is {region.fd.file_size()} bytes long"
            except (LookupError, OSError):
                end = f"ends before byte {file_offset + want}"
            raise RegionTruncated(
                f"{where}: the memory file {end}, the read needs {file_offset + want} "
                f"({region.describe()}; truncated by the peer?)",
                addr,
                size,
            )
        return data

    @property
    def problems(self) -> list[str]:
        """One line per region known to be unreadable or short when it was added."""
        return [f"{r.describe()}: {r.problem}" for r in self.regions if r.problem]

    def release(self) -> None:
        """Release every region's fd (readers still holding this table get MemoryReleased)."""
        for region in self.regions:
            if region.fd is not None:
                region.fd.release()


class BufferMemory:
    """GuestMemory over a bytes-like buffer at ``guest_base`` (and ``user_base``).

    For tests and the demo: the same errors as RegionTable, without files."""

    def __init__(self, data: bytes | bytearray, guest_base: int = 0, user_base: int = 0) -> None:
        self.data = data
        self.guest_base = guest_base
        self.user_base = user_base

    def read(self, addr: int, size: int) -> bytes:
        return self._read(addr - self.guest_base, addr, size, AddressSpace.GUEST_PHYSICAL)

    def read_user(self, addr: int, size: int) -> bytes:
        return self._read(addr - self.user_base, addr, size, AddressSpace.FRONTEND_VIRTUAL)

    def _read(self, offset: int, addr: int, size: int, space: AddressSpace) -> bytes:
        _check_size(addr, size, space)
        if size == 0:
            return b""
        if offset < 0 or offset + size > len(self.data):
            raise _unmapped(addr, size, space)
        return bytes(self.data[offset : offset + size])
