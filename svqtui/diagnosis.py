"""Why a queue is stuck, in one sentence with the numbers (docs/design.md#data-flow).

Pure rules over what a source reports for a queue (``QueueView``: counters,
mask, ring indices and suppression state) and what the monitor measured
over time (``Timing``: how long nothing moved, the indices at the last kick
and call, how long NO_INTERRUPT has been set). ``diagnose`` returns the
first rule that holds, most specific first:

1. calls held by a mask (the operator's ``m``, or the guest's vector mask);
2. the device owes a call: the used index passed the guest's ``used_event``
   (VIRTIO_RING_F_EVENT_IDX) or moved with NO_INTERRUPT clear, and no call
   came since;
3. the guest suppressed calls (NO_INTERRUPT, without EVENT_IDX) and has not
   re-enabled them while completions wait;
4. a kick is owed: the avail index passed the device's ``avail_event`` (or
   moved with NO_NOTIFY clear), no kick came since, and nothing completes;
5. the guest is not handling calls: a call came after used passed
   ``used_event`` and the guest never moved ``used_event``;
6. the back-end is not reading: requests in flight, none completed.

"No notification since" is judged by time, not by indices sampled at a
refresh: the index last moved no earlier than the counter of the
notification that should have followed it (a sampled "index at the last
call" would lag by up to a refresh and hide exactly the owed call). The
monitor samples once per refresh, so the two can move in the same refresh
interval. For a call that counts as not answered (a call a fault dropped is
counted like a delivered one; the guest's ``used_event`` tells whether it
took the completion). For a kick it counts as answered (the guest writes
the avail index, then kicks: a back-end that stops right after a kick it was
sent owes the completion, not the guest the kick), unless a fault swallowed
that kick (``Timing.last_kick_dropped``).

Every time condition is "for at least ``Timing.after_s``" (the stuck rules'
``stuck.after``). Index arithmetic is mod 2^16 (``need_event``), so a ring
that wrapped past 65535 is judged the same as one that did not. A rule that
needs a counter this source cannot count (no shadow mode) does not fire.
"""

from __future__ import annotations

from dataclasses import dataclass

from svqtui.model import MaskState, QueueView
from svqtui.virtio.split_ring import need_event


@dataclass(frozen=True, slots=True)
class Timing:
    """What the monitor measured for one queue over successive refreshes."""

    after_s: float  # how long a condition must last (stuck.after)
    used_still_s: float = 0.0  # the used index has not moved for this long
    avail_still_s: float = 0.0  # the avail index has not moved for this long
    no_call_s: float | None = None  # since the call counter last moved (None: not counted)
    no_kick_s: float | None = None  # since the kick counter last moved (None: not counted)
    no_interrupt_s: float | None = None  # NO_INTERRUPT set continuously for (None: clear)
    used_at_no_interrupt: int | None = None  # used index when NO_INTERRUPT was first seen
    masked_s: float | None = None  # MASKED or PENDING continuously for (None: unmasked)
    last_kick_dropped: bool = False  # the kick counter's last move was a kick a fault dropped


def seconds(value: float) -> str:
    """ "3.2 s" below ten seconds, "12 s" above."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _indices(q: QueueView) -> tuple[int | None, int | None]:
    ring = q.ring
    avail = ring.avail_idx if ring is not None and ring.avail_idx is not None else q.avail_idx
    used = ring.used_idx if ring is not None and ring.used_idx is not None else q.used_idx
    return avail, used


def passed(event: int, index: int, size: int) -> bool:
    """``index`` has moved past ``event`` within the last ``size`` steps (mod
    2^16): an event index ahead of ``index`` (a guest delaying its calls) or
    further behind than a ring's worth is not "passed"."""
    return need_event(event, index, (index - size) & 0xFFFF)


def _in_flight(avail: int | None, used: int | None) -> int:
    return 0 if avail is None or used is None else (avail - used) & 0xFFFF


def held_by_mask(q: QueueView, t: Timing) -> str | None:
    """Calls latched by a mask: the operator's at once, the guest's after a while."""
    latched = q.held > 0 or q.mask is MaskState.PENDING
    if q.hold and (latched or _in_flight(*_indices(q))):
        return (
            f"calls held by the operator's mask: {_plural(q.held, 'call')} held"
            + (", one pending" if q.mask is MaskState.PENDING else "")
            + "; m releases them"
        )
    if (
        q.mask in (MaskState.MASKED, MaskState.PENDING)
        and latched
        and t.masked_s is not None
        and t.masked_s >= t.after_s
    ):
        return (
            f"calls held by the guest's mask: {_plural(q.held, 'call')} latched, "
            f"masked for {seconds(t.masked_s)}"
        )
    return None


