"""Counters, reset, inject and snapshot consistency."""

from __future__ import annotations

import os
import threading
import time

from svqtui.engine import End, Engine, Link
from tests.support.engine import Hammer, Rig, drain, eventfd, signal


def test_reset_zeroes_counters_and_keeps_state(rig: Rig) -> None:
    """reset(slot) zeroes every counter of both links but keeps the state:
    fds, masked, pending (the pending call is still delivered on unmask)."""
    slot, fds = rig.add()
    signal(fds.kick_src, 3)
    rig.engine.inject(slot, Link.KICK)
    rig.engine.set_masked(slot, True)
    signal(fds.call_src)
    rig.barrier()
    before = rig.engine.queue(slot)
    assert before.kick.notifications == 3 and before.call.held == 1
    rig.engine.reset(slot)
    q = rig.engine.queue(slot)
    for link in (q.kick, q.call):
        counts = (link.notifications, link.reads, link.delivered, link.held)
        assert counts == (0, 0, 0, 0)
        assert (link.injected, link.signals, link.errors) == (0, 0, 0)
    assert q.call.masked and q.call.pending
    assert (q.kick.src, q.kick.dst, q.call.src, q.call.dst) == (
        fds.kick_src,
        fds.kick_dst,
        fds.call_src,
        fds.call_dst,
    )
    assert q.generation == before.generation
    drain(fds.kick_dst)
    rig.engine.set_masked(slot, False)
    assert drain(fds.call_dst) == 1
    assert rig.engine.queue(slot).call.delivered == 1


def test_reset_one_queue_or_all(rig: Rig) -> None:
    """reset(slot) touches only that queue; reset() zeroes every queue."""
    a, fa = rig.add()
    b, fb = rig.add()
    for fds in (fa, fb):
        signal(fds.kick_src)
    rig.barrier()
    rig.engine.reset(a)
    snap = rig.engine.snapshot()
    assert snap.queues[a].kick.reads == 0
    assert snap.queues[b].kick.reads == 1
    rig.engine.reset()
    snap = rig.engine.snapshot()
    assert snap.queues[a].kick.reads == snap.queues[b].kick.reads == 0
    assert snap.queues[b].kick.delivered == 0


def test_reset_keeps_the_error_state(rig: Rig) -> None:
    """reset() zeroes the error count but not the error itself: the link is
    still broken until its fd is replaced."""
    slot, _fds = rig.add()
    bad = rig.efd()
    rig.fds.remove(bad)
    os.close(bad)
    rig.engine.set_fd(slot, Link.CALL, End.DST, bad)
    assert rig.engine.queue(slot).call.errors == 1
    rig.engine.reset(slot)
    call = rig.engine.queue(slot).call
    assert call.errors == 0 and call.error is not None


def test_inject_signals_the_destination(rig: Rig) -> None:
    """inject(KICK) and inject(CALL) write the destination once each and count
    as injected, not as relayed notifications."""
    slot, fds = rig.add()
    rig.engine.inject(slot, Link.KICK)
    assert drain(fds.kick_dst) == 1
    assert drain(fds.call_dst) == 0
    rig.engine.inject(slot, Link.CALL)
    rig.engine.inject(slot, Link.CALL)
    assert drain(fds.call_dst) == 2
    q = rig.engine.queue(slot)
    assert (q.kick.injected, q.call.injected) == (1, 2)
    assert q.kick.notifications == q.call.notifications == 0
    assert (q.kick.delivered, q.call.delivered) == (2, 3)  # plus the add's signal


def test_inject_call_while_masked_is_pending(rig: Rig) -> None:
    """An injected call while masked is latched as pending (not delivered,
    not counted as held); unmask delivers it once. An injected kick while
    the queue is masked goes straight through."""
    slot, fds = rig.add()
    rig.engine.set_masked(slot, True)
    rig.engine.inject(slot, Link.CALL)
    rig.engine.inject(slot, Link.CALL)
    rig.engine.inject(slot, Link.KICK)
    assert drain(fds.call_dst) == 0
    assert drain(fds.kick_dst) == 1
    call = rig.engine.queue(slot).call
    assert call.pending and call.injected == 2 and call.held == 0
    rig.engine.set_masked(slot, False)
    assert drain(fds.call_dst) == 1


