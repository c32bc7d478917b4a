"""Rule 3, the command ring: concurrent commanding threads cannot interleave badly.

Every change (mask, unmask, new fd, add, remove) is a command the engine
thread applies itself, one at a time, in submission order. These tests try to
provoke the reviewers' race from the seed thread: a guest masking/unmasking
while the front-end installs new call fds (one of them QEMU's "masked
notifier"), and an unmask racing a shadow stop (remove with hand-back).
"""

from __future__ import annotations

import contextlib
import threading

from svqtui.engine import End, Link
from svqtui.engine.errors import UnknownQueue
from tests.support.engine import Rig, drain, readable, signal
from tests.support.wait import wait_until

ROUNDS = 10_000


def test_mask_toggling_races_call_fd_switches(rig: Rig) -> None:
    """A guest thread masks/unmasks 10,000 times while a front-end thread sets
    a new call destination 10,000 times, cycling over three front-end fds and
    a "masked notifier" fd. After each of its set_fd calls the front-end
    thread reads the engine's call destination: it must always be the fd the
    front-end asked for last (an unmask never restores an older notifier).
    At the end the destination is the front-end's final fd (never the masked
    notifier); it was signalled since the last switch (nothing lost through
    the race); and after a final unmask a call from the device reaches it,
    once, and not the masked notifier."""
    slot, fds = rig.add()
    masked_notifier = rig.efd()
    cycle = [rig.efd(), masked_notifier, rig.efd(), fds.call_dst]
    plan = [cycle[i % len(cycle)] for i in range(ROUNDS)]
    assert plan[-1] != masked_notifier
    wrong: list[tuple[int, int, int]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def guest() -> None:
        try:
            start.wait()
            for i in range(ROUNDS):
                rig.engine.set_masked(slot, i % 2 == 0)
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    def front_end() -> None:
        try:
            start.wait()
            for i, fd in enumerate(plan):
                drain(fd)  # not the destination now: only the previous one is written
                rig.engine.set_fd(slot, Link.CALL, End.DST, fd)
                seen = rig.engine.queue(slot).call.dst
                if seen != fd:
                    wrong.append((i, fd, seen))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=guest), threading.Thread(target=front_end)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert not wrong, f"call destination was not the latest asked for: {wrong[:5]}"
    call = rig.engine.queue(slot).call
    assert call.dst == plan[-1] != masked_notifier
    assert call.masked is False  # the guest's last word was unmask (odd ROUNDS-1)
    assert call.healthy
    # The last set_fd signalled plan[-1] directly or latched it; the guest's
    # last unmask delivered it in the latter case. Either way it is readable.
    assert readable(plan[-1]), "the notification from the last switch was lost in the race"
    for fd in cycle:
        drain(fd)
    signal(fds.call_src)
    rig.barrier()
    assert drain(plan[-1]) == 1
    assert drain(masked_notifier) == 0


def test_unmask_races_handback(rig: Rig) -> None:
    """A pending call survives an unmask racing a shadow stop: a guest thread
    unmasks while the front-end removes the queue with hand-back, started
    together; whichever the engine applies first, the front-end's call fd
    ends up signalled (300 rounds, the queue re-added each time)."""
    go = threading.Barrier(2)
    done = threading.Barrier(2)
    state: dict[str, int] = {}
    errors: list[BaseException] = []
    lost: list[int] = []
    # 2 counts on the call fd: unmask delivered, then the hand-back signal;
    # 1 count: the queue was gone when the unmask came.
    outcomes = {"unmask first": 0, "remove first": 0}

    def guest() -> None:
        try:
            while True:
                go.wait()
                if state.get("stop"):
                    return
                # UnknownQueue: the remove won and the slot was already released
                with contextlib.suppress(UnknownQueue):
                    rig.engine.set_masked(state["slot"], False)
                done.wait()
        except BaseException as exc:
            errors.append(exc)
            go.abort()
            done.abort()

    fds = [rig.efd() for _ in range(4)]
    kick_src, kick_dst, call_src, call_dst = fds
    thread = threading.Thread(target=guest)
    thread.start()
    try:
        for i in range(300):
            slot = rig.engine.add_queue(*fds)
            drain(kick_dst)
            drain(call_dst)
            rig.engine.set_masked(slot, True)
            signal(call_src)
            wait_until(lambda s=slot: rig.engine.queue(s).call.pending, what="a pending call")
            assert drain(call_dst) == 0
            state["slot"] = slot
            go.wait()
            rig.engine.remove_queue(slot, handback=True)
            done.wait()
            value = drain(call_dst)
            if value == 0:
                lost.append(i)
            outcomes["unmask first" if value > 1 else "remove first"] += 1
            assert drain(kick_src) == 1
    finally:
        state["stop"] = 1
        if not errors:
            go.wait()
        thread.join()
    assert not errors, errors
    assert not lost, f"pending call lost in rounds {lost[:10]} ({outcomes})"


def test_commands_from_many_threads_apply_in_each_threads_order(rig: Rig) -> None:
    """Eight threads each drive their own queue through 500 destination
    changes; the engine serialises all of them, so each queue ends on the
    destination its thread asked for last, signalled, and healthy."""
    queues = [rig.add() for _ in range(8)]
    spare = {slot: [rig.efd(), rig.efd()] for slot, _ in queues}
    errors: list[BaseException] = []

    def drive(slot: int) -> None:
        try:
            for i in range(500):
                rig.engine.set_fd(slot, Link.CALL, End.DST, spare[slot][i % 2])
                rig.engine.set_masked(slot, i % 3 == 0)
            rig.engine.set_masked(slot, False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=drive, args=(slot,)) for slot, _ in queues]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for slot, _ in queues:
        call = rig.engine.queue(slot).call
        assert call.dst == spare[slot][1]
        assert not call.masked and not call.pending
        assert readable(spare[slot][1])
    health = rig.engine.health()
    assert health.backlog == 0 and health.alive
