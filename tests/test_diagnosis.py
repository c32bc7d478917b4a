"""The diagnosis rules: one sentence with the numbers, each rule on crafted views."""

from __future__ import annotations

from dataclasses import replace

from svqtui.diagnosis import Timing, diagnose, seconds, verdict
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
    """used.idx passed used_event, the used index moved after the last call,
    and no call for a while: the sentence names both indices and the time."""
    q = view(ring(812, 812, event_idx=True, used_event=805, avail_event=812))
    t = timing(used_still_s=1, avail_still_s=1, no_call_s=3.2, no_kick_s=1)
    assert diagnose(q, replace(t, after_s=3.0)) == (
        "device owes a call: used index 812 passed used_event 805 and no call for 3.2 s"
    )
    assert diagnose(q, t) is None  # not yet long enough


def test_no_call_owed_when_a_call_came_after_the_last_completion() -> None:
    """The call came after used last moved: the device called; the guest did
    not handle it (its used_event stays behind), which is its own verdict."""
    q = view(ring(812, 812, event_idx=True, used_event=805, avail_event=812))
    t = timing(used_still_s=20, avail_still_s=20, no_call_s=19, no_kick_s=20)
    assert diagnose(q, t) == (
        "guest not handling calls: last call 19 s ago, its used_event 805 still behind "
        "used index 812"
    )


def test_used_event_ahead_is_not_passed() -> None:
    """A guest delaying its calls sets used_event ahead of used: nothing is owed."""
    q = view(ring(812, 812, event_idx=True, used_event=830, avail_event=812))
    assert diagnose(q, timing(used_still_s=1, no_call_s=60, no_kick_s=1)) is None


def test_device_owes_a_call_across_the_wrap() -> None:
    """used_event 65533 and used.idx wrapped to 4: passed, owed; used_event 6
    (ahead of 4) is not."""
    q = view(ring(4, 4, event_idx=True, used_event=65533, avail_event=4))
    t = timing(used_still_s=1, no_call_s=6, no_kick_s=1)
    assert diagnose(q, t) == (
        "device owes a call: used index 4 passed used_event 65533 and no call for 6.0 s"
    )
    ahead = view(ring(4, 4, event_idx=True, used_event=6, avail_event=4))
    assert diagnose(ahead, t) is None


def test_device_owes_a_call_without_event_idx() -> None:
    """Without EVENT_IDX: used moved after the last call with NO_INTERRUPT clear."""
    q = view(ring(40, 40))
    t = timing(used_still_s=2, avail_still_s=2, no_call_s=7, no_kick_s=1)
    assert diagnose(q, t) == (
        "device owes a call: used index 40 moved 2.0 s ago "
        "with NO_INTERRUPT clear, and no call for 7.0 s"
    )


def test_guest_suppressed_calls() -> None:
    """NO_INTERRUPT set for long, completions since: the guest never re-enabled calls."""
    q = view(ring(120, 118, avail_flags=1))
    t = timing(
        used_still_s=1, no_call_s=12, no_kick_s=1, no_interrupt_s=12.3, used_at_no_interrupt=100
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
    )
    assert diagnose(q, t) is None


def test_kick_owed_with_event_idx() -> None:
    """avail passed avail_event, no kick since avail moved, nothing completing."""
    q = view(ring(90, 80, event_idx=True, used_event=80, avail_event=88))
    t = timing(used_still_s=4, avail_still_s=3, no_call_s=4, no_kick_s=4)
    assert diagnose(q, replace(t, after_s=4)) == (
        "kick owed: avail 90 passed avail_event 88, no kick for 4.0 s"
    )


def test_kick_owed_across_the_wrap() -> None:
    """avail_event 65535, avail wrapped to 2: owed; once a kick came after avail
    last moved, the device was told: the back-end is not reading."""
    q = view(ring(2, 65530, event_idx=True, used_event=65530, avail_event=65535))
    t = timing(used_still_s=8, avail_still_s=7, no_call_s=8, no_kick_s=8)
    assert diagnose(q, t) == "kick owed: avail 2 passed avail_event 65535, no kick for 8.0 s"
    kicked = replace(t, no_kick_s=6.5)
    text = diagnose(q, kicked)
    assert text is not None and text.startswith("back-end not reading: 8 requests")


