"""Pass-mode forwarding between the test front-end and qemu-storage-daemon,
protocol feature hiding, the ring view, mask tracking and fd identities."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from svqtui.model import MaskState
from svqtui.sources.vhost_user.codec import ProtocolFeature
from svqtui.sources.vhost_user.device import claim_socket_path
from svqtui.sources.vhost_user.errors import ListenError
from svqtui.sources.vhost_user.fdident import eventfd_id
from tests.support.qsd import StorageDaemon
from tests.support.vhost_user_frontend import (
    VIRTIO_BLK_T_IN,
    WANTED_PROTOCOL,
    VhostUserFrontend,
    pattern,
)
from tests.support.vhost_user_rig import InterposerRig
from tests.support.wait import wait_until


def test_pass_mode_io_is_forwarded_and_verified(rig: InterposerRig) -> None:
    """Through the interposer in pass mode, writes on one queue read back on
    the other, the back-end got QEMU's own eventfds (the engine relays
    nothing) and the device shows as connected with both queues."""
    fe = rig.frontend().init().start()
    for block in range(16):
        fe.write_block(0, block, pattern(block, 1))
    for block in range(16):
        assert fe.read_block(1, block) == pattern(block, 1)
    dev = rig.device()
    assert dev.connected and dev.status == "connected" and not dev.shadow
    assert dev.socket_path == rig.devices[0].listen and dev.real
    assert [q.index for q in dev.queues] == [0, 1]
    for q in dev.queues:
        assert q.kicks is None and q.calls is None and not q.shadow
        assert q.kick_fd is not None and "svqtui" not in q.kick_fd
    assert rig.context.engine.queue_count == 0
    assert rig.context.engine.health().relays == 0


def test_protocol_features_that_bypass_eventfds_are_hidden(
    rig: InterposerRig, qsd: StorageDaemon
) -> None:
    """GET_PROTOCOL_FEATURES through the interposer equals the back-end's
    answer with HOST_NOTIFIER, INBAND_NOTIFICATIONS and INFLIGHT_SHMFD cleared,
    and the device notes say so."""
    direct = VhostUserFrontend(qsd.sockets[1]).connect()
    try:
        offered = direct.init().offered_protocol_features
    finally:
        direct.close()
    assert offered >> ProtocolFeature.HOST_NOTIFIER & 1  # qsd offers it
    fe = rig.frontend().init()
    hidden = (
        1 << ProtocolFeature.HOST_NOTIFIER
        | 1 << ProtocolFeature.INBAND_NOTIFICATIONS
        | 1 << ProtocolFeature.INFLIGHT_SHMFD
    )
    assert fe.offered_protocol_features == offered & ~hidden
    wait_until(
        lambda: any("HOST_NOTIFIER" in n for n in rig.device().notes), what="the hidden note"
    )
    assert rig.device().protocol_features == "MQ, REPLY_ACK, CONFIG"


def test_ring_view_shows_avail_used_and_in_flight(rig: InterposerRig) -> None:
    """The ring view reads avail.idx and used.idx from the front-end's memory:
    requests posted without a kick show as in flight, and after the kick they
    complete; GET_VRING_BASE stops the view."""
    fe = rig.frontend().init()
    assert rig.queue(0).avail_idx is None  # no ring addresses yet
    fe.start()
    for block in range(5):
        fe.write_block(0, block, pattern(block, 7))
    q = rig.queue(0)
    assert (q.avail_idx, q.used_idx, q.in_flight, q.ring_source) == (5, 5, 0, "ring")
    for block in range(3):
        fe.submit(0, VIRTIO_BLK_T_IN, block * 8)
    q = rig.queue(0)
    assert (q.avail_idx, q.used_idx, q.in_flight) == (8, 5, 3)
    # the same collect inspected the ring: its state and the oldest request decoded
    assert q.ring is not None and (q.ring.avail_idx, q.ring.used_idx) == (8, 5)
    assert q.ring.event_idx == fe.event_idx and q.ring.error is None
    assert q.oldest_position == 5 and q.oldest_head is not None
    assert q.oldest is not None and q.oldest.describe() == "READ sector 0, 4096 bytes"
    fe.kick(0)
    fe.complete(0, 3)
    q = rig.queue(0)
    assert (q.avail_idx, q.used_idx, q.in_flight) == (8, 8, 0)
    assert q.oldest is None and q.oldest_head is None
    fe.stop()
    fe.sync()
    q = rig.queue(0)
    assert q.avail_idx is None and q.used_idx is None and q.ring_source is None
    assert q.ring is None  # a stopped ring is not inspected


def test_ring_view_follows_add_and_rem_mem_reg(rig: InterposerRig) -> None:
    """A front-end with CONFIGURE_MEM_SLOTS (as QEMU negotiates with
    qemu-storage-daemon) shares memory with ADD_MEM_REG: the ring view reads
    through it, and after REM_MEM_REG the indices are unknown."""
    protocol = WANTED_PROTOCOL | 1 << ProtocolFeature.CONFIGURE_MEM_SLOTS
    fe = rig.frontend(protocol=protocol).init()
    assert fe.protocol_features >> ProtocolFeature.CONFIGURE_MEM_SLOTS & 1
    fe.start()
    fe.write_block(0, 1, pattern(1, 1))
    assert fe.read_block(1, 1) == pattern(1, 1)
    assert (rig.queue(0).avail_idx, rig.queue(0).used_idx) == (1, 1)
    fe.remove_memory()  # the ring is still running: only the region is gone
    q = rig.queue(0)
    assert (q.avail_idx, q.used_idx, q.ring_source) == (None, None, None)


def test_mask_state_follows_qemus_masked_and_guest_notifiers(rig: InterposerRig) -> None:
    """After connect each queue's call fd is QEMU's masked notifier (MASKED,
    noted as not started); after the start's fresh guest notifier it is
    UNMASKED; the fd identities shown are the front-end's eventfd-ids."""
    fe = rig.frontend().init()
    dev = rig.device()
    assert [q.mask for q in dev.queues] == [MaskState.MASKED, MaskState.MASKED]
    assert "queue 0, 1: masked by QEMU (not started)" in dev.notes
    assert "guest vector masking happens inside QEMU for vhost-user" in dev.notes
    assert dev.queues[0].call_fd == f"eventfd-id {eventfd_id(fe.queues[0].masked)}"
    fe.start().sync()
    dev = rig.device()
    assert [q.mask for q in dev.queues] == [MaskState.UNMASKED, MaskState.UNMASKED]
    assert not any("masked by QEMU" in n for n in dev.notes)
    for view, q in zip(dev.queues, fe.queues, strict=True):
        assert view.call_fd == f"eventfd-id {eventfd_id(q.call)}"
        assert view.kick_fd == f"eventfd-id {eventfd_id(q.kick)}"


