"""Live migration seen through QMP: a local migration between two real QEMUs is
shown from start to completion, and its events are logged."""

from __future__ import annotations

from pathlib import Path

from qemu.qmp.legacy import QEMUMonitorProtocol

from svqtui.eventlog import EventLog
from svqtui.model import MigrationView
from tests.support.qemu import QemuLab, QemuSpec, free_tcp_port, virtio_blk_net
from tests.support.qmp import TIMEOUT_S, WatchFn, connected_vm, log_lines, vm
from tests.support.wait import wait_until

# About 600 KB to send (ROMs; the rest is zero pages): at 250 KB/s the
# migration stays active for seconds, many times the 0.2 s poll interval.
BANDWIDTH = 250_000


def _driver(path: Path) -> QEMUMonitorProtocol:
    """A second QMP client for the test itself (svqtui holds the VM's other socket)."""
    mon = QEMUMonitorProtocol(str(path))
    mon.connect()
    return mon


def test_local_live_migration_is_shown_from_start_to_completion(
    lab: QemuLab, qmp_watch: WatchFn, event_log: EventLog
) -> None:
    """Migrating a VM to a second QEMU: the source VM's row shows the migration
    active (with pass and byte counts) and then completed with its downtime, and
    the event log has a line for each."""
    port = free_tcp_port()
    src_qmp, drv_qmp, dst_qmp = lab.path("src.qmp"), lab.path("drv.qmp"), lab.path("dst.qmp")
    lab.qemu(
        QemuSpec(
            qmp=src_qmp,
            name="src",
            devices=virtio_blk_net(),
            extra=["-qmp", f"unix:{drv_qmp},server=on,wait=off"],
        )
    )
    lab.qemu(QemuSpec(qmp=dst_qmp, name="dst", devices=virtio_blk_net(), incoming="defer"))
    source = qmp_watch(src_qmp)
    first = wait_until(lambda: connected_vm(source, "src"), TIMEOUT_S, what="the source VM")
    assert first.migration is None

    dst = _driver(dst_qmp)
    try:
        dst.cmd("migrate-incoming", uri=f"tcp:127.0.0.1:{port}")
    finally:
        dst.close()
    drv = _driver(drv_qmp)
    try:
        # As libvirt does: MIGRATION events only come with this capability on.
        drv.cmd("migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}])
        drv.cmd("migrate-set-parameters", **{"max-bandwidth": BANDWIDTH})
        drv.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
    finally:
        drv.close()

    seen: list[str] = []
    active_view: MigrationView | None = None

    def finished() -> MigrationView | None:
        nonlocal active_view
        row = vm(source, "src")
        mig = row.migration if row is not None else None
        if mig is not None:
            if not seen or seen[-1] != mig.status:
                seen.append(mig.status)
            if mig.status == "active" and mig.transferred is not None:
                active_view = mig
            if mig.status in ("completed", "failed"):
                return mig
        return None

    done = wait_until(
        finished, TIMEOUT_S, interval=0.05, what="the migration to finish", describe=lambda: seen
    )
    assert done.status == "completed", seen
    assert "active" in seen and seen.index("active") < seen.index("completed"), seen
    assert active_view is not None and active_view.total and active_view.total > 0
    assert done.transferred and done.transferred > 0 and done.remaining == 0
    assert done.passes is not None and done.passes >= 1 and done.downtime_ms is not None
    lines = log_lines(event_log)
    assert "info: qmp src: migration active" in lines, lines
    assert "info: qmp src: migration completed" in lines, lines
    assert lines.index("info: qmp src: migration active") < lines.index(
        "info: qmp src: migration completed"
    )
