"""The QMP source on a booted guest whose vhost-user-blk disk is doing I/O.

The property that matters most here: watching a VM must never hurt it. In
QEMU 7.2, ``x-query-virtio-queue-status`` on a device whose vhost is running
sends VHOST_USER_GET_VRING_BASE, which stops that ring in the back-end
(measured with qemu-storage-daemon: the guest's disk I/O stops for good after
one such query); ``x-query-virtio-queue-element`` walks a long-freed chain
at QEMU's stale index and, about one lab start in twenty under load, marked
the device broken ("Desc next is 65535": the guest's queue stopped for
good). svqtui sends neither to such a device; this test polls fast, through
many detail rounds, and checks the guest's verified I/O keeps going and
QEMU's log stays clean.
"""

from __future__ import annotations

from svqtui.lab.qemu_vm import QemuVM
from svqtui.model import VMView
from svqtui.sources.qmp import Timing
from svqtui.sources.qmp.devices import DETAIL_EVERY, NOTE_RING_VHOST
from tests.support.qmp import WatchFn, device, rows, vm
from tests.support.wait import wait_until

FAST = Timing(poll_s=0.1, connect_timeout_s=5.0, command_timeout_s=10.0)
IO_TIMEOUT_S = 60.0


def test_polling_a_running_vhost_user_disk_never_stalls_the_guest(
    qmp_watch: WatchFn, booted_guest: QemuVM
) -> None:
    """While svqtui polls every 100 ms (many detail rounds), the guest keeps
    verifying I/O and QEMU reports no virtio error; the row shows vhost
    started, the vhost-dev fields, dirty logging off, and no ring indices
    (with the note saying why)."""
    source = qmp_watch(booted_guest.spec.qmp_socket, timing=FAST)

    def started() -> VMView | None:
        row = vm(source, "svq-guest")
        if row is None or not row.connected or not row.devices:
            return None
        return row if device(row, "vblk0").vhost_started else None

    first = wait_until(started, what="the running disk's ring", describe=lambda: rows(source))
    disk = device(first, "vblk0")
    assert disk.kind == "vhost-user-blk" and disk.vhost_started is True
    assert disk.status == "vhost started" and disk.log_enabled is False
    assert disk.features and "VIRTIO_F_VERSION_1" in disk.features
    assert disk.protocol_features and "VHOST_USER_PROTOCOL_F_MQ" in disk.protocol_features
    assert disk.socket_path == str(booted_guest.spec.disks[0].socket)
    assert NOTE_RING_VHOST in disk.notes
    assert all(q.avail_idx is None and q.ring_source is None for q in disk.queues)

    mark = booted_guest.console.mark()
    booted_guest.wait_io_ok(4 * DETAIL_EVERY, IO_TIMEOUT_S, since=mark)
    row = vm(source, "svq-guest")
    assert row is not None and row.connected and row.pid == booted_guest.pid
    qemu_log = booted_guest.spec.stderr_log.read_text(errors="replace")
    assert "Desc next" not in qemu_log and "virtio" not in qemu_log.lower(), qemu_log
