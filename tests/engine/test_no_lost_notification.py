"""Rule 1 under fire: a writer hammers a source while the link's fds change.

Each test runs a Python writer thread that signals a source as fast as it can
while the main thread changes fds 10,000 times (1,000 remove/add cycles).
set_fd and friends return only once the engine thread has applied the change,
and applying it writes the signal, so "the new destination is signalled" is
checked with a non-consuming select() right after the call returns: no sleep,
no timing assumption. A lost signal would show up as an unreadable new
destination in at least one of the thousands of iterations, because a relayed
write landing in the gap between apply and check is far from guaranteed.
"""

from __future__ import annotations

from svqtui.engine import End, Link
from tests.support.engine import Hammer, Rig, drain, readable

SWITCHES = 10_000


def test_call_destination_switches_under_load(rig: Rig) -> None:
    """A device hammers the call source while the front-end's call fd changes
    10,000 times (set_fd CALL DST, cycling over four fds). After every switch
    the new destination is signalled; after the writer stops and the last
    set_fd returns, the final destination is readable; and every write is
    accounted for: notifications == writes, delivered == reads + signals, and
    the counts drained from all destinations add up to delivered."""
    slot, fds = rig.add()
    dsts = [fds.call_dst, rig.efd(), rig.efd(), rig.efd()]
    rig.engine.reset(slot)
    received = 0
    unsignalled = []
    with Hammer(lambda: fds.call_src) as hammer:
        for i in range(SWITCHES):
            new = dsts[(i + 1) % len(dsts)]
            received += drain(new)  # not the destination now: no one writes it
            rig.engine.set_fd(slot, Link.CALL, End.DST, new)
            if not readable(new):
                unsignalled.append(i)
    final = dsts[SWITCHES % len(dsts)]
    assert not unsignalled, f"new call fd not signalled after switches {unsignalled[:10]}"
    assert readable(final), "the final destination must be signalled after the last write"
    rig.barrier()
    received += sum(drain(fd) for fd in dsts)
    call = rig.engine.queue(slot).call
    assert call.dst == final
    assert hammer.written > 0
    assert call.notifications == hammer.written
    assert call.signals == SWITCHES
    assert call.delivered == call.reads + call.signals
    assert received == call.delivered
    assert call.healthy


def test_kick_destination_switches_under_load(rig: Rig) -> None:
    """Same as the call case on the kick link (shadow start/stop replaces the
    fd the back-end polls): every switch signals the new kick destination."""
    slot, fds = rig.add()
    dsts = [fds.kick_dst, rig.efd(), rig.efd()]
    unsignalled = []
    with Hammer(lambda: fds.kick_src) as hammer:
        for i in range(SWITCHES):
            new = dsts[(i + 1) % len(dsts)]
            drain(new)
            rig.engine.set_fd(slot, Link.KICK, End.DST, new)
            if not readable(new):
                unsignalled.append(i)
    assert not unsignalled, f"new kick fd not signalled after switches {unsignalled[:10]}"
    rig.barrier()
    kick = rig.engine.queue(slot).kick
    assert kick.notifications == hammer.written
    assert readable(dsts[SWITCHES % len(dsts)])


def test_source_switches_under_load(rig: Rig) -> None:
    """A guest hammers whichever kick fd is current while the front-end
    replaces it 10,000 times (set_fd KICK SRC, cycling over four fds). Writes
    that land in a source after the engine stopped watching it are exactly
    what the signal-once compensates for. Checked: every write is either read
    by the engine (notifications) or still sitting in a source it no longer
    watches; every switch wrote its signal (delivered == reads + signals,
    all of it drained from the destination); and after the writer stops, a
    final switch to an empty source still signals the destination."""
    slot, fds = rig.add()
    srcs = [fds.kick_src, rig.efd(), rig.efd(), rig.efd()]
    current = [0]
    rig.engine.reset(slot)
    received = 0
    with Hammer(lambda: srcs[current[0]]) as hammer:
        for i in range(SWITCHES):
            nxt = (i + 1) % len(srcs)
            current[0] = nxt
            rig.engine.set_fd(slot, Link.KICK, End.SRC, srcs[nxt])
            if i % 64 == 0:
                received += drain(fds.kick_dst)  # keep the counter low
    rig.barrier()
    received += drain(fds.kick_dst)
    kick = rig.engine.queue(slot).kick
    assert kick.src == srcs[SWITCHES % len(srcs)]
    unwatched = [fd for fd in srcs if fd != kick.src]
    assert not readable(kick.src), "the watched source must have been drained"
    assert kick.notifications + sum(drain(fd) for fd in unwatched) == hammer.written
    assert kick.signals == SWITCHES
    assert kick.delivered == kick.reads + kick.signals
    assert received == kick.delivered
    assert kick.healthy, "every source, old or new, must have been watchable again"
    # The writer has stopped and the engine is idle: a last switch to an empty
    # source must still signal the destination.
    last = unwatched[0]
    rig.engine.set_fd(slot, Link.KICK, End.SRC, last)
    assert readable(fds.kick_dst)


def test_handback_and_readd_under_load(rig: Rig) -> None:
    """Shadow stop/start cycles (remove_queue with handback, then add_queue on
    the same fds) while the device hammers the call source: after every
    hand-back the front-end's call fd is signalled, after every add the
    back-end's kick fd is signalled, and no slot or watch leaks."""
    slot, fds = rig.add()
    failures = []
    with Hammer(lambda: fds.call_src):
        for i in range(1_000):
            drain(fds.call_dst)
            rig.engine.remove_queue(slot, handback=True)
            if not readable(fds.call_dst):
                failures.append(("handback call", i))
            if drain(fds.kick_src) != 1:
                failures.append(("handback kick", i))
            drain(fds.kick_dst)
            drain(fds.call_dst)
            slot = rig.engine.add_queue(fds.kick_src, fds.kick_dst, fds.call_src, fds.call_dst)
            if not readable(fds.kick_dst) or not readable(fds.call_dst):
                failures.append(("add", i))
    assert not failures, failures[:10]
    rig.barrier()
    q = rig.engine.queue(slot)
    assert q.error is None
    assert len(rig.engine.snapshot().queues) == 2  # this one and the barrier's
