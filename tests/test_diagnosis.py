"""The diagnosis rules: one sentence with the numbers, each rule on crafted views."""

from __future__ import annotations

from dataclasses import replace

from svqtui.diagnosis import Timing, diagnose, seconds
from svqtui.model import MaskState, QueueView
from svqtui.virtio.split_ring import RingState

AFTER = 5.0


def ring(
    avail: int,
    used: int,
    *,
    event_idx: bool = False,
    avail_flags: int = 0,
    used_flags: int = 0,
    used_event: int | None = None,
    avail_event: int | None = None,
) -> RingState:
    return RingState(
        size=256,
        event_idx=event_idx,
        indirect_desc=True,
        packed=False,
        avail_flags=avail_flags,
        avail_idx=avail,
        used_flags=used_flags,
        used_idx=used,
        used_event=used_event,
        avail_event=avail_event,
    )


def view(state: RingState, **kw: object) -> QueueView:
    fields: dict[str, object] = {
        "index": 0,
        "kicks": 100,
        "calls": 90,
        "mask": MaskState.UNMASKED,
        "shadow": True,
        "avail_idx": state.avail_idx,
        "used_idx": state.used_idx,
        "ring": state,
    }
    fields.update(kw)
    return QueueView(**fields)  # type: ignore[arg-type]


def timing(**kw: float | int | None) -> Timing:
    return Timing(after_s=AFTER, **kw)  # type: ignore[arg-type]


def test_seconds_reads_like_the_examples() -> None:
    """Short waits keep a decimal ("3.2 s"), long ones do not ("12 s")."""
    assert seconds(3.24) == "3.2 s"
    assert seconds(12.4) == "12 s"


def test_healthy_queue_has_no_diagnosis() -> None:
    """Nothing in flight, everything recent: no rule fires."""
    q = view(ring(500, 500, event_idx=True, used_event=500, avail_event=500))
    assert diagnose(q, timing(used_still_s=30, no_call_s=30, no_kick_s=30)) is None


def test_device_owes_a_call_with_event_idx() -> None:
    """used.idx passed used_event since the last call and no call for a while:
    the sentence names both indices and the time."""
    q = view(ring(812, 812, event_idx=True, used_event=805, avail_event=812))
    t = timing(used_still_s=1, no_call_s=3.2, no_kick_s=1, used_at_last_call=800)
    assert diagnose(q, replace(t, after_s=3.0)) == (
        "device owes a call: used index 812 passed used_event 805 and no call for 3.2 s"
    )
    assert diagnose(q, t) is None  # not yet long enough


def test_no_call_owed_when_used_event_was_not_passed_since_the_last_call() -> None:
    """A call already answered used_event: the guest has not asked for another."""
    q = view(ring(812, 812, event_idx=True, used_event=805, avail_event=812))
    t = timing(used_still_s=1, no_call_s=20, no_kick_s=1, used_at_last_call=810)
    assert diagnose(q, t) is None


def test_device_owes_a_call_across_the_wrap() -> None:
    """used_event 65533, used.idx wrapped to 4, last call at 65530: owed."""
    q = view(ring(4, 4, event_idx=True, used_event=65533, avail_event=4))
    t = timing(used_still_s=1, no_call_s=6, no_kick_s=1, used_at_last_call=65530)
    assert diagnose(q, t) == (
        "device owes a call: used index 4 passed used_event 65533 and no call for 6.0 s"
    )
    answered = timing(used_still_s=1, no_call_s=6, no_kick_s=1, used_at_last_call=65534)
    assert diagnose(q, answered) is None


def test_device_owes_a_call_without_event_idx() -> None:
    """Without EVENT_IDX: used moved since the last call with NO_INTERRUPT clear."""
    q = view(ring(40, 40))
    t = timing(used_still_s=1, no_call_s=7, no_kick_s=1, used_at_last_call=30)
    assert diagnose(q, t) == (
        "device owes a call: used index 40 moved from 30 at the last call "
        "with NO_INTERRUPT clear, and no call for 7.0 s"
    )


def test_guest_suppressed_calls() -> None:
    """NO_INTERRUPT set for long, completions since: the guest never re-enabled calls."""
    q = view(ring(120, 118, avail_flags=1))
    t = timing(
        used_still_s=1,
        no_call_s=12,
        no_kick_s=1,
        no_interrupt_s=12.3,
        used_at_no_interrupt=100,
        used_at_last_call=100,
    )
    assert diagnose(q, t) == (
        "guest suppressed calls (NO_INTERRUPT) 12 s ago and has not re-enabled them: "
        "18 completions since, used index 118"
    )


