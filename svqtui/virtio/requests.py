"""What a walked descriptor chain asks the device to do, in words.

``decode_request`` turns a ``chain.Chain`` into one of:

* ``BlkRequest``: the ``virtio_blk_outhdr`` (type, sector) read from the
  chain's first 16 device-readable bytes; data bytes are the chain's total
  minus that header and the 1-byte status the device writes last (any
  descriptor layout, VIRTIO_F_ANY_LAYOUT included). DISCARD / WRITE_ZEROES /
  SECURE_ERASE read their segments for the first sector and the byte count.
* ``NetRequest``: TX (device-readable): the ``virtio_net_hdr`` (10 bytes, 12
  with VIRTIO_F_VERSION_1 or VIRTIO_NET_F_MRG_RXBUF) and the packet length;
  RX (device-writable): the buffer's size (the device has not written the
  header yet); CTRL (readable command, writable ack): class and command.
* ``RawRequest``: every other device, and any chain that did not walk
  cleanly or whose header is unreadable: the descriptors as walked and why.

Every read is a bounded GuestMemory read; nothing here raises on guest data.
Each request has ``to_json()`` (``head``, ``kind``, ``sector``, ``bytes``,
...) and ``describe()``, one line such as "READ sector 2048, 4096 bytes".
"""

from __future__ import annotations

import enum
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from svqtui.virtio.chain import Chain, Descriptor
from svqtui.virtio.guest_memory import MAX_READ, GuestMemory, GuestMemoryError
from svqtui.virtio.split_ring import F_VERSION_1

SECTOR_SIZE = 512
BLK_HEADER = struct.Struct("<IIQ")  # type, ioprio (reserved), sector
BLK_STATUS_SIZE = 1
BLK_SEGMENT = struct.Struct("<QII")  # sector, num_sectors, flags
MAX_SEGMENTS = MAX_READ // BLK_SEGMENT.size

VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_T_DISCARD = 11
VIRTIO_BLK_T_WRITE_ZEROES = 13
VIRTIO_BLK_T_SECURE_ERASE = 14
BLK_TYPES = {
    0: "READ",  # VIRTIO_BLK_T_IN
    1: "WRITE",  # VIRTIO_BLK_T_OUT
    2: "SCSI_CMD",  # legacy
    3: "SCSI_CMD_OUT",  # legacy
    4: "FLUSH",
    5: "FLUSH_OUT",  # legacy
    8: "GET_ID",
    10: "GET_LIFETIME",
    11: "DISCARD",
    13: "WRITE_ZEROES",
    14: "SECURE_ERASE",
    15: "ZONE_APPEND",
    16: "ZONE_REPORT",
    18: "ZONE_OPEN",
    20: "ZONE_CLOSE",
    22: "ZONE_FINISH",
    24: "ZONE_RESET",
    26: "ZONE_RESET_ALL",
}
BLK_SECTOR_TYPES = frozenset({0, 1, 15, 16, 18, 20, 22, 24})  # sector field is meaningful
BLK_SEGMENT_TYPES = frozenset(
    {VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES, VIRTIO_BLK_T_SECURE_ERASE}
)
VIRTIO_BLK_T_BARRIER = 0x8000_0000  # legacy flag on the type

VIRTIO_NET_F_MRG_RXBUF = 15
NET_HEADER = struct.Struct("<BBHHHH")  # flags, gso_type, hdr_len, gso_size, csum_start/offset
NET_NUM_BUFFERS = struct.Struct("<H")
NET_HDR_F_NEEDS_CSUM = 1
NET_HDR_F_DATA_VALID = 2
NET_GSO_TYPES = {0: "NONE", 1: "TCPV4", 3: "UDP", 4: "TCPV6", 5: "UDP_L4"}
NET_GSO_ECN = 0x80
NET_CTRL = struct.Struct("<BB")  # class, command


class DeviceKind(enum.Enum):
    """Which request format a queue carries."""

    BLK = "blk"
    NET = "net"
    OTHER = "other"

    @classmethod
    def from_name(cls, name: str) -> DeviceKind:
        """From a device name or type such as "vhost-user-blk" or "virtio-net-pci"."""
        lowered = name.lower()
        if "blk" in lowered:
            return cls.BLK
        if "net" in lowered:
            return cls.NET
        return cls.OTHER


