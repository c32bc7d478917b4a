"""The live ring of an interposed device read through svqtui.virtio: the
published memory table (pread on kept fds) and layout decode the test
front-end's real virtio-blk requests and event indices."""

from __future__ import annotations

import os
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


def test_a_packed_ring_says_so_and_reads_no_split_indices() -> None:
    """With VIRTIO_F_RING_PACKED negotiated the queue reads nothing as if it were
    a split ring (no avail/used index, so no in-flight count and no stuck or
    diagnosis from garbage), and says plainly "packed ring: not decoded" in the
    JSON ``ring`` and in the detail; the same memory as a split ring is read."""
    from svqtui.config import StuckConfig
    from svqtui.engine import EngineSnapshot
    from svqtui.eventlog import EventLog
    from svqtui.model import QueueRow
    from svqtui.monitor import Monitor
    from svqtui.outputs.json_doc import snapshot_document
    from svqtui.sources.vhost_user.device import _queue_view
    from svqtui.sources.vhost_user.interposer import ConnectionSnapshot
    from svqtui.sources.vhost_user.rings import SplitRing
    from svqtui.sources.vhost_user.shadow import VringSnapshot
    from svqtui.virtio.guest_memory import RegionTable, keep_region
    from svqtui.virtio.split_ring import F_EVENT_IDX, F_RING_PACKED, PACKED_NOT_DECODED
    from svqtui.widgets.queue_detail import ring_lines
    from tests.support.fake_source import FakeSource

    base = 0x7F00_0000_0000
    fd = os.memfd_create("packed-ring")
    try:
        os.write(fd, bytes(range(1, 256)) * 64)  # nonzero everywhere: any read finds "indices"
        memory = RegionTable([keep_region(0x4000_0000, 0x4000, base, 0, fd)])
    finally:
        os.close(fd)
    ring = SplitRing(avail=base + 0x1000, used=base + 0x2000, desc=base, num=256)
    vring = VringSnapshot(0, None, None, False, False, None, ring, True, 0, 0, None)
    layout = ring.layout
    assert layout is not None
    views = {}
    for name, features in (("split", 1 << F_EVENT_IDX), ("packed", 1 << F_RING_PACKED)):
        snap = ConnectionSnapshot(False, (vring,), memory, features, None, ())
        report = inspect_ring(memory, layout, features, DeviceKind.BLK)
        views[name] = _queue_view(vring, snap, report, EngineSnapshot.empty())
    memory.release()
    split, packed = views["split"], views["packed"]
    assert split.avail_idx is not None and split.used_idx is not None
    assert (packed.avail_idx, packed.used_idx, packed.in_flight) == (None, None, None)
    assert packed.ring is not None and packed.ring.packed
    assert packed.ring.error == PACKED_NOT_DECODED and packed.oldest_head is None
    source = FakeSource()
    source.queue = packed
    monitor = Monitor([source], None, EventLog(), StuckConfig())
    doc = snapshot_document(monitor.refresh())["vms"][0]["devices"][0]["queues"][0]
    assert doc["ring"]["error"] == "packed ring: not decoded" and doc["ring"]["packed"]
    assert doc["in_flight"] is None
    lines = ring_lines(QueueRow(packed, "d", "vm", "dev"))
    assert lines[0].startswith("ring      packed, size 256")
    assert "packed ring: not decoded" in lines[1] and len(lines) == 2
