"""Write and read "newc" (070701) cpio archives, the format Linux unpacks as an initramfs.

Written here so that building the guest image needs no cpio tool. Archives are
deterministic: inode numbers count up from 1, every mtime is 0, owners are root.
The writer can add device nodes (e.g. /dev/console) without privileges, which a
tool archiving a real directory could not.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

MAGIC = b"070701"
TRAILER = "TRAILER!!!"
_HEADER_LEN = 110  # 6 bytes of magic + 13 fields of 8 hex digits


@dataclass(frozen=True, slots=True)
class CpioEntry:
    """One archive member: ``name`` has no leading slash, ``mode`` has the type bits."""

    name: str
    mode: int
    data: bytes = b""
    rdev_major: int = 0
    rdev_minor: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)


def _pad4(n: int) -> int:
    return (4 - n % 4) % 4


class CpioWriter:
    """Accumulates entries and returns the archive bytes from ``finish()``."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._ino = 0
        self._names: set[str] = set()
        self._finished = False

    def add_dir(self, name: str, mode: int = 0o755) -> None:
        self._add(CpioEntry(name, stat.S_IFDIR | mode))

    def add_file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._add(CpioEntry(name, stat.S_IFREG | mode, data))

    def add_symlink(self, name: str, target: str) -> None:
        self._add(CpioEntry(name, stat.S_IFLNK | 0o777, target.encode()))

    def add_chardev(self, name: str, major: int, minor: int, mode: int = 0o600) -> None:
        self._add(CpioEntry(name, stat.S_IFCHR | mode, b"", major, minor))

    def finish(self) -> bytes:
        """Append the trailer and return the whole archive."""
        if not self._finished:
            self._write(CpioEntry(TRAILER, 0), ino=0)
            self._finished = True
        return bytes(self._buf)

    def _add(self, entry: CpioEntry) -> None:
        if self._finished:
            raise ValueError("cpio archive already finished")
        name = entry.name.lstrip("/")
        if not name or name == TRAILER or name in self._names:
            raise ValueError(f"bad or duplicate cpio member name {entry.name!r}")
        self._names.add(name)
        self._ino += 1
        self._write(
            CpioEntry(name, entry.mode, entry.data, entry.rdev_major, entry.rdev_minor),
            ino=self._ino,
        )

    def _write(self, entry: CpioEntry, ino: int) -> None:
        name = entry.name.encode() + b"\0"
        nlink = 2 if entry.is_dir else 1
        fields = (
            ino,
            entry.mode,
            0,  # uid
            0,  # gid
            nlink,
            0,  # mtime
            len(entry.data),
            0,  # devmajor
            0,  # devminor
            entry.rdev_major,
            entry.rdev_minor,
            len(name),
            0,  # check (only for the 070702 "crc" format)
        )
        header = MAGIC + b"".join(b"%08X" % f for f in fields)
        self._buf += header + name + b"\0" * _pad4(_HEADER_LEN + len(name))
        self._buf += entry.data + b"\0" * _pad4(len(entry.data))


def read_cpio(data: bytes) -> list[CpioEntry]:
    """Parse a newc archive (up to its trailer); raises ``ValueError`` if malformed."""
    entries: list[CpioEntry] = []
    pos = 0
    while True:
        header = data[pos : pos + _HEADER_LEN]
        if len(header) < _HEADER_LEN or header[:6] != MAGIC:
            raise ValueError(f"no newc cpio header at offset {pos}")
        fields = [int(header[6 + 8 * i : 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = (
            fields[1],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        pos += _HEADER_LEN
        raw_name = data[pos : pos + namesize]
        if len(raw_name) != namesize or not raw_name.endswith(b"\0"):
            raise ValueError(f"truncated cpio member name at offset {pos}")
        name = raw_name[:-1].decode()
        pos += namesize + _pad4(_HEADER_LEN + namesize)
        if name == TRAILER:
            return entries
        body = data[pos : pos + filesize]
        if len(body) != filesize:
            raise ValueError(f"truncated cpio member {name!r}")
        pos += filesize + _pad4(filesize)
        entries.append(CpioEntry(name, mode, body, rmaj, rmin))
