"""The descriptor chain walker: a split ring's chain from its head, with bounds.

A chain starts at a head index of the ring's descriptor table and follows
``next`` while VIRTQ_DESC_F_NEXT is set; a descriptor with
VIRTQ_DESC_F_INDIRECT points to an indirect table (guest-physical, ``len``
bytes, 16 per entry) whose own chain starts at its entry 0 (virtio 1.x,
2.7.5). The guest writes all of it, so nothing is trusted:

* each descriptor is one bounded read of 16 bytes; a read that fails ends
  the walk (``DESC_UNREADABLE`` / ``INDIRECT_UNREADABLE``);
* an index revisited is a ``LOOP``; a ``next`` (or head) outside its table is
  ``NEXT_OUT_OF_RANGE`` / ``HEAD_OUT_OF_RANGE``;
* an indirect table of 0 bytes or not a multiple of 16 is
  ``INDIRECT_BAD_SIZE``, one inside an indirect table is ``NESTED_INDIRECT``,
  one without VIRTIO_F_INDIRECT_DESC is ``INDIRECT_NOT_NEGOTIATED``, one with
  NEXT also set is ``INDIRECT_WITH_NEXT`` (the spec forbids both);
* more buffers in the chain than the queue size (entries of an indirect
  table included, as the spec bounds a chain by the queue size) is
  ``TOO_LONG``; buffers adding up to more than ``max_bytes`` is
  ``TOO_MANY_BYTES``.

A chain has at most one indirect descriptor (in the ring's table: a nested
one is an error, and the walk ends after the indirect table), so a walk
reads at most ``size + 1`` descriptors and terminates whatever the memory
holds. ``walk_chain`` never raises; the outcome is ``Chain.error``
(None: a well-formed chain), with ``Chain.detail`` saying it in one line.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any

from svqtui.virtio.guest_memory import GuestMemory, GuestMemoryError
from svqtui.virtio.split_ring import DESC_SIZE, SplitRingLayout

VIRTQ_DESC_F_NEXT = 1
VIRTQ_DESC_F_WRITE = 2
VIRTQ_DESC_F_INDIRECT = 4
MAX_CHAIN_BYTES = 1 << 32  # default cap on a chain's total buffer length

_DESC = struct.Struct("<QIHH")  # addr, len, flags, next


class ChainError(enum.Enum):
    """Why a walk stopped before a well-formed end."""

    HEAD_OUT_OF_RANGE = "head out of range"
    NEXT_OUT_OF_RANGE = "next out of range"
    LOOP = "loop"
    TOO_LONG = "longer than the queue size"
    TOO_MANY_BYTES = "total length over the cap"
    DESC_UNREADABLE = "descriptor table unreadable"
    INDIRECT_UNREADABLE = "indirect table unreadable"
    INDIRECT_BAD_SIZE = "indirect table size not a non-zero multiple of 16"
    NESTED_INDIRECT = "nested indirect table"
    INDIRECT_NOT_NEGOTIATED = "indirect descriptor without VIRTIO_F_INDIRECT_DESC"
    INDIRECT_WITH_NEXT = "indirect descriptor with NEXT set"
    NOT_DECODED = "ring not decoded"


@dataclass(frozen=True, slots=True)
class Descriptor:
    """One buffer descriptor (``struct virtq_desc``) and where it was read."""

    index: int  # in its table
    addr: int  # guest-physical
    len: int
    flags: int
    next: int
    table: int | None = None  # guest-physical address of its indirect table; None: the ring's

    @property
    def has_next(self) -> bool:
        return bool(self.flags & VIRTQ_DESC_F_NEXT)

    @property
    def write(self) -> bool:
        """Device-writable (the device fills it)."""
        return bool(self.flags & VIRTQ_DESC_F_WRITE)

    @property
    def indirect(self) -> bool:
        return bool(self.flags & VIRTQ_DESC_F_INDIRECT)

    def flag_names(self) -> str:
        names = [
            name
            for bit, name in (
                (VIRTQ_DESC_F_NEXT, "NEXT"),
                (VIRTQ_DESC_F_WRITE, "WRITE"),
                (VIRTQ_DESC_F_INDIRECT, "INDIRECT"),
            )
            if self.flags & bit
        ]
        other = self.flags & ~(VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_INDIRECT)
        if other:
            names.append(f"{other:#x}")
        return "|".join(names) or "-"

    def to_json(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "addr": self.addr,
            "len": self.len,
            "flags": self.flag_names(),
            "next": self.next,
            "indirect_table": self.table,
        }


@dataclass(frozen=True, slots=True)
class Chain:
    """A walked chain: its buffers in order, the indirect descriptors that
    were followed, and how the walk ended."""

    head: int
    buffers: tuple[Descriptor, ...]
    indirect: tuple[Descriptor, ...] = ()  # descriptors pointing to indirect tables
    error: ChainError | None = None
    detail: str | None = None  # the error in one line, with the numbers

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def total_bytes(self) -> int:
        return sum(d.len for d in self.buffers)

    @property
    def readable_bytes(self) -> int:
        return sum(d.len for d in self.buffers if not d.write)

    @property
    def writable_bytes(self) -> int:
        return sum(d.len for d in self.buffers if d.write)

    def to_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "descriptors": [d.to_json() for d in self.buffers],
            "indirect": [d.to_json() for d in self.indirect],
            "error": self.error.name.lower() if self.error else None,
            "detail": self.detail,
        }


class _Walk:
    """The state of one walk; every step is counted against the bounds."""

    def __init__(
        self, memory: GuestMemory, layout: SplitRingLayout, indirect_ok: bool, max_bytes: int
    ) -> None:
        self.memory = memory
        self.layout = layout
        self.indirect_ok = indirect_ok
        self.max_bytes = max_bytes
        self.buffers: list[Descriptor] = []
        self.indirect: list[Descriptor] = []
        self.reads = 0  # at most size buffers + the one indirect descriptor
        self.total = 0

    def read(self, table: int | None, index: int) -> Descriptor:
        if table is None:
            raw = self.layout.read(self.memory, self.layout.desc + DESC_SIZE * index, DESC_SIZE)
        else:
            raw = self.memory.read(table + DESC_SIZE * index, DESC_SIZE)
        addr, length, flags, nxt = _DESC.unpack(raw)
        return Descriptor(index, addr, length, flags, nxt, table)

    def table(self, table: int | None, entries: int, start: int) -> tuple[ChainError, str] | None:
        """Walk one table (the ring's or an indirect one) from ``start``."""
        seen: set[int] = set()
        index = start
        where = "descriptor table" if table is None else f"indirect table at {table:#x}"
        while True:
            if index >= entries:
                return ChainError.NEXT_OUT_OF_RANGE, (
                    f"next {index} >= {entries} entries of the {where}"
                )
            if index in seen:
                return ChainError.LOOP, f"descriptor {index} of the {where} visited twice"
            seen.add(index)
            if len(self.buffers) >= self.layout.size:
                return ChainError.TOO_LONG, (
                    f"more than {self.layout.size} buffers (the queue size)"
                )
            self.reads += 1
            try:
                desc = self.read(table, index)
            except GuestMemoryError as err:
                kind = (
                    ChainError.DESC_UNREADABLE if table is None else ChainError.INDIRECT_UNREADABLE
                )
                return kind, f"descriptor {index} of the {where}: {err}"
            if desc.indirect:
                if table is not None:
                    return ChainError.NESTED_INDIRECT, (
                        f"descriptor {index} of the {where} points to another indirect table"
                    )
                self.indirect.append(desc)
                problem = self.follow(desc)
                if problem is not None:
                    return problem
                if desc.has_next:
                    return ChainError.INDIRECT_WITH_NEXT, (
                        f"descriptor {index} has both INDIRECT and NEXT (next {desc.next})"
                    )
                return None
            self.buffers.append(desc)
            self.total += desc.len
            if self.total > self.max_bytes:
                return ChainError.TOO_MANY_BYTES, (
                    f"buffers add up to {self.total} bytes, over the cap of {self.max_bytes}"
                )
            if not desc.has_next:
                return None
            index = desc.next

    def follow(self, desc: Descriptor) -> tuple[ChainError, str] | None:
        if not self.indirect_ok:
            return ChainError.INDIRECT_NOT_NEGOTIATED, (
                f"descriptor {desc.index} is INDIRECT but VIRTIO_F_INDIRECT_DESC is not negotiated"
            )
        if desc.len == 0 or desc.len % DESC_SIZE:
            return ChainError.INDIRECT_BAD_SIZE, (
                f"descriptor {desc.index}: indirect table of {desc.len} bytes "
                f"(not a non-zero multiple of {DESC_SIZE})"
            )
        return self.table(desc.addr, desc.len // DESC_SIZE, 0)


def walk_chain(
    memory: GuestMemory,
    layout: SplitRingLayout,
    head: int,
    *,
    indirect_ok: bool = True,
    max_bytes: int = MAX_CHAIN_BYTES,
) -> Chain:
    """Walk the chain at ``head``; never raises, never reads more than
    ``layout.size + 1`` descriptors (``indirect_ok``: VIRTIO_F_INDIRECT_DESC
    was negotiated)."""
    problem = layout.size_problem
    if problem is not None:
        return Chain(head, (), (), ChainError.NOT_DECODED, problem)
    if not 0 <= head < layout.size:
        return Chain(
            head, (), (), ChainError.HEAD_OUT_OF_RANGE, f"head {head} >= queue size {layout.size}"
        )
    walk = _Walk(memory, layout, indirect_ok, max_bytes)
    outcome = walk.table(None, layout.size, head)
    error, detail = outcome if outcome is not None else (None, None)
    return Chain(head, tuple(walk.buffers), tuple(walk.indirect), error, detail)
