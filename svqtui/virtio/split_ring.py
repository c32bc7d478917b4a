"""The split virtqueue's layout and its notification suppression state.

A split ring (virtio 1.x, 2.7) is three areas: the descriptor table (16 bytes
per entry), the driver's avail ring (``u16 flags; u16 idx; u16 ring[size];
u16 used_event``) and the device's used ring (``u16 flags; u16 idx;
struct {u32 id; u32 len} ring[size]; u16 avail_event``). The trailing
``used_event`` / ``avail_event`` exist only with VIRTIO_RING_F_EVENT_IDX.
Fields are little-endian (virtio 1.x; legacy devices use the guest's order,
which is little-endian on x86 and arm64 guests).

``read_ring_state`` reads the indices, flags and event indices as a frozen
``RingState``; it never raises: an unreadable field is None and ``error``
says why in one line. A packed ring (VIRTIO_F_RING_PACKED) or ring addresses
that are IOVAs (VIRTIO_F_ACCESS_PLATFORM) are not decoded, and say so.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, replace
from typing import Any

from svqtui.virtio.guest_memory import AddressSpace, GuestMemory, GuestMemoryError, read_in

# Feature bits (virtio 1.x, 6).
F_INDIRECT_DESC = 28
F_EVENT_IDX = 29
F_VERSION_1 = 32
F_ACCESS_PLATFORM = 33
F_RING_PACKED = 34
F_IN_ORDER = 35

VRING_AVAIL_F_NO_INTERRUPT = 1  # the driver asks for no calls (without EVENT_IDX)
VRING_USED_F_NO_NOTIFY = 1  # the device asks for no kicks (without EVENT_IDX)
MAX_QUEUE_SIZE = 32768
DESC_SIZE = 16
USED_ELEM_SIZE = 8

_HEAD = struct.Struct("<HH")  # flags, idx
_U16 = struct.Struct("<H")

PACKED_NOT_DECODED = "packed ring: not decoded"
IOMMU_NOT_DECODED = "ring addresses are IOVAs (VIRTIO_F_ACCESS_PLATFORM): not decoded"


@dataclass(frozen=True, slots=True)
class RingFeatures:
    """The negotiated feature bits that change how a ring is read."""

    event_idx: bool = False
    indirect_desc: bool = False
    packed: bool = False
    access_platform: bool = False
    in_order: bool = False

    @classmethod
    def from_bits(cls, features: int) -> RingFeatures:
        def bit(n: int) -> bool:
            return bool(features >> n & 1)

        return cls(
            event_idx=bit(F_EVENT_IDX),
            indirect_desc=bit(F_INDIRECT_DESC),
            packed=bit(F_RING_PACKED),
            access_platform=bit(F_ACCESS_PLATFORM),
            in_order=bit(F_IN_ORDER),
        )

    @property
    def not_decoded(self) -> str | None:
        """Why rings with these features are not decoded, or None."""
        if self.packed:
            return PACKED_NOT_DECODED
        if self.access_platform:
            return IOMMU_NOT_DECODED
        return None


@dataclass(frozen=True, slots=True)
class SplitRingLayout:
    """Where one split ring's three areas are, in which address space, and its size.

    Descriptor *buffers* and indirect tables are always guest-physical; only
    the three areas are in ``space`` (front-end virtual for vhost-user)."""

    size: int
    desc: int
    avail: int
    used: int
    space: AddressSpace = AddressSpace.FRONTEND_VIRTUAL

    @property
    def size_problem(self) -> str | None:
        if not 0 < self.size <= MAX_QUEUE_SIZE:
            return f"queue size {self.size} is not in 1..{MAX_QUEUE_SIZE}"
        return None

    def avail_entry(self, position: int) -> int:
        """Address of avail.ring[position % size]."""
        return self.avail + 4 + 2 * (position % self.size)

    def used_entry(self, position: int) -> int:
        """Address of used.ring[position % size]."""
        return self.used + 4 + USED_ELEM_SIZE * (position % self.size)

    @property
    def used_event(self) -> int:
        """Address of used_event (after avail.ring[size])."""
        return self.avail + 4 + 2 * self.size

    @property
    def avail_event(self) -> int:
        """Address of avail_event (after used.ring[size])."""
        return self.used + 4 + USED_ELEM_SIZE * self.size

    def read(self, memory: GuestMemory, addr: int, size: int) -> bytes:
        """Read ring memory (in this layout's address space)."""
        return read_in(memory, self.space, addr, size)


@dataclass(frozen=True, slots=True)
class RingState:
    """A split ring's indices and suppression state at one instant (None: not
    applicable or unreadable; ``error`` says which, in one line)."""

    size: int
    event_idx: bool
    indirect_desc: bool
    packed: bool
    avail_flags: int | None = None
    avail_idx: int | None = None
    used_flags: int | None = None
    used_idx: int | None = None
    used_event: int | None = None  # the driver wants a call once used.idx passes it
    avail_event: int | None = None  # the device wants a kick once avail.idx passes it
    error: str | None = None

    @property
    def no_interrupt(self) -> bool | None:
        """The driver's VRING_AVAIL_F_NO_INTERRUPT (ignored by devices with EVENT_IDX)."""
        if self.avail_flags is None:
            return None
        return bool(self.avail_flags & VRING_AVAIL_F_NO_INTERRUPT)

    @property
    def no_notify(self) -> bool | None:
        """The device's VRING_USED_F_NO_NOTIFY (ignored by drivers with EVENT_IDX)."""
        if self.used_flags is None:
            return None
        return bool(self.used_flags & VRING_USED_F_NO_NOTIFY)

    @property
    def in_flight(self) -> int | None:
        """avail.idx - used.idx (mod 2^16): made available and not yet used."""
        if self.avail_idx is None or self.used_idx is None:
            return None
        return (self.avail_idx - self.used_idx) & 0xFFFF

    def to_json(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "avail_flags": self.avail_flags,
            "avail_idx": self.avail_idx,
            "used_flags": self.used_flags,
            "used_idx": self.used_idx,
            "used_event": self.used_event,
            "avail_event": self.avail_event,
            "event_idx": self.event_idx,
            "indirect_desc": self.indirect_desc,
            "packed": self.packed,
            "error": self.error,
        }


def need_event(event: int, new: int, old: int) -> bool:
    """vring_need_event: moving an index from ``old`` to ``new`` passes ``event``."""
    return (new - event - 1) & 0xFFFF < (new - old) & 0xFFFF


def read_ring_state(
    memory: GuestMemory, layout: SplitRingLayout, features: RingFeatures
) -> RingState:
    """Read a ring's flags, indices and (with EVENT_IDX) event indices; never raises."""
    state = RingState(
        size=layout.size,
        event_idx=features.event_idx,
        indirect_desc=features.indirect_desc,
        packed=features.packed,
    )
    why = features.not_decoded or layout.size_problem
    if why is not None:
        return replace(state, error=why)
    errors: list[str] = []

    def field(addr: int, what: str, size: int) -> bytes | None:
        try:
            return layout.read(memory, addr, size)
        except GuestMemoryError as err:
            errors.append(f"{what}: {err}")
            return None

    avail_flags = avail_idx = used_flags = used_idx = used_event = avail_event = None
    raw = field(layout.avail, "avail ring", _HEAD.size)
    if raw is not None:
        avail_flags, avail_idx = _HEAD.unpack(raw)
    raw = field(layout.used, "used ring", _HEAD.size)
    if raw is not None:
        used_flags, used_idx = _HEAD.unpack(raw)
    if features.event_idx:
        raw = field(layout.used_event, "used_event", _U16.size)
        if raw is not None:
            (used_event,) = _U16.unpack(raw)
        raw = field(layout.avail_event, "avail_event", _U16.size)
        if raw is not None:
            (avail_event,) = _U16.unpack(raw)
    return replace(
        state,
        avail_flags=avail_flags,
        avail_idx=avail_idx,
        used_flags=used_flags,
        used_idx=used_idx,
        used_event=used_event,
        avail_event=avail_event,
        error=errors[0] if errors else None,
    )