def test_a_kick_in_the_same_refresh_as_the_last_request_was_sent() -> None:
    """The back-end stopped right after it was kicked (the lab's stall): the
    kick and the avail index moved in the same refresh, so the kick counts as
    sent and the verdict is the back-end, not a kick owed; the same timing with
    that kick dropped by a fault is a kick owed."""
    q = view(ring(78, 77, event_idx=True, used_event=77, avail_event=77))
    t = timing(used_still_s=6, avail_still_s=6, no_call_s=6, no_kick_s=6)
    text = diagnose(q, t)
    assert text is not None and text.startswith("back-end not reading: 1 request taken")
    dropped = replace(t, last_kick_dropped=True)
    assert diagnose(q, dropped) == "kick owed: avail 78 passed avail_event 77, no kick for 6.0 s"
    plain = view(ring(78, 77))
    assert diagnose(plain, t) == ("back-end not reading: 1 request taken, none completed for 6.0 s")
    assert diagnose(plain, dropped) == (
        "kick owed: avail 78 moved 6.0 s ago with NO_NOTIFY clear, no kick for 6.0 s"
    )


def test_verdict_names_the_rule() -> None:
    """verdict() gives the rule's name with the sentence (the monitor makes a
    queue owed a call stuck by it)."""
    q = view(ring(812, 812, event_idx=True, used_event=805, avail_event=812))
    t = timing(used_still_s=6, avail_still_s=6, no_call_s=6, no_kick_s=6)
    found = verdict(q, t)
    assert found is not None and found[0] == "call_owed" and found[1] == diagnose(q, t)
    assert verdict(view(ring(5, 5)), t) is None


def test_kick_owed_without_event_idx() -> None:
    """Without EVENT_IDX: avail moved after the last kick with NO_NOTIFY clear;
    with NO_NOTIFY set the device said it polls, so no kick is owed."""
    q = view(ring(50, 44))
    t = timing(used_still_s=6, avail_still_s=5.5, no_call_s=6, no_kick_s=6)
    assert diagnose(q, t) == (
        "kick owed: avail 50 moved 5.5 s ago with NO_NOTIFY clear, no kick for 6.0 s"
    )
    polling = view(ring(50, 44, used_flags=1))
    text = diagnose(polling, t)
    assert text is not None and text.startswith("back-end not reading") and "NO_NOTIFY" in text


def test_back_end_not_reading() -> None:
    """Requests in flight, used still: the back-end is not completing, with the
    device's last kick request when EVENT_IDX says it."""
    q = view(ring(32, 0, event_idx=True, used_event=0, avail_event=32))
    t = timing(used_still_s=8, avail_still_s=8, no_call_s=8, no_kick_s=1)
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
    t = timing(used_still_s=30, no_call_s=30, no_kick_s=30)
    assert diagnose(q, t) == (
        "calls held by the operator's mask: 12 calls held, one pending; m releases them"
    )


def test_guest_mask_holding_calls() -> None:
    """A guest-masked queue with latched calls and none delivered for a while."""
    q = view(ring(10, 10), mask=MaskState.PENDING, held=3)
    assert diagnose(q, timing(used_still_s=1, no_call_s=1, no_kick_s=1, masked_s=6)) == (
        "calls held by the guest's mask: 3 calls latched, masked for 6.0 s"
    )
    assert diagnose(q, timing(used_still_s=1, no_call_s=1, no_kick_s=1, masked_s=2)) is None


def test_unread_event_index_gives_no_call_verdict() -> None:
    """An unreadable used_event is no evidence: the rule stays silent."""
    q = view(ring(10, 10, event_idx=True, used_event=None))
    assert diagnose(q, timing(used_still_s=1, no_call_s=60, no_kick_s=1)) is None
