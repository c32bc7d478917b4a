"""Shadow mode through the interposer: exact counts, switching under I/O,
call fd changes while shadowed, operator masking and injection."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from svqtui.engine import Link
from svqtui.engine.errors import EngineFull
from svqtui.model import MaskState
from svqtui.sources.errors import ActionUnsupported
from svqtui.sources.vhost_user.codec import FrontendRequest, ProtocolFeature, pack_vring_file
from svqtui.sources.vhost_user.errors import NotConnected
from svqtui.sources.vhost_user.fdident import eventfd_id
from tests.support.qsd import StorageDaemon
from tests.support.vhost_user_frontend import (
    BLOCK,
    SECTOR,
    VIRTIO_BLK_T_IN,
    VIRTIO_BLK_T_OUT,
    WANTED_PROTOCOL,
    VhostUserFrontend,
    pattern,
)
from tests.support.vhost_user_rig import Context, InterposerRig
from tests.support.wait import wait_until

R = FrontendRequest
SECTORS = BLOCK // SECTOR  # sectors per 4 KiB block


def verified_io(fe: VhostUserFrontend, qi: int, blocks: range, generation: int) -> int:
    """Write then read back every block of ``blocks`` on queue ``qi``; return
    the number of requests completed."""
    for block in blocks:
        fe.write_block(qi, block, pattern(block, generation))
    for block in blocks:
        assert fe.read_block(qi, block) == pattern(block, generation), f"block {block}"
    return 2 * len(blocks)


def test_shadow_from_connect_counts_every_kick_and_call(shadow_rig: InterposerRig) -> None:
    """With shadow on from connect, the engine's kick count equals the kicks
    the front-end sent, and its call count equals the back-end's completions
    plus its one spurious call per SET_VRING_CALL (init and start)."""
    fe = shadow_rig.frontend().init().start()
    done = [verified_io(fe, 0, range(0, 20), 1), verified_io(fe, 1, range(20, 32), 1)]
    for qi in (0, 1):

        def exact(qi: int = qi) -> bool:
            q = shadow_rig.queue(qi)
            return q.kicks == fe.queues[qi].kicks_sent and q.calls == done[qi] + 2

        wait_until(exact, what=f"exact counts on queue {qi}")
        q = shadow_rig.queue(qi)
        assert q.shadow and q.mask is MaskState.UNMASKED
        # the engine counts every completion the back-end signalled, but writes
        # the front-end's eventfd once per wake-up: calls the back-end signalled
        # back to back arrive as one (verified_io waited for each batch's call)
        assert 1 <= fe.queues[qi].calls_received <= done[qi] + 2
        assert q.kick_fd == (
            f"eventfd-id {eventfd_id(fe.queues[qi].kick)} -> svqtui eventfd-id "
            + q.kick_fd.rsplit(" ", 1)[-1]
        )
    assert shadow_rig.device().shadow


@pytest.mark.parametrize(
    ("reply_ack", "event_idx"),
    [(True, False), (False, True)],
    ids=["reply-ack", "no-reply-ack+event-idx"],
)
def test_shadow_toggled_50_times_under_io_loses_nothing(
    rig: InterposerRig, reply_ack: bool, event_idx: bool
) -> None:
    """Two I/O threads write and verify blocks (queue 0 one request at a time,
    queue 1 eight at a time), waiting for completions on calls only, while
    shadow mode is switched 50 times after I/O progress and 50 times back to
    back; no request waits in vain (no lost kick or call), every block reads
    back, and the back-end never sees an eventfd with two readers. Without
    REPLY_ACK the switch is confirmed by a GET_FEATURES round trip; with
    EVENT_IDX kicks and calls are suppressed as a Linux guest does."""
    protocol = WANTED_PROTOCOL if reply_ack else WANTED_PROTOCOL & ~(1 << ProtocolFeature.REPLY_ACK)
    fe = rig.frontend(protocol=protocol, event_idx=event_idx).init().start()
    assert fe.event_idx == event_idx
    stop = threading.Event()
    ops = [0, 0]
    errors: list[BaseException] = []

    def io(qi: int, depth: int) -> None:
        generation = 0
        try:
            while not stop.is_set():
                generation += 1
                base = 64 * qi + 8 * (generation % 8)
                blocks = range(base, base + 8)
                for start in range(0, 8, depth):
                    batch = blocks[start : start + depth]
                    for block in batch:
                        fe.submit(qi, VIRTIO_BLK_T_OUT, block * SECTORS, pattern(block, generation))
                    fe.kick(qi)
                    fe.complete(qi, len(batch))
                    for block in batch:
                        fe.submit(qi, VIRTIO_BLK_T_IN, block * SECTORS)
                    fe.kick(qi)
                    for req, data in fe.complete(qi, len(batch)):
                        assert data == pattern(req.sector // SECTORS, generation)
                    ops[qi] += 2 * len(batch)
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=io, args=(0, 1)), threading.Thread(target=io, args=(1, 8))]
    for t in threads:
        t.start()
    try:
        for toggle in range(100):
            before = list(ops)
            if toggle < 50:
                wait_until(
                    lambda b=before: errors or (ops[0] > b[0] and ops[1] > b[1]),
                    what="I/O progress on both queues",
                )
            assert not errors, errors
            rig.source.set_shadow(rig.key(), toggle % 2 == 0)
        before = list(ops)
        wait_until(lambda: errors or (ops[0] > before[0] and ops[1] > before[1]), what="more I/O")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not errors, errors
    assert not rig.device().shadow and rig.context.engine.queue_count == 0
    assert min(ops) >= 50
    assert rig.device().connected


def test_call_fd_change_while_shadowed_moves_the_engine_destination(
    rig: InterposerRig,
) -> None:
    """A device restart while shadowed (GET_VRING_BASE, then new call fds
    sent with need_reply, new kick fds): the front-end gets the back-end's
    acks, the engine signals the new guest notifiers, the back-end keeps
    svqtui's eventfds, and I/O works on the new fds."""
    fe = rig.frontend().init().start()
    rig.source.set_shadow(rig.key(), True)
    verified_io(fe, 0, range(4), 1)
    engine_call = rig.queue(0).call_fd
    assert engine_call is not None and "-> svqtui" in engine_call
    fe.stop()
    fe.renew_notifiers()  # a restart brings fresh guest notifiers and kick fds
    fe.start().sync()
    view = rig.queue(0)
    assert view.call_fd is not None
    assert view.call_fd.startswith(f"eventfd-id {eventfd_id(fe.queues[0].call)} -> svqtui")
    assert view.call_fd.split("->")[1] == engine_call.split("->")[1]
    assert fe.read_block(0, 2) == pattern(2, 1)
    verified_io(fe, 1, range(8, 12), 2)