def test_no_interrupt_is_fine_while_nothing_waits() -> None:
    """NO_INTERRUPT with nothing in flight and no completion since: a quiet guest."""
    q = view(ring(100, 100, avail_flags=1))
    t = timing(
        used_still_s=20, no_call_s=20, no_kick_s=20, no_interrupt_s=20, used_at_no_interrupt=100
    )
    assert diagnose(q, t) is None


def test_no_interrupt_is_ignored_with_event_idx() -> None:
    """With EVENT_IDX the device ignores the flag: no suppression verdict."""
    q = view(ring(120, 118, event_idx=True, avail_flags=1, used_event=118, avail_event=120))
    t = timing(
        used_still_s=1,
        no_call_s=12,
        no_kick_s=1,
        no_interrupt_s=12,
        used_at_no_interrupt=100,
        used_at_last_call=118,
    )
    assert diagnose(q, t) is None


def test_kick_owed_with_event_idx() -> None:
    """avail passed avail_event, no kick, nothing completing: a kick is owed."""
    q = view(ring(90, 80, event_idx=True, used_event=80, avail_event=88))
    t = timing(used_still_s=4, no_call_s=4, no_kick_s=4, avail_at_last_kick=85)
    assert diagnose(q, replace(t, after_s=4)) == (
        "kick owed: avail 90 passed avail_event 88, no kick for 4.0 s"
    )


def test_kick_owed_across_the_wrap() -> None:
    """avail_event 65535, avail wrapped to 2: owed; a kick at avail 1 answered it."""
    q = view(ring(2, 65530, event_idx=True, used_event=65530, avail_event=65535))
    t = timing(used_still_s=8, no_call_s=8, no_kick_s=8, avail_at_last_kick=65534)
    assert diagnose(q, t) == "kick owed: avail 2 passed avail_event 65535, no kick for 8.0 s"
    kicked = timing(used_still_s=8, no_call_s=8, no_kick_s=8, avail_at_last_kick=1)
    text = diagnose(q, kicked)
    assert text is not None and text.startswith("back-end not reading: 8 requests")


def test_kick_owed_without_event_idx() -> None:
    """Without EVENT_IDX: avail moved since the last kick with NO_NOTIFY clear."""
    q = view(ring(50, 44))
    t = timing(used_still_s=6, no_call_s=6, no_kick_s=6, avail_at_last_kick=47)
    assert diagnose(q, t) == (
        "kick owed: avail 50 moved from 47 at the last kick with NO_NOTIFY clear, no kick for 6.0 s"
    )


def test_back_end_not_reading() -> None:
    """Requests in flight, used still: the back-end is not completing, with the
    device's last kick request when EVENT_IDX says it."""
    q = view(ring(32, 0, event_idx=True, used_event=0, avail_event=32))
    t = timing(used_still_s=8, no_call_s=8, no_kick_s=1, avail_at_last_kick=32)
    assert diagnose(q, t) == (
        "back-end not reading: 32 requests taken, none completed for 8.0 s "
        "(it last asked for a kick at avail 32)"
    )


def test_back_end_not_reading_wraps_and_needs_no_counters() -> None:
    """In flight is mod 2^16 (65534 -> 3 is 5), and the rule needs no counters."""
    q = view(ring(3, 65534), kicks=None, calls=None, shadow=False)
    assert diagnose(q, timing(used_still_s=9)) == (
        "back-end not reading: 5 requests taken, none completed for 9.0 s"
    )


def test_operator_hold_comes_first() -> None:
    """The operator's mask explains missing calls before any ring rule."""
    q = view(ring(32, 0), mask=MaskState.PENDING, held=12, hold=True)
    t = timing(used_still_s=30, no_call_s=30, no_kick_s=30, used_at_last_call=0)
    assert diagnose(q, t) == (
        "calls held by the operator's mask: 12 calls held, one pending; m releases them"
    )


def test_guest_mask_holding_calls() -> None:
    """A guest-masked queue with latched calls and none delivered for a while."""
    q = view(ring(10, 10), mask=MaskState.PENDING, held=3)
    assert diagnose(q, timing(used_still_s=1, no_call_s=6, no_kick_s=1)) == (
        "calls held by the guest's mask: 3 calls latched, none delivered for 6.0 s"
    )
    assert diagnose(q, timing(used_still_s=1, no_call_s=2, no_kick_s=1)) is None


def test_unread_event_index_gives_no_call_verdict() -> None:
    """An unreadable used_event is no evidence: the rule stays silent."""
    q = view(ring(10, 10, event_idx=True, used_event=None))
    assert diagnose(q, timing(used_still_s=1, no_call_s=60, no_kick_s=1)) is None
