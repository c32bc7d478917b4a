"""The vhost-user wire format: message framing, request names, payload layouts.

Pure data, no I/O: the interposer, the test front-end and the benchmarks all
frame messages with this module. A message is a 12-byte header (u32 request,
u32 flags, u32 payload size, machine byte order), a payload, and up to 8 file
descriptors passed as SCM_RIGHTS ancillary data (QEMU's
docs/interop/vhost-user.rst). Every violation raises a subclass of
``svqtui.errors.ProtocolError`` and nothing else.

Bounds. The largest payload the spec defines is CREATE_CRYPTO_SESSION's
``VhostUserCryptoSession`` (u64 op code + an asymmetric session: 32-byte info
+ 1024-byte key + i64 session id = 1072 bytes); next come GET/SET_CONFIG (12 +
256-byte config space = 268), SET_MEM_TABLE (8 + 8 regions x 32 = 264) and
SET_INFLIGHT_FD (20). ``MAX_PAYLOAD`` (4096) covers all of them with room for
growth; anything larger is an attack or a framing error.
"""

from __future__ import annotations

import contextlib
import enum
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from svqtui.sources.vhost_user.errors import (
    BadHeader,
    BadPayload,
    MessageTooLarge,
    TooManyFds,
    TruncatedMessage,
)

HEADER = struct.Struct("=III")
HEADER_SIZE = HEADER.size  # 12
MAX_FDS = 8  # VHOST_MEMORY_BASELINE_NREGIONS / VHOST_USER_BACKEND_MAX_FDS
MAX_REGIONS = 8

# Sizes of the spec's payload layouts (see the module docstring).
CRYPTO_SESSION_SIZE = 8 + 32 + 1024 + 8
CONFIG_HEADER_SIZE = 12
MAX_CONFIG_SPACE = 256
MEMORY_REGION_SIZE = 32
MEMORY_TABLE_SIZE = 8 + MAX_REGIONS * MEMORY_REGION_SIZE
LARGEST_SPEC_PAYLOAD = max(
    CRYPTO_SESSION_SIZE, CONFIG_HEADER_SIZE + MAX_CONFIG_SPACE, MEMORY_TABLE_SIZE
)
MAX_PAYLOAD = 4096
assert LARGEST_SPEC_PAYLOAD <= MAX_PAYLOAD

# Header flags.
VERSION = 0x1
VERSION_MASK = 0x3
REPLY = 0x1 << 2
NEED_REPLY = 0x1 << 3
KNOWN_FLAGS = VERSION_MASK | REPLY | NEED_REPLY

# SET_VRING_KICK / SET_VRING_CALL / SET_VRING_ERR u64 payload.
VRING_IDX_MASK = 0xFF
VRING_NOFD = 0x1 << 8

# Virtio / vhost-user feature bits the interposer looks at.
F_PROTOCOL_FEATURES = 30  # VHOST_USER_F_PROTOCOL_FEATURES
F_VERSION_1 = 32
F_ACCESS_PLATFORM = 33  # VIRTIO_F_IOMMU_PLATFORM: ring addresses are IOVAs
F_RING_PACKED = 34


class FrontendRequest(enum.IntEnum):
    """Requests the front-end (QEMU) sends on the main socket."""

    NONE = 0
    GET_FEATURES = 1
    SET_FEATURES = 2
    SET_OWNER = 3
    RESET_OWNER = 4
    SET_MEM_TABLE = 5
    SET_LOG_BASE = 6
    SET_LOG_FD = 7
    SET_VRING_NUM = 8
    SET_VRING_ADDR = 9
    SET_VRING_BASE = 10
    GET_VRING_BASE = 11
    SET_VRING_KICK = 12
    SET_VRING_CALL = 13
    SET_VRING_ERR = 14
    GET_PROTOCOL_FEATURES = 15
    SET_PROTOCOL_FEATURES = 16
    GET_QUEUE_NUM = 17
    SET_VRING_ENABLE = 18
    SEND_RARP = 19
    NET_SET_MTU = 20
    SET_BACKEND_REQ_FD = 21  # formerly SET_SLAVE_REQ_FD
    IOTLB_MSG = 22
    SET_VRING_ENDIAN = 23
    GET_CONFIG = 24
    SET_CONFIG = 25
    CREATE_CRYPTO_SESSION = 26
    CLOSE_CRYPTO_SESSION = 27
    POSTCOPY_ADVISE = 28
    POSTCOPY_LISTEN = 29
    POSTCOPY_END = 30
    GET_INFLIGHT_FD = 31
    SET_INFLIGHT_FD = 32
    GPU_SET_SOCKET = 33
    RESET_DEVICE = 34
    VRING_KICK = 35
    GET_MAX_MEM_SLOTS = 36
    ADD_MEM_REG = 37
    REM_MEM_REG = 38
    SET_STATUS = 39
    GET_STATUS = 40
    GET_SHARED_OBJECT = 41
    SET_DEVICE_STATE_FD = 42
    CHECK_DEVICE_STATE = 43