def test_operator_mask_latches_pending_and_unmask_delivers_exactly_once(
    rig: InterposerRig,
) -> None:
    """Masking a shadowed queue holds calls (PENDING once one arrived, none
    reaches the guest notifier); unmasking delivers exactly one call."""
    fe = rig.frontend().init().start()
    rig.source.set_shadow(rig.key(), True)
    verified_io(fe, 0, range(2), 1)
    while fe.drain_call(0):
        pass
    rig.source.set_masked(rig.key(), 0, True)
    assert rig.queue(0).mask is MaskState.MASKED
    for block in range(3):
        fe.submit(0, VIRTIO_BLK_T_IN, block * SECTORS)
    fe.kick(0)
    wait_until(lambda: fe.used_idx(fe.queues[0]) == 7, what="the back-end completing 3 requests")
    wait_until(lambda: rig.queue(0).mask is MaskState.PENDING, what="the queue to show PENDING")
    assert rig.queue(0).held >= 1
    assert fe.drain_call(0) == 0  # nothing reached the guest
    rig.source.set_masked(rig.key(), 0, False)
    assert fe.wait_call(0) == 1
    assert fe.drain_call(0) == 0
    assert rig.queue(0).mask is MaskState.UNMASKED
    assert len(fe.reap(0)) == 3


def test_masking_and_injection_need_shadow_mode(rig: InterposerRig) -> None:
    """In pass mode masking and injection are refused with one clear line;
    in shadow mode an injected call reaches the guest notifier once."""
    fe = rig.frontend().init().start()
    with pytest.raises(ActionUnsupported, match="masking needs shadow mode"):
        rig.source.set_masked(rig.key(), 0, True)
    with pytest.raises(ActionUnsupported, match="needs queue 0 in shadow mode"):
        rig.source.inject(rig.key(), 0, Link.CALL)
    rig.source.set_shadow(rig.key(), True)
    while fe.drain_call(1):
        pass
    rig.source.inject(rig.key(), 1, Link.CALL)
    assert fe.wait_call(1) == 1
    assert rig.queue(1).injected_calls == 1
    with pytest.raises(NotConnected, match="QEMU is not connected"):
        rig.source.set_masked(rig.key(1), 0, True)