def call_owed(q: QueueView, t: Timing) -> str | None:
    """The device moved the used index where the guest asked for a call, and
    no call came since: the used index last moved no earlier than the last call."""
    ring, (_, used) = q.ring, _indices(q)
    if ring is None or used is None or t.no_call_s is None or t.no_call_s < t.after_s:
        return None
    if t.used_still_s > t.no_call_s:
        return None  # a call came after the last completion
    if ring.event_idx:
        event = ring.used_event
        if event is not None and passed(event, used, ring.size):
            return (
                f"device owes a call: used index {used} passed used_event {event} "
                f"and no call for {seconds(t.no_call_s)}"
            )
        return None
    if ring.no_interrupt is False and t.used_still_s < t.no_call_s:
        return (
            f"device owes a call: used index {used} moved {seconds(t.used_still_s)} ago "
            f"with NO_INTERRUPT clear, and no call for {seconds(t.no_call_s)}"
        )
    return None


def guest_not_processing(q: QueueView, t: Timing) -> str | None:
    """EVENT_IDX: a call came after the used index passed used_event, and the
    guest has not moved used_event since (it is not handling its calls)."""
    ring, (_, used) = q.ring, _indices(q)
    if ring is None or not ring.event_idx or ring.used_event is None or used is None:
        return None
    if t.no_call_s is None or t.used_still_s < t.after_s or t.no_call_s > t.used_still_s:
        return None
    event = ring.used_event
    if not passed(event, used, ring.size):
        return None
    return (
        f"guest not handling calls: last call {seconds(t.no_call_s)} ago, "
        f"its used_event {event} still behind used index {used}"
    )


def calls_suppressed(q: QueueView, t: Timing) -> str | None:
    """The guest set NO_INTERRUPT (without EVENT_IDX) and left it set while completions wait."""
    ring, (avail, used) = q.ring, _indices(q)
    if ring is None or ring.event_idx or not ring.no_interrupt:
        return None
    since = t.no_interrupt_s
    if since is None or since < t.after_s:
        return None
    waiting = _in_flight(avail, used)
    moved = (
        (used - t.used_at_no_interrupt) & 0xFFFF
        if used is not None and t.used_at_no_interrupt is not None
        else 0
    )
    if not waiting and not moved:
        return None
    return (
        f"guest suppressed calls (NO_INTERRUPT) {seconds(since)} ago and has not "
        f"re-enabled them: {_plural(moved, 'completion')} since, used index {used}"
    )


def kick_owed(q: QueueView, t: Timing) -> str | None:
    """The guest moved the avail index where the device asked for a kick, no
    kick came since (the avail index last moved after the last kick, or a
    fault dropped that kick), and nothing completes."""
    ring, (avail, used) = q.ring, _indices(q)
    if ring is None or avail is None or t.no_kick_s is None or t.no_kick_s < t.after_s:
        return None
    if not _in_flight(avail, used) or t.used_still_s < t.after_s:
        return None
    if t.avail_still_s >= t.no_kick_s and not t.last_kick_dropped:
        return None  # a kick came with or after the last request made available
    if ring.event_idx:
        event = ring.avail_event
        if event is not None and passed(event, avail, ring.size):
            return (
                f"kick owed: avail {avail} passed avail_event {event}, "
                f"no kick for {seconds(t.no_kick_s)}"
            )
        return None
    if ring.no_notify is False:
        return (
            f"kick owed: avail {avail} moved {seconds(t.avail_still_s)} ago with NO_NOTIFY "
            f"clear, no kick for {seconds(t.no_kick_s)}"
        )
    return None


def not_reading(q: QueueView, t: Timing) -> str | None:
    """Requests in flight and the used index still."""
    avail, used = _indices(q)
    n = _in_flight(avail, used)
    if not n or t.used_still_s < t.after_s:
        return None
    text = (
        f"back-end not reading: {_plural(n, 'request')} taken, "
        f"none completed for {seconds(t.used_still_s)}"
    )
    ring = q.ring
    if ring is not None and ring.event_idx and ring.avail_event is not None:
        text += f" (it last asked for a kick at avail {ring.avail_event})"
    elif ring is not None and ring.no_notify:
        text += " (it set NO_NOTIFY: it polls instead of waiting for kicks)"
    return text


RULES = (held_by_mask, call_owed, calls_suppressed, kick_owed, guest_not_processing, not_reading)


def verdict(q: QueueView, t: Timing) -> tuple[str, str] | None:
    """(rule name, sentence) of the first rule that holds for this queue, or None."""
    for rule in RULES:
        text = rule(q, t)
        if text is not None:
            return rule.__name__, text
    return None


def diagnose(q: QueueView, t: Timing) -> str | None:
    """The first rule that holds for this queue, as one sentence, or None."""
    found = verdict(q, t)
    return found[1] if found is not None else None
