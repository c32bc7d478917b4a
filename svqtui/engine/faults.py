"""Operator-armed faults on one link of a shadowed queue: what they are
called, what they mean, and how they read (the C side is fault.c).

``drop-kick N``/``drop-call N`` swallow the next N notifications (counted as
dropped, never silently lost), ``delay-call MS`` makes every call wait MS ms
until cleared, ``dup-call N`` writes the next N calls twice. A fault lives in
the engine's link: it disarms after N, on ``clear``, on shadow off (the queue
leaves the engine) and with the process (docs/design.md#relay-rules).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from svqtui.engine._relay import lib
from svqtui.engine.engine import Link, LinkCounters, QueueCounters
from svqtui.engine.errors import BadFault

MAX_COUNT = 1_000_000
MAX_DELAY_MS = 60_000


class FaultKind(enum.IntEnum):
    NONE = lib.SVQ_FAULT_NONE
    DROP = lib.SVQ_FAULT_DROP
    DELAY = lib.SVQ_FAULT_DELAY
    DUP = lib.SVQ_FAULT_DUP


# the names operators type (ctl, palette): kind and link
FAULT_NAMES: dict[str, tuple[FaultKind, Link]] = {
    "drop-kick": (FaultKind.DROP, Link.KICK),
    "drop-call": (FaultKind.DROP, Link.CALL),
    "delay-call": (FaultKind.DELAY, Link.CALL),
    "dup-call": (FaultKind.DUP, Link.CALL),
}


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault to arm: ``amount`` is N notifications (drop, dup) or ms (delay)."""

    kind: FaultKind
    link: Link
    amount: int = 1

    @classmethod
    def named(cls, name: str, amount: int | None = None) -> Fault:
        """``drop-kick|drop-call|delay-call|dup-call`` with N (default 1) or MS (default 500)."""
        try:
            kind, link = FAULT_NAMES[name]
        except KeyError:
            raise BadFault(f"no fault {name!r} (known: {', '.join(FAULT_NAMES)})") from None
        if amount is None:
            amount = 500 if kind is FaultKind.DELAY else 1
        limit = MAX_DELAY_MS if kind is FaultKind.DELAY else MAX_COUNT
        if not 1 <= amount <= limit:
            unit = "ms" if kind is FaultKind.DELAY else "notifications"
            raise BadFault(f"{name}: {amount} is out of range (1 to {limit} {unit})")
        return cls(kind, link, amount)

    @property
    def name(self) -> str:
        return next(n for n, (k, li) in FAULT_NAMES.items() if (k, li) == (self.kind, self.link))

    def describe(self) -> str:
        return describe(self.kind, self.link, self.amount)


def armed(counters: LinkCounters, link: Link) -> str | None:
    """The fault armed on a link, in words (None when there is none)."""
    kind = (
        FaultKind(counters.fault)
        if counters.fault in FaultKind.__members__.values()
        else FaultKind.NONE
    )
    if kind is FaultKind.NONE:
        return None
    amount = counters.fault_delay_ms if kind is FaultKind.DELAY else counters.fault_left
    return describe(kind, link, amount)


def fault_fields(counters: QueueCounters) -> dict[str, str | int | None]:
    """A queue's armed faults and fault counters, as QueueView fields."""
    words = [w for w in (armed(counters.kick, Link.KICK), armed(counters.call, Link.CALL)) if w]
    kick, call = counters.kick, counters.call
    return {
        "fault": "; ".join(words) or None,
        "dropped": kick.dropped + call.dropped,
        "dropped_kicks": kick.dropped,
        "duplicated": kick.duplicated + call.duplicated,
        "delayed": kick.delayed + call.delayed,
    }


def describe(kind: FaultKind, link: Link, amount: int) -> str:
    """An armed fault in words: "drop the next 3 calls", "delay calls 500 ms"."""
    what = link.name.lower()
    if kind is FaultKind.DELAY:
        return f"delay {what}s {amount} ms"
    verb = "drop" if kind is FaultKind.DROP else "duplicate"
    return f"{verb} the next {what}" if amount == 1 else f"{verb} the next {amount} {what}s"