@dataclass(frozen=True, slots=True)
class RawRequest:
    """A chain decoded as descriptors only (other devices, or a bad chain)."""

    chain: Chain
    error: str | None = None  # why it is not decoded further, with the chain's error

    @property
    def head(self) -> int:
        return self.chain.head

    @property
    def kind(self) -> str:
        return "raw"

    @property
    def sector(self) -> int | None:
        return None

    @property
    def nbytes(self) -> int:
        return self.chain.total_bytes

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "kind": self.kind,
            "sector": None,
            "bytes": self.nbytes,
            "error": self.error,
            "chain": self.chain.to_json(),
        }

    def describe(self) -> str:
        n = len(self.chain.buffers)
        text = f"raw chain of {n} descriptor{'s' if n != 1 else ''}, {self.nbytes} bytes"
        if self.chain.buffers:
            text += ": " + ", ".join(
                f"{d.addr:#x}+{d.len} {d.flag_names()}" for d in self.chain.buffers[:4]
            )
            if n > 4:
                text += ", ..."
        if self.error:
            text += f" ({self.error})"
        return text


@dataclass(frozen=True, slots=True)
class BlkRequest:
    """One virtio-blk request: its type, sector and data length."""

    head: int
    type: int  # VIRTIO_BLK_T_*, the legacy barrier flag removed
    sector: int | None  # in 512-byte units; None where the type has none
    nbytes: int  # data bytes (header and status excluded)
    segments: int | None = None  # DISCARD / WRITE_ZEROES / SECURE_ERASE
    barrier: bool = False  # legacy VIRTIO_BLK_T_BARRIER

    @property
    def kind(self) -> str:
        return BLK_TYPES.get(self.type, f"TYPE_{self.type}")

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "kind": self.kind,
            "sector": self.sector,
            "bytes": self.nbytes,
            "device": "blk",
            "type": self.type,
            "segments": self.segments,
        }

    def describe(self) -> str:
        parts = [self.kind]
        if self.sector is not None:
            parts.append(f"sector {self.sector},")
        parts.append(f"{self.nbytes} bytes")
        if self.segments is not None:
            parts.append(f"in {self.segments} segment{'s' if self.segments != 1 else ''}")
        if self.barrier:
            parts.append("(barrier)")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class NetHeader:
    """``struct virtio_net_hdr`` (num_buffers: with VERSION_1 or MRG_RXBUF)."""

    flags: int
    gso_type: int
    hdr_len: int
    gso_size: int
    csum_start: int
    csum_offset: int
    num_buffers: int | None = None

    @property
    def gso_name(self) -> str:
        name = NET_GSO_TYPES.get(self.gso_type & ~NET_GSO_ECN, f"{self.gso_type:#x}")
        return name + ("|ECN" if self.gso_type & NET_GSO_ECN else "")

    def to_json(self) -> dict[str, Any]:
        return {
            "flags": self.flags,
            "gso_type": self.gso_name,
            "hdr_len": self.hdr_len,
            "gso_size": self.gso_size,
            "csum_start": self.csum_start,
            "csum_offset": self.csum_offset,
            "num_buffers": self.num_buffers,
        }


@dataclass(frozen=True, slots=True)
class NetRequest:
    """One virtio-net buffer: TX (header and packet length), RX or CTRL."""

    head: int
    kind: str  # "TX", "RX", "CTRL"
    nbytes: int  # TX: packet bytes after the header; RX: buffer size; CTRL: command data
    header: NetHeader | None = None  # TX only
    ctrl: tuple[int, int] | None = None  # CTRL: (class, command)

    @property
    def sector(self) -> int | None:
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "kind": self.kind,
            "sector": None,
            "bytes": self.nbytes,
            "device": "net",
            "header": self.header.to_json() if self.header else None,
            "ctrl": list(self.ctrl) if self.ctrl else None,
        }

    def describe(self) -> str:
        if self.kind == "CTRL" and self.ctrl is not None:
            return f"CTRL class {self.ctrl[0]} command {self.ctrl[1]}, {self.nbytes} bytes"
        text = f"{self.kind} {self.nbytes} bytes"
        h = self.header
        if h is not None:
            extras = []
            if h.gso_type:
                extras.append(f"gso {h.gso_name} size {h.gso_size}")
            if h.flags & NET_HDR_F_NEEDS_CSUM:
                extras.append(f"csum at {h.csum_start}+{h.csum_offset}")
            if extras:
                text += " (" + ", ".join(extras) + ")"
        return text


