"""The live ring of an interposed device read through svqtui.virtio: the
published memory table (pread on kept fds) and layout decode the test
front-end's real virtio-blk requests and event indices."""

from __future__ import annotations

import time
from pathlib import Path

from svqtui.lab.storage import StorageDaemon as LabStorageDaemon
from svqtui.sources.vhost_user.rings import RingAccess
from svqtui.virtio.inspect import inspect_ring
from svqtui.virtio.requests import BlkRequest, DeviceKind
from svqtui.virtio.split_ring import RingFeatures
from tests.support.guest import BootGuest
from tests.support.vhost_user_frontend import VIRTIO_BLK_T_OUT, pattern
from tests.support.vhost_user_rig import Context, InterposerRig
from tests.support.wait import wait_until


def access(rig: InterposerRig, queue: int) -> RingAccess:
    """The device's ring access (the source does not expose it yet: private lookup)."""
    device = rig.source._device(rig.key())
    got = device.ring_access(queue)
    assert got is not None
    return got


def test_a_request_not_yet_kicked_is_the_oldest_in_flight(rig: InterposerRig) -> None:
    """A WRITE put on the avail ring without a kick is in flight and decoded
    as WRITE with its sector and 4096 bytes; after the kick and completion
    nothing is in flight and the indices agree with the queue view."""
    fe = rig.ready_frontend().start()
    fe.write_block(0, 3, pattern(3, 0))
    fe.submit(0, VIRTIO_BLK_T_OUT, 64, pattern(8, 0))
    wait_until(lambda: rig.queue(0).in_flight == 1, what="the request in the ring view")
    ring = access(rig, 0)
    report = inspect_ring(ring.memory, ring.layout, ring.features, DeviceKind.BLK)
    assert report.state.avail_idx == 2 and report.state.used_idx == 1
    assert len(report.inflight.heads) == 1
    assert isinstance(report.oldest, BlkRequest)
    assert report.oldest.describe() == "WRITE sector 64, 4096 bytes"
    fe.kick(0)
    fe.complete(0, 1)
    after = inspect_ring(ring.memory, ring.layout, ring.features, DeviceKind.BLK)
    assert after.inflight.heads == () and after.oldest is None
    assert (after.state.avail_idx, after.state.used_idx) == (2, 2)


def test_event_indices_of_a_live_ring(rig: InterposerRig) -> None:
    """With EVENT_IDX negotiated, used_event is what the front-end last armed
    (its used index when it last waited for a call; when a completion beat
    the arming, the front-end reaped it without arming again) and
    avail_event is where qemu-storage-daemon asks to be kicked next (the
    avail index it has read up to)."""
    fe = rig.ready_frontend(event_idx=True).start()
    assert fe.event_idx
    for block in range(5):
        fe.write_block(1, block, pattern(block, 1))
    ring = access(rig, 1)
    report = inspect_ring(ring.memory, ring.layout, ring.features, DeviceKind.BLK)
    state = report.state
    assert state.event_idx and state.error is None
    assert state.avail_idx == state.used_idx == 5
    assert state.used_event == fe.queues[1].armed_used_event
    assert state.avail_event == 5


def test_a_real_guests_ring_decodes_through_the_interposer(
    context: Context, sock_dir: Path, storage_daemon: LabStorageDaemon, boot_guest: BootGuest
) -> None:
    """A real TCG guest's virtio-blk driver on QEMU's real memory table
    (memfd regions, real offsets): the ring state reads without error with
    EVENT_IDX and INDIRECT_DESC as QEMU negotiates them, and sampling the
    ring while the guest does I/O finds its in-flight READ/WRITE requests
    with sectors inside the 64 MiB disk; no sample raises."""
    rig = InterposerRig(context, sock_dir, [str(storage_daemon.socket)])
    vm = None
    try:
        vm = boot_guest(Path(rig.devices[0].listen))
        ring = access(rig, 0)
        features = RingFeatures.from_bits(ring.features)
        assert features.event_idx and not features.packed
        assert rig.queue(0).error is None
        decoded: list[BlkRequest] = []
        deadline = time.monotonic() + 30
        while len(decoded) < 20 and time.monotonic() < deadline:
            report = inspect_ring(ring.memory, ring.layout, ring.features, DeviceKind.BLK)
            assert report.state.error is None and report.inflight.error is None
            oldest = report.oldest
            if isinstance(oldest, BlkRequest) and oldest.kind in ("READ", "WRITE"):
                decoded.append(oldest)
            time.sleep(0.001)
        assert len(decoded) >= 20, f"only {len(decoded)} in-flight READ/WRITE seen in 30 s"
        disk_sectors = storage_daemon.size_mb * 1024 * 1024 // 512
        plausible = [
            r
            for r in decoded
            if r.sector is not None and r.sector + r.nbytes // 512 <= disk_sectors
        ]
        assert len(plausible) >= len(decoded) - 1, decoded  # one torn sample at most
        assert all(r.nbytes % 512 == 0 and r.nbytes > 0 for r in plausible), plausible
    finally:
        if vm is not None:
            vm.stop()
        rig.close()