def test_snapshots_are_consistent_under_load(rig: Rig) -> None:
    """1,000 snapshots taken while the engine runs flat out: two queues'
    kick links form a ring (x -> y -> x), so the C loop relays continuously
    with no Python in the way, and a Python writer hammers a third, masked
    queue. Each snapshot is consistent in itself (notifications >= reads;
    delivered == reads + signals exactly on a ring link, as the seqlock
    never shows a half-done relay; held == reads and nothing delivered on
    the masked link) and counters never go backwards. After the ring is
    broken, conservation: every count written into x and y was either read
    by the engine or is still there, and every call written was counted."""
    x, y = rig.efd(), rig.efd()
    a = rig.engine.add_queue(x, y)
    b = rig.engine.add_queue(y, x)  # the adds' signals set the ring going
    m, fm = rig.add(masked=True)
    bad: list[object] = []
    last = {a: (0, 0, 0), b: (0, 0, 0)}
    with Hammer(lambda: fm.call_src) as hammer:
        for _ in range(1000):
            snap = rig.engine.snapshot()
            for slot in (a, b):
                k = snap.queues[slot].kick
                if not (
                    k.notifications >= k.reads and k.delivered == k.reads + k.signals + k.injected
                ):
                    bad.append(k)
                now = (k.notifications, k.reads, k.delivered)
                if any(n < p for n, p in zip(now, last[slot], strict=True)):
                    bad.append(("backwards", last[slot], now))
                last[slot] = now
            call = snap.queues[m].call
            if not (
                call.notifications >= call.reads
                and call.held == call.reads
                and call.delivered == 0
                and call.masked
                and call.pending
            ):
                bad.append(call)
    assert not bad, bad[:3]
    assert last[a][1] > 1000, "the ring should have been relaying all along"
    rig.engine.set_fd(a, Link.KICK, End.SRC, -1)  # break the ring
    rig.barrier()
    snap = rig.engine.snapshot()
    ka, kb = snap.queues[a].kick, snap.queues[b].kick
    written = ka.delivered + kb.delivered  # into y and x respectively
    assert written == ka.notifications + kb.notifications + drain(x) + drain(y)
    assert snap.queues[m].call.notifications == hammer.written


def test_snapshots_from_two_threads_are_consistent() -> None:
    """Two threads taking snapshots at once (say the UI and the control
    socket) each get self-consistent queues. Regression: both used to share
    one copy buffer, so one thread's copy could overwrite a queue while the
    other was converting it. 3,000 slots make each copy long enough to
    overlap, and a ring of two kick links (x -> y -> x) keeps the engine
    relaying; every copy of a ring link must satisfy delivered == reads +
    signals. (A race detector: with the shared buffer it fails in most runs,
    not all; it never fails on a correct engine.)"""
    engine = Engine(max_queues=3100)
    engine.start()
    x, y = eventfd(), eventfd()
    try:
        dummies = [engine.add_queue() for _ in range(3000)]
        for slot in dummies:
            engine.remove_queue(slot)  # keeps the high-water mark: copies stay long
        ring = [engine.add_queue(x, y), engine.add_queue(y, x)]
        stop = threading.Event()
        torn: list[object] = []

        def reader() -> None:
            while not stop.is_set():
                snap = engine.snapshot()
                for slot in ring:
                    kick = snap.queues[slot].kick
                    if kick.delivered != kick.reads + kick.signals:
                        torn.append(kick)

        threads = [threading.Thread(target=reader) for _ in range(2)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline and not torn:
            stop.wait(0.1)
        stop.set()
        for t in threads:
            t.join()
        assert not torn, torn[:3]
        assert engine.queue(ring[0]).kick.reads > 0
    finally:
        engine.stop()
        os.close(x)
        os.close(y)
