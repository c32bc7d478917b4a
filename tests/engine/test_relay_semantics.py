"""Rules 1 and 2 of the relay engine, one change at a time, on real eventfds.

Rule 1 (no lost notification): every change of a link's fds signals the new
destination once. Rule 2 (masking): a masked call link latches calls as
pending; unmask delivers a pending call exactly once.
"""

from __future__ import annotations

import time

import pytest

from svqtui.engine import End, Link
from tests.support.engine import Rig, drain, readable, signal
from tests.support.wait import wait_until

LINKS = [Link.KICK, Link.CALL]


def _src_dst(fds, link: Link) -> tuple[int, int]:
    if link is Link.KICK:
        return fds.kick_src, fds.kick_dst
    return fds.call_src, fds.call_dst


# -- plain relaying --------------------------------------------------------------


@pytest.mark.parametrize("link", LINKS, ids=["kick", "call"])
def test_plain_relay_counts_every_notification(rig: Rig, link: Link) -> None:
    """No notification is lost in plain relaying: the sum of the values written
    to the source equals link.notifications, every source read is delivered
    as exactly one write to the destination, and the destination holds one
    count per delivery."""
    slot, fds = rig.add()
    src, dst = _src_dst(fds, link)
    rig.engine.reset(slot)
    written = 0
    for i in range(2000):
        value = 1 + i % 5
        signal(src, value)
        written += value
    rig.barrier()
    counters = getattr(rig.engine.queue(slot), link.name.lower())
    assert counters.notifications == written
    assert 1 <= counters.reads <= 2000
    assert counters.delivered == counters.reads
    assert drain(dst) == counters.reads
    assert counters.healthy


def test_each_relayed_notification_reaches_destination(rig: Rig) -> None:
    """One notification at a time arrives at the destination as exactly one
    count, and nothing else arrives (no duplicate deliveries)."""
    slot, fds = rig.add()
    for _ in range(50):
        signal(fds.kick_src)
        wait_until(lambda: readable(fds.kick_dst), what="the kick to be relayed")
        rig.barrier()
        assert drain(fds.kick_dst) == 1
    q = rig.engine.queue(slot)
    assert q.kick.reads == 50
    assert not readable(fds.call_dst)


def test_last_relay_time_is_recorded(rig: Rig) -> None:
    """last_ns is 0 before the first relay, then the monotonic time of the
    latest source read."""
    slot, fds = rig.add()
    assert rig.engine.queue(slot).kick.last_ns == 0
    before = time.monotonic_ns()
    signal(fds.kick_src)
    rig.barrier()
    last = rig.engine.queue(slot).kick.last_ns
    assert before <= last <= time.monotonic_ns()
    assert rig.engine.queue(slot).call.last_ns == 0


# -- rule 1: every fd change signals the new destination once --------------------


def test_add_queue_signals_both_destinations_once(rig: Rig) -> None:
    """add_queue signals each destination exactly once (a new path), and
    counts it as a signal, not as a relayed notification."""
    fds = [rig.efd() for _ in range(4)]
    slot = rig.engine.add_queue(*fds)
    rig.barrier()
    assert drain(fds[1]) == 1
    assert drain(fds[3]) == 1
    q = rig.engine.queue(slot)
    for link in (q.kick, q.call):
        assert (link.signals, link.delivered, link.notifications, link.held) == (1, 1, 0, 0)
    assert not readable(fds[0]) and not readable(fds[2])


def test_add_queue_masked_latches_the_call_signal(rig: Rig) -> None:
    """A queue added masked gets its call signal latched as pending, not
    delivered; the kick link is never masked and is signalled at once."""
    slot, fds = rig.add(masked=True)  # checks kick_dst == 1, call_dst == 0
    q = rig.engine.queue(slot)
    assert q.call.masked and q.call.pending
    assert q.call.held == 0  # a signal is not a guest's call
    assert not q.kick.masked
    rig.engine.set_masked(slot, False)
    assert drain(fds.call_dst) == 1