class BackendRequest(enum.IntEnum):
    """Requests the back-end sends on the back-end channel (SET_BACKEND_REQ_FD)."""

    NONE = 0
    IOTLB_MSG = 1
    CONFIG_CHANGE_MSG = 2
    VRING_HOST_NOTIFIER_MSG = 3
    VRING_CALL = 4
    VRING_ERR = 5
    SHARED_OBJECT_ADD = 6
    SHARED_OBJECT_REMOVE = 7
    SHARED_OBJECT_LOOKUP = 8
    SHMEM_MAP = 9
    SHMEM_UNMAP = 10


class ProtocolFeature(enum.IntEnum):
    """Protocol feature bits (GET/SET_PROTOCOL_FEATURES)."""

    MQ = 0
    LOG_SHMFD = 1
    RARP = 2
    REPLY_ACK = 3
    NET_MTU = 4
    BACKEND_REQ = 5
    CROSS_ENDIAN = 6
    CRYPTO_SESSION = 7
    PAGEFAULT = 8
    CONFIG = 9
    BACKEND_SEND_FD = 10
    HOST_NOTIFIER = 11
    INFLIGHT_SHMFD = 12
    RESET_DEVICE = 13
    INBAND_NOTIFICATIONS = 14
    CONFIGURE_MEM_SLOTS = 15
    STATUS = 16
    XEN_MMAP = 17
    SHARED_OBJECT = 18
    DEVICE_STATE = 19
    SHMEM = 20


# Requests whose reply the back-end always sends (the spec's "Communication"
# list plus every request documented with a reply payload).
ALWAYS_REPLIED = frozenset(
    {
        FrontendRequest.GET_FEATURES,
        FrontendRequest.GET_PROTOCOL_FEATURES,
        FrontendRequest.GET_VRING_BASE,
        FrontendRequest.GET_QUEUE_NUM,
        FrontendRequest.IOTLB_MSG,
        FrontendRequest.GET_CONFIG,
        FrontendRequest.CREATE_CRYPTO_SESSION,
        FrontendRequest.POSTCOPY_ADVISE,
        FrontendRequest.POSTCOPY_END,
        FrontendRequest.GET_INFLIGHT_FD,
        FrontendRequest.GET_MAX_MEM_SLOTS,
        FrontendRequest.GET_STATUS,
        FrontendRequest.GET_SHARED_OBJECT,
        FrontendRequest.SET_DEVICE_STATE_FD,
        FrontendRequest.CHECK_DEVICE_STATE,
    }
)


def request_name(request: int, backend_channel: bool = False) -> str:
    """A request's spec name for logs, e.g. ``SET_VRING_KICK`` or ``UNKNOWN(99)``."""
    table: type[enum.IntEnum] = BackendRequest if backend_channel else FrontendRequest
    try:
        return table(request).name
    except ValueError:
        return f"UNKNOWN({request})"


def feature_names(bits: int, table: type[enum.IntEnum] = ProtocolFeature) -> list[str]:
    """The names of the bits set in ``bits`` (unknown bits as ``bit N``)."""
    names = []
    for bit in range(64):
        if bits >> bit & 1:
            try:
                names.append(table(bit).name)
            except ValueError:
                names.append(f"bit {bit}")
    return names


# -- messages ------------------------------------------------------------------


def close_fds(fds: Iterable[int]) -> None:
    """Close fds, ignoring ones already closed."""
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass(slots=True)
class Message:
    """One vhost-user message. ``fds`` are owned by whoever holds the message."""

    request: int
    flags: int = VERSION
    payload: bytes = b""
    fds: list[int] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return bool(self.flags & REPLY)

    @property
    def need_reply(self) -> bool:
        return bool(self.flags & NEED_REPLY)

    @property
    def size(self) -> int:
        return len(self.payload)

    def name(self, backend_channel: bool = False) -> str:
        return request_name(self.request, backend_channel)

    def header(self) -> bytes:
        return HEADER.pack(self.request, self.flags, len(self.payload))

    def encode(self) -> bytes:
        """Header and payload, ready to send (the fds go as ancillary data)."""
        if len(self.payload) > MAX_PAYLOAD:
            raise MessageTooLarge(
                f"{self.name()}: payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD}"
            )
        if len(self.fds) > MAX_FDS:
            raise TooManyFds(f"{self.name()}: {len(self.fds)} fds exceed {MAX_FDS}")
        return self.header() + self.payload

    def close(self) -> None:
        """Close the fds this message holds."""
        close_fds(self.fds)
        self.fds = []

    def reply(self, payload: bytes) -> Message:
        """A reply to this request carrying ``payload``."""
        return Message(self.request, VERSION | REPLY, payload)