Request = BlkRequest | NetRequest | RawRequest


def read_chain(memory: GuestMemory, buffers: Sequence[Descriptor], offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset`` of the concatenated buffers (each piece a
    bounded guest-physical read); raises GuestMemoryError, or ValueError when
    the buffers end first."""
    out = b""
    pos = 0
    for d in buffers:
        if len(out) == size:
            break
        end = pos + d.len
        if end > offset + len(out):
            start = offset + len(out) - pos
            take = min(size - len(out), d.len - start)
            out += memory.read(d.addr + start, take)
        pos = end
    if len(out) < size:
        raise ValueError(f"the chain ends {size - len(out)} bytes short")
    return out


def decode_request(
    memory: GuestMemory, chain: Chain, device: DeviceKind, features: int = 0
) -> Request:
    """Decode a walked chain for a device kind; never raises."""
    if not chain.ok:
        return RawRequest(chain, f"{chain.error.value if chain.error else ''}: {chain.detail}")
    if not chain.buffers:
        return RawRequest(chain, "empty chain")
    try:
        if device is DeviceKind.BLK:
            return _blk(memory, chain)
        if device is DeviceKind.NET:
            return _net(memory, chain, features)
    except (GuestMemoryError, ValueError) as err:
        return RawRequest(chain, f"{device.value} request not decoded: {err}")
    return RawRequest(chain)


def _readable(chain: Chain) -> list[Descriptor]:
    """The device-readable buffers, which the spec puts before the writable ones."""
    out = []
    for d in chain.buffers:
        if d.write:
            break
        out.append(d)
    return out


def _blk(memory: GuestMemory, chain: Chain) -> Request:
    readable = _readable(chain)
    kind, _, sector = BLK_HEADER.unpack(read_chain(memory, readable, 0, BLK_HEADER.size))
    barrier = bool(kind & VIRTIO_BLK_T_BARRIER)
    kind &= ~VIRTIO_BLK_T_BARRIER
    data = max(chain.total_bytes - BLK_HEADER.size - BLK_STATUS_SIZE, 0)
    if kind in BLK_SEGMENT_TYPES:
        count = data // BLK_SEGMENT.size
        raw = read_chain(
            memory, readable, BLK_HEADER.size, min(count, MAX_SEGMENTS) * BLK_SEGMENT.size
        )
        segments = list(BLK_SEGMENT.iter_unpack(raw))
        first = segments[0][0] if segments else None
        total = sum(n for _, n, _ in segments) * SECTOR_SIZE
        return BlkRequest(chain.head, kind, first, total, count, barrier)
    return BlkRequest(
        chain.head, kind, sector if kind in BLK_SECTOR_TYPES else None, data, None, barrier
    )


def _net(memory: GuestMemory, chain: Chain, features: int) -> Request:
    readable = _readable(chain)
    if not readable:
        return NetRequest(chain.head, "RX", chain.writable_bytes)
    if chain.writable_bytes:  # a command and its ack: the control queue
        klass, command = NET_CTRL.unpack(read_chain(memory, readable, 0, NET_CTRL.size))
        return NetRequest(
            chain.head, "CTRL", chain.readable_bytes - NET_CTRL.size, ctrl=(klass, command)
        )
    long_header = bool(features >> F_VERSION_1 & 1 or features >> VIRTIO_NET_F_MRG_RXBUF & 1)
    size = NET_HEADER.size + (NET_NUM_BUFFERS.size if long_header else 0)
    raw = read_chain(memory, readable, 0, size)
    flags, gso_type, hdr_len, gso_size, csum_start, csum_offset = NET_HEADER.unpack(
        raw[: NET_HEADER.size]
    )
    num_buffers = NET_NUM_BUFFERS.unpack(raw[NET_HEADER.size :])[0] if long_header else None
    header = NetHeader(flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers)
    return NetRequest(chain.head, "TX", chain.readable_bytes - size, header)