def test_shadow_off_returns_the_front_ends_fds_and_the_engine_is_idle(
    rig: InterposerRig,
) -> None:
    """After shadow off the back-end holds QEMU's own eventfds again: the
    engine has no queue of the device and relays nothing while I/O goes on."""
    fe = rig.frontend().init().start()
    rig.source.set_shadow(rig.key(), True)
    verified_io(fe, 0, range(4), 1)
    rig.source.set_shadow(rig.key(), False)
    relays = rig.context.engine.health().relays
    verified_io(fe, 0, range(4, 12), 2)
    assert rig.context.engine.queue_count == 0
    assert rig.context.engine.health().relays == relays
    assert all(q.kick_fd is not None and "svqtui" not in q.kick_fd for q in rig.device().queues)
    assert any("shadow mode off" in e.text for e in rig.context.events(rig.key()))


def test_a_full_engine_refuses_shadow_mode_without_harming_the_device(
    qsd: StorageDaemon, sock_dir: Path
) -> None:
    """With one engine slot for two queues, shadow on fails with EngineFull and
    the device stays in pass mode; shadow from connect relays the queue that
    fits and leaves the other in pass mode with its reason shown; I/O works
    on both queues throughout."""
    context = Context(max_queues=1)
    rig = InterposerRig(context, sock_dir, qsd.sockets)
    try:
        fe = rig.ready_frontend().start()
        with pytest.raises(EngineFull):
            rig.source.set_shadow(rig.key(), True)
        assert not rig.device().shadow and context.engine.queue_count == 0
        verified_io(fe, 0, range(2), 1)
        verified_io(fe, 1, range(2), 1)
        rig.source.set_shadow(rig.key(1), True)  # applies when blk1 connects
        fe1 = rig.ready_frontend(1).start()
        verified_io(fe1, 0, range(2), 2)
        verified_io(fe1, 1, range(2), 2)
        q0, q1 = rig.device(1).queues
        assert q0.shadow and not q1.shadow
        assert q1.error is not None and "not shadowed" in q1.error
        assert any("cannot relay" in e.text for e in context.events(rig.key(1), "error"))
    finally:
        rig.close()
        context.close()


def test_a_call_fd_that_is_not_an_eventfd_is_never_given_to_the_engine(
    shadow_rig: InterposerRig,
) -> None:
    """If QEMU passes a pipe as a call fd while shadowed, it goes to the
    back-end unchanged (pass mode for that link), the queue shows why, and
    no engine link ever reads or writes anything but eventfds."""
    fe = shadow_rig.frontend().init().start()
    read_end, write_end = os.pipe()
    try:
        fe.request(R.SET_VRING_CALL, pack_vring_file(1, False), [write_end], need_reply=True)
        q1 = shadow_rig.queue(1)
        assert q1.error == "call fd is not an eventfd: not relayed"
        assert q1.call_fd == "not an eventfd"
        queues = shadow_rig.context.engine.snapshot().queues.values()
        assert sorted(c.call.dst >= 0 for c in queues) == [False, True]  # queue 1 lets go
        for counters in queues:
            for link in (counters.kick, counters.call):
                for fd in (link.src, link.dst):
                    if fd >= 0:
                        assert os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
        verified_io(fe, 0, range(2), 1)
    finally:
        os.close(read_end)
        os.close(write_end)


def test_unmask_racing_shadow_off_never_strands_a_held_call(rig: InterposerRig) -> None:
    """The reviewers' race: with a call held by the operator's mask, an unmask
    and a shadow stop are fired from two threads at once, 30 times. Whatever
    order the I/O loop applies them in, the held completion reaches the
    guest notifier and the back-end ends up on QEMU's own call fd."""
    fe = rig.ready_frontend().start()
    for round_ in range(30):
        rig.source.set_shadow(rig.key(), True)
        while fe.drain_call(0):
            pass
        rig.source.set_masked(rig.key(), 0, True)
        fe.submit(0, VIRTIO_BLK_T_IN, round_ * SECTORS)
        fe.kick(0)
        wait_until(lambda: rig.queue(0).mask is MaskState.PENDING, what="the completion to be held")
        barrier = threading.Barrier(2)
        refused: list[BaseException] = []

        def unmask(
            barrier: threading.Barrier = barrier, refused: list[BaseException] = refused
        ) -> None:
            barrier.wait()
            try:
                rig.source.set_masked(rig.key(), 0, False)
            except ActionUnsupported as err:  # shadow was already off
                refused.append(err)

        racer = threading.Thread(target=unmask)
        racer.start()
        barrier.wait()
        rig.source.set_shadow(rig.key(), False)
        racer.join(10)
        assert fe.wait_call(0) >= 1, f"round {round_}: the held call was lost"
        assert len(fe.reap(0)) == 1
        q = rig.queue(0)
        assert not q.shadow and q.call_fd is not None and "svqtui" not in q.call_fd
        assert q.mask is MaskState.UNMASKED
    assert rig.context.engine.queue_count == 0