@pytest.mark.parametrize("link", LINKS, ids=["kick", "call"])
def test_set_fd_dst_signals_new_destination_once(rig: Rig, link: Link) -> None:
    """set_fd(DST) signals the new destination exactly once; the old
    destination gets nothing more, and later notifications go to the new one."""
    slot, fds = rig.add()
    src, old = _src_dst(fds, link)
    new = rig.efd()
    rig.engine.set_fd(slot, link, End.DST, new)
    rig.barrier()
    assert drain(new) == 1
    assert drain(old) == 0
    signal(src)
    rig.barrier()
    assert drain(new) == 1
    assert drain(old) == 0
    counters = getattr(rig.engine.queue(slot), link.name.lower())
    assert counters.dst == new
    assert counters.signals == 2  # the add and the set_fd


@pytest.mark.parametrize("link", LINKS, ids=["kick", "call"])
def test_set_fd_src_signals_destination_once(rig: Rig, link: Link) -> None:
    """set_fd(SRC) signals the destination exactly once (a notification that
    raced into the old source is not lost); the old source is no longer
    relayed and the new one is."""
    slot, fds = rig.add()
    old, dst = _src_dst(fds, link)
    new = rig.efd()
    rig.engine.set_fd(slot, link, End.SRC, new)
    rig.barrier()
    assert drain(dst) == 1
    signal(old)
    rig.barrier()
    assert drain(dst) == 0, "a replaced source must not be relayed any more"
    assert drain(old) == 1  # still sitting there, unread by the engine
    signal(new)
    rig.barrier()
    assert drain(dst) == 1
    assert getattr(rig.engine.queue(slot), link.name.lower()).src == new


@pytest.mark.parametrize("change", ["set_fd", "remove"])
def test_forgotten_source_does_not_keep_the_engine_busy(rig: Rig, change: str) -> None:
    """A source the engine no longer relays (replaced by set_fd, or its
    queue removed) is also no longer watched: left signalled, it neither
    gets relayed nor makes the loop spin. An idle loop turns about ten times
    a second; 1,000 turns in 0.3 s can only be a busy loop, and a slow
    machine only makes the count smaller, so the bound is not timing-sensitive."""
    slot, fds = rig.add()
    if change == "set_fd":
        rig.engine.set_fd(slot, Link.KICK, End.SRC, rig.efd())
    else:
        rig.engine.remove_queue(slot)
    drain(fds.kick_dst)  # set_fd's signal-once
    signal(fds.kick_src)
    rig.barrier()
    loops = rig.engine.health().loops
    time.sleep(0.3)
    assert rig.engine.health().loops - loops < 1000, "the engine spins on a forgotten source"
    assert drain(fds.kick_src) == 1
    assert drain(fds.kick_dst) == 0


def test_set_fd_src_with_notification_waiting_in_the_old_source(rig: Rig) -> None:
    """The case rule 1 exists for: a kick sits unread in the old source when
    the source is switched (here the queue starts without a source, so the
    engine never reads it). The destination still gets signalled."""
    kick_dst, frontend_kick, new_src = rig.efd(), rig.efd(), rig.efd()
    slot = rig.engine.add_queue(-1, kick_dst)
    assert drain(kick_dst) == 1
    signal(frontend_kick)  # the guest kicked the fd the engine is not watching yet
    rig.engine.set_fd(slot, Link.KICK, End.SRC, new_src)
    rig.barrier()
    assert drain(kick_dst) == 1


@pytest.mark.parametrize("handback", [True, False])
def test_remove_queue_handback_signals_front_end_once(rig: Rig, handback: bool) -> None:
    """remove_queue(handback=True) signals the front-end's kick fd (the kick
    source, which the back-end polls again) and the front-end's call fd (the
    call destination) exactly once; without handback nothing is signalled.
    Either way the engine stops relaying the queue's sources."""
    slot, fds = rig.add()
    rig.engine.remove_queue(slot, handback=handback)
    rig.barrier()
    expected = 1 if handback else 0
    assert drain(fds.kick_src) == expected
    assert drain(fds.call_dst) == expected
    assert drain(fds.kick_dst) == 0
    assert drain(fds.call_src) == 0
    signal(fds.kick_src)
    signal(fds.call_src)
    rig.barrier()
    assert drain(fds.kick_dst) == 0
    assert drain(fds.call_dst) == 0
    assert slot not in rig.engine.snapshot().queues


