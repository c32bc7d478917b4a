"""Which queues the table shows and in what order: the scope picked in the
device tree, the `/` filter text and the `o` sort mode.

Pure functions over snapshot rows, so they are tested without a screen.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from svqtui.model import QueueRow, Snapshot


class ScopeKind(enum.Enum):
    ALL = "all"
    VM = "vm"
    DEVICE = "device"


@dataclass(frozen=True, slots=True)
class Scope:
    """What the device tree has selected: everything, one VM or one device."""

    kind: ScopeKind = ScopeKind.ALL
    key: str | None = None  # the VM key or device key

    @classmethod
    def all(cls) -> Scope:
        return cls()

    @classmethod
    def vm(cls, key: str) -> Scope:
        return cls(ScopeKind.VM, key)

    @classmethod
    def device(cls, key: str) -> Scope:
        return cls(ScopeKind.DEVICE, key)


class SortMode(enum.Enum):
    """The `o` key cycles these, in this order."""

    NAME = "name"
    KICKS = "kicks/s"
    CALLS = "calls/s"
    IN_FLIGHT = "in-flight"
    STUCK = "stuck first"

    def next(self) -> SortMode:
        modes = list(SortMode)
        return modes[(modes.index(self) + 1) % len(modes)]


def device_vms(snap: Snapshot) -> dict[str, str]:
    """Device key -> VM key, for scoping rows to a VM."""
    return {dev.key: vm.key for vm in snap.vms for dev in vm.devices}


def in_scope(row: QueueRow, scope: Scope, vm_of: dict[str, str]) -> bool:
    if scope.kind is ScopeKind.ALL:
        return True
    if scope.kind is ScopeKind.DEVICE:
        return row.device_key == scope.key
    return vm_of.get(row.device_key) == scope.key


def haystack(row: QueueRow) -> str:
    """The text a filter matches: VM/device #queue, plus state words."""
    words = [f"{row.vm_name}/{row.device_name}", f"#{row.view.index}", f"q{row.view.index}"]
    if row.view.mask is not None:
        words.append(row.view.mask.value)
    if row.stuck:
        words.append("stuck")
    if row.view.shadow:
        words.append("shadow")
    return " ".join(words).lower()


def everything(scope: Scope, text: str) -> bool:
    """Whether ``scope`` and the filter ``text`` let every row through."""
    return scope.kind is ScopeKind.ALL and not text.split()


def matches(row: QueueRow, text: str) -> bool:
    """Every whitespace-separated word of ``text`` occurs in the row's haystack."""
    words = text.lower().split()
    if not words:
        return True
    hay = haystack(row)
    return all(w in hay for w in words)


def ordered(rows: Iterable[QueueRow], mode: SortMode) -> list[str]:
    """Row keys in display order. NAME keeps the snapshot's order (VMs,
    devices, queues as sources report them); the others put the largest
    first and fall back to that order for ties."""
    return ordered_keys({r.key: r for r in rows}, mode)


def ordered_keys(rows: Mapping[str, QueueRow], mode: SortMode) -> list[str]:
    """``ordered`` over rows by key (``Snapshot.rows`` or a part of it, in
    the snapshot's order): the keys are not made again from each row."""
    if mode is SortMode.NAME:
        return list(rows)
    keys = list(rows)  # the sort is stable: ties keep the snapshot's order
    if mode is SortMode.KICKS:
        keys.sort(key=lambda k: -rows[k].kick_rate)
    elif mode is SortMode.CALLS:
        keys.sort(key=lambda k: -rows[k].call_rate)
    elif mode is SortMode.IN_FLIGHT:
        keys.sort(key=lambda k: -(rows[k].view.in_flight or 0))
    else:
        keys.sort(key=lambda k: rows[k].stuck is None)
    return keys