def test_a_second_front_end_is_refused_and_the_first_goes_on(rig: InterposerRig) -> None:
    """A second connection to a device's socket is closed at once, logged,
    and the first front-end's I/O is unaffected."""
    fe = rig.frontend().init().start()
    intruder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    intruder.settimeout(5)
    try:
        intruder.connect(rig.devices[0].listen)
        assert intruder.recv(1) == b""
    finally:
        intruder.close()
    fe.write_block(0, 3, pattern(3, 2))
    assert fe.read_block(1, 3) == pattern(3, 2)
    assert any("second front-end" in e.text for e in rig.context.events(rig.key(), "warning"))


def test_stale_socket_file_is_replaced_but_live_or_foreign_paths_are_refused(
    tmp_path: Path,
) -> None:
    """A socket file nobody listens on is removed; a socket with a listener or
    a regular file at the listen path is a clear ListenError."""
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()
    claim_socket_path(path)
    assert not os.path.exists(path)
    live = socket.socket(socket.AF_UNIX)
    live.bind(path)
    live.listen()
    try:
        with pytest.raises(ListenError, match="another process already listens"):
            claim_socket_path(path)
    finally:
        live.close()
    os.unlink(path)
    Path(path).write_text("precious")
    with pytest.raises(ListenError, match="is not a socket"):
        claim_socket_path(path)
    assert Path(path).read_text() == "precious"