def test_remove_queue_handback_delivers_a_pending_call(rig: Rig) -> None:
    """A call held while masked is not lost when the queue is handed back:
    the front-end's call fd is signalled."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    signal(fds.call_src)
    rig.barrier()
    assert rig.engine.queue(slot).call.pending
    assert drain(fds.call_dst) == 0
    rig.engine.remove_queue(slot, handback=True)
    assert drain(fds.call_dst) == 1


# -- rule 2: masking ---------------------------------------------------------------


def test_masked_calls_are_latched_as_pending(rig: Rig) -> None:
    """While masked nothing reaches the call destination; every call is
    counted as held and the state is PENDING (masked and pending)."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    q = rig.engine.queue(slot)
    assert q.call.masked and not q.call.pending  # MASKED, nothing pending yet
    for _ in range(5):
        signal(fds.call_src)
        rig.barrier()
    q = rig.engine.queue(slot)
    assert drain(fds.call_dst) == 0
    assert q.call.masked and q.call.pending
    assert q.call.reads == 5 and q.call.held == 5
    assert q.call.delivered == 1  # only the add's signal


def test_unmask_delivers_pending_call_exactly_once(rig: Rig) -> None:
    """Unmask delivers a pending call exactly once however many calls were
    held: the destination reads exactly 1, then nothing more."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    for _ in range(3):
        signal(fds.call_src)
        rig.barrier()
    rig.engine.set_masked(slot, False)
    assert drain(fds.call_dst) == 1
    rig.barrier()
    assert drain(fds.call_dst) == 0
    q = rig.engine.queue(slot)
    assert not q.call.masked and not q.call.pending
    # a second unmask has nothing left to deliver
    rig.engine.set_masked(slot, False)
    rig.barrier()
    assert drain(fds.call_dst) == 0


def test_unmasked_calls_flow_again(rig: Rig) -> None:
    """After unmask, calls are relayed one for one again."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    signal(fds.call_src)
    rig.barrier()
    rig.engine.set_masked(slot, False)
    assert drain(fds.call_dst) == 1
    for _ in range(3):
        signal(fds.call_src)
        rig.barrier()
        assert drain(fds.call_dst) == 1


def test_mask_unmask_with_nothing_pending_delivers_nothing(rig: Rig) -> None:
    """Masking and unmasking with no call in between delivers nothing."""
    slot, fds = rig.add()
    for _ in range(3):
        rig.engine.set_masked(slot, True)
        rig.engine.set_masked(slot, False)
    rig.barrier()
    assert drain(fds.call_dst) == 0
    assert rig.engine.queue(slot).call.delivered == 1  # the add's signal only


def test_remask_keeps_pending(rig: Rig) -> None:
    """Masking an already masked, pending link keeps the pending call."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    signal(fds.call_src)
    rig.barrier()
    rig.engine.set_masked(slot, True)
    assert rig.engine.queue(slot).call.pending
    rig.engine.set_masked(slot, False)
    assert drain(fds.call_dst) == 1


def test_mask_leaves_the_kick_link_alone(rig: Rig) -> None:
    """Masking is a call-link state: kicks still flow while the queue is masked."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    signal(fds.kick_src)
    rig.barrier()
    assert drain(fds.kick_dst) == 1
    q = rig.engine.queue(slot)
    assert not q.kick.masked and not q.kick.pending


def test_new_call_fd_while_masked_is_latched(rig: Rig) -> None:
    """A new call destination while masked is not signalled at once: its
    signal is latched as pending and delivered, once, to it on unmask."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    new = rig.efd()
    rig.engine.set_fd(slot, Link.CALL, End.DST, new)
    rig.barrier()
    assert drain(new) == 0 and drain(fds.call_dst) == 0
    assert rig.engine.queue(slot).call.pending
    rig.engine.set_masked(slot, False)
    assert drain(new) == 1
    assert drain(fds.call_dst) == 0