def parse_header(data: bytes) -> tuple[int, int, int]:
    """Validate a 12-byte header; return (request, flags, size)."""
    if len(data) != HEADER_SIZE:
        raise TruncatedMessage(f"header of {len(data)} bytes, expected {HEADER_SIZE}")
    request, flags, size = HEADER.unpack(data)
    if flags & VERSION_MASK != VERSION:
        raise BadHeader(
            f"{request_name(request)}: protocol version {flags & VERSION_MASK}, expected {VERSION}"
        )
    if flags & ~KNOWN_FLAGS:
        raise BadHeader(f"{request_name(request)}: unknown flag bits {flags & ~KNOWN_FLAGS:#x}")
    if request == 0:
        raise BadHeader("request 0 (VHOST_USER_NONE) is not a request")
    if size > MAX_PAYLOAD:
        raise MessageTooLarge(
            f"{request_name(request)}: payload of {size} bytes exceeds the {MAX_PAYLOAD}-byte bound"
        )
    return request, flags, size


class Decoder:
    """Reassembles messages from a byte stream and the fds that came with it.

    ``need`` is how many bytes complete the current part (header or payload):
    a reader that asks for exactly that many bytes never mixes two messages in
    one read, so the fds of a read belong to the message being assembled.
    Fds fed in are owned by the decoder until a message carrying them is
    returned; ``close()`` (and any error) closes the ones it still holds.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._header: tuple[int, int, int] | None = None
        self._fds: list[int] = []

    @property
    def need(self) -> int:
        if self._header is None:
            return HEADER_SIZE - len(self._buf)
        return self._header[2] - len(self._buf)

    @property
    def partial(self) -> bool:
        """True while a message has started but is not complete."""
        return self._header is not None or bool(self._buf) or bool(self._fds)

    def feed(self, data: bytes, fds: Sequence[int] = ()) -> list[Message]:
        """Take bytes (and fds); return the messages they complete."""
        self._fds.extend(fds)
        try:
            if len(self._fds) > MAX_FDS:
                raise TooManyFds(f"{len(self._fds)} fds for one message (at most {MAX_FDS})")
            out: list[Message] = []
            view = memoryview(data)
            while True:
                if self._header is None:
                    take = min(HEADER_SIZE - len(self._buf), len(view))
                    self._buf += view[:take]
                    view = view[take:]
                    if len(self._buf) < HEADER_SIZE:
                        break
                    self._header = parse_header(bytes(self._buf))
                    self._buf.clear()
                request, flags, size = self._header
                take = min(size - len(self._buf), len(view))
                self._buf += view[:take]
                view = view[take:]
                if len(self._buf) < size:
                    break
                out.append(Message(request, flags, bytes(self._buf), self._fds))
                self._header = None
                self._buf = bytearray()
                self._fds = []
                if not view:
                    break
            return out
        except Exception:
            self.close()
            raise

    def state(self) -> tuple[tuple[int, int, int] | None, bytes, list[int]]:
        """(the header read so far or None, the bytes of the part being read,
        the fds received for the message so far): a takeover carries them
        (the decoder keeps owning the fds)."""
        return self._header, bytes(self._buf), list(self._fds)

    def restore(self, header: tuple[int, int, int] | None, buf: bytes, fds: list[int]) -> None:
        """Continue a message another decoder started (``state()``); takes the fds."""
        self.close()
        self._header, self._buf, self._fds = header, bytearray(buf), list(fds)

    def eof(self) -> None:
        """The stream ended: raise TruncatedMessage if a message was cut short."""
        if self.partial:
            what = request_name(self._header[0]) if self._header else "a header"
            got = len(self._buf)
            self.close()
            raise TruncatedMessage(f"connection closed in the middle of {what} ({got} bytes read)")

    def close(self) -> None:
        close_fds(self._fds)
        self._fds = []
        self._buf = bytearray()
        self._header = None


# -- payload layouts -------------------------------------------------------------

_U64 = struct.Struct("=Q")
_STATE = struct.Struct("=II")
_ADDR = struct.Struct("=IIQQQQ")
_REGION = struct.Struct("=QQQQ")
_TABLE_HEAD = struct.Struct("=II")


def _need_size(what: str, payload: bytes, size: int) -> None:
    if len(payload) != size:
        raise BadPayload(f"{what}: payload of {len(payload)} bytes, expected {size}")


def pack_u64(value: int) -> bytes:
    return _U64.pack(value)


def unpack_u64(payload: bytes, what: str = "u64 payload") -> int:
    _need_size(what, payload, _U64.size)
    value: int = _U64.unpack(payload)[0]
    return value


def pack_vring_file(index: int, nofd: bool) -> bytes:
    """SET_VRING_KICK/CALL/ERR payload: bits 0-7 ring index, bit 8 NOFD."""
    if not 0 <= index <= VRING_IDX_MASK:
        raise BadPayload(f"vring index {index} does not fit in 8 bits")
    return pack_u64(index | (VRING_NOFD if nofd else 0))


def unpack_vring_file(payload: bytes) -> tuple[int, bool]:
    """(ring index, NOFD) of a SET_VRING_KICK/CALL/ERR payload."""
    value = unpack_u64(payload, "vring file")
    return value & VRING_IDX_MASK, bool(value & VRING_NOFD)


@dataclass(frozen=True, slots=True)
class VringState:
    """``struct vhost_vring_state``: SET_VRING_NUM/BASE/ENABLE, GET_VRING_BASE."""

    index: int
    num: int

    def pack(self) -> bytes:
        return _STATE.pack(self.index, self.num)

    @classmethod
    def unpack(cls, payload: bytes) -> VringState:
        _need_size("vring state", payload, _STATE.size)
        return cls(*_STATE.unpack(payload))


@dataclass(frozen=True, slots=True)
class VringAddr:
    """``struct vhost_vring_addr`` (SET_VRING_ADDR): front-end user addresses."""

    index: int
    flags: int
    desc: int
    used: int
    avail: int
    log: int

    def pack(self) -> bytes:
        return _ADDR.pack(self.index, self.flags, self.desc, self.used, self.avail, self.log)

    @classmethod
    def unpack(cls, payload: bytes) -> VringAddr:
        _need_size("vring address", payload, _ADDR.size)
        return cls(*_ADDR.unpack(payload))


@dataclass(frozen=True, slots=True)
class MemoryRegion:
    """``VhostUserMemoryRegion``: where a region of guest memory lives."""

    guest_addr: int
    size: int
    user_addr: int
    mmap_offset: int

    def pack(self) -> bytes:
        return _REGION.pack(self.guest_addr, self.size, self.user_addr, self.mmap_offset)

    @classmethod
    def unpack(cls, data: bytes) -> MemoryRegion:
        return cls(*_REGION.unpack(data))


def pack_memory_table(regions: Sequence[MemoryRegion]) -> bytes:
    """SET_MEM_TABLE payload: u32 count, u32 padding, then the regions."""
    if len(regions) > MAX_REGIONS:
        raise BadPayload(f"{len(regions)} memory regions (at most {MAX_REGIONS})")
    return _TABLE_HEAD.pack(len(regions), 0) + b"".join(r.pack() for r in regions)


def unpack_memory_table(payload: bytes) -> list[MemoryRegion]:
    """Parse a SET_MEM_TABLE payload (trailing unused region slots are allowed)."""
    if len(payload) < _TABLE_HEAD.size:
        raise BadPayload(f"memory table: payload of {len(payload)} bytes is too short")
    count, _ = _TABLE_HEAD.unpack_from(payload)
    if count > MAX_REGIONS:
        raise BadPayload(f"memory table: {count} regions (at most {MAX_REGIONS})")
    end = _TABLE_HEAD.size + count * MEMORY_REGION_SIZE
    if len(payload) < end:
        raise BadPayload(
            f"memory table: {count} regions need {end} bytes, the payload has {len(payload)}"
        )
    return [
        MemoryRegion.unpack(payload[off : off + MEMORY_REGION_SIZE])
        for off in range(_TABLE_HEAD.size, end, MEMORY_REGION_SIZE)
    ]


def pack_mem_reg(region: MemoryRegion) -> bytes:
    """ADD_MEM_REG / REM_MEM_REG payload: u64 padding, then one region."""
    return _U64.pack(0) + region.pack()


def unpack_mem_reg(payload: bytes) -> MemoryRegion:
    _need_size("single memory region", payload, _U64.size + MEMORY_REGION_SIZE)
    return MemoryRegion.unpack(payload[_U64.size :])
