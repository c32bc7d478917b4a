"""The QMP source against a real QEMU 7.2 (TCG, no guest): devices, queues,
vhost-user wiring, the join with an interposer row, and the batch JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from svqtui.config import Config
from svqtui.engine import Link
from svqtui.model import DeviceRole, DeviceView, ShadowVia, SourceKind, VMView
from svqtui.monitor import join_views
from svqtui.outputs.json_doc import snapshot_document
from svqtui.runtime import Runtime
from svqtui.sources.demo.settings import DemoConfig
from svqtui.sources.errors import ActionUnsupported, UnknownDevice
from svqtui.sources.qmp.devices import NOTE_COUNTS, NOTE_MASK, NOTE_RING_VHOST, SOURCE_STATUS
from svqtui.sources.qmp.settings import QMPConfig, QMPSocket
from tests.support.qemu import QemuLab, QemuSpec, vhost_user_blk, virtio_blk_net
from tests.support.qmp import WatchFn, connected_vm, device
from tests.support.wait import wait_until


def test_virtio_blk_and_net_are_listed_with_their_queues(lab: QemuLab, qmp_watch: WatchFn) -> None:
    """A QEMU's virtio-blk and virtio-net appear with their kinds, every queue,
    QEMU's own ring indices for the plain virtio disk, no notification counts
    (QMP cannot count them) and the VM's pid, CPU and RSS."""
    qmp = lab.path("vm.qmp")
    proc = lab.qemu(QemuSpec(qmp=qmp, name="plain", devices=virtio_blk_net()))
    source = qmp_watch(qmp)

    def ready() -> VMView | None:
        row = connected_vm(source, "plain")
        if row is None:
            return None
        blk = device(row, "blk0")
        polled = all(q.ring_source == SOURCE_STATUS for q in blk.queues)
        return row if polled and row.cpu_percent is not None else None

    row = wait_until(ready, what="the VM with polled queues", describe=source.collect)
    assert row.pid == proc.pid and row.rss_bytes and row.rss_bytes > 0
    assert row.source == SourceKind.QMP and row.label == "qmp"
    assert row.status.startswith("prelaunch")
    blk, net = device(row, "blk0"), device(row, "net0")
    assert (blk.kind, net.kind) == ("virtio-blk", "virtio-net")
    assert blk.key == "qmp:plain/blk0" and blk.qom_path == "/machine/peripheral/blk0/virtio-backend"
    assert len(blk.queues) == 1 and len(net.queues) == 3  # rx, tx, control
    q = blk.queues[0]
    assert (q.avail_idx, q.used_idx, q.kicks, q.calls, q.mask) == (0, 0, None, None, None)
    assert blk.shadow_via is ShadowVia.NONE and blk.shadow_note == "not a vhost device"
    assert NOTE_COUNTS in blk.notes and NOTE_MASK in blk.notes
    # virtio-net may be run by vhost: no ring command goes to it (none is safe
    # on a ring vhost runs), and its row says so.
    assert all(q.avail_idx is None and q.ring_source is None for q in net.queues)
    assert NOTE_RING_VHOST in net.notes
    assert net.vhost_started is False and net.socket_path is None


def test_vhost_user_blk_shows_vhost_state_and_socket_path(lab: QemuLab, qmp_watch: WatchFn) -> None:
    """A vhost-user-blk device served by qemu-storage-daemon shows its kind, its
    chardev's socket path (what the interposer's listen is compared with), its
    vhost state (not started without a guest), and why QMP cannot shadow, mask
    or inject on it (each refused with a clear reason)."""
    sock, qmp = lab.path("vub.sock"), lab.path("vm.qmp")
    lab.storage_daemon(sock, num_queues=2)
    spec = QemuSpec(qmp=qmp, name="vhost", shared_memory=True, devices=vhost_user_blk(sock))
    lab.qemu(spec)
    source = qmp_watch(qmp)
    row = wait_until(
        lambda: connected_vm(source, "vhost"), what="the vhost VM", describe=source.collect
    )
    vub = device(row, "vub0")
    assert vub.kind == "vhost-user-blk"
    assert vub.socket_path == str(sock)
    assert vub.vhost_started is False and vub.log_enabled is None
    assert len(vub.queues) == 2
    assert vub.shadow_via is ShadowVia.NONE
    assert "interposer" in vub.shadow_note and "vhost-user socket" in vub.shadow_note
    assert any("vhost-dev" in n for n in vub.notes)
    assert vub.real and vub.status == "not started (no guest driver yet)"
    # Stock QEMU: no shadow toggle, no masking, no injection through QMP.
    with pytest.raises(ActionUnsupported, match="interposer on this device's vhost-user socket"):
        source.set_shadow(vub.key, True)
    with pytest.raises(ActionUnsupported, match="cannot mask"):
        source.set_masked(vub.key, 0, True)
    with pytest.raises(ActionUnsupported, match="cannot send a kick or call"):
        source.inject(vub.key, 0, Link.KICK)
    source.reset(None)  # no counters: a no-op, not an error
    with pytest.raises(UnknownDevice):
        source.set_shadow("qmp:vhost/nope", True)


def test_qmp_device_joins_the_interposer_row_by_socket_path(
    lab: QemuLab, qmp_watch: WatchFn
) -> None:
    """The monitor's join puts an interposed device (listen == the QEMU chardev's
    path) under the QMP VM: one row, the interposer's key and counters, QMP's
    kind and vhost fields."""
    sock, qmp = lab.path("vub.sock"), lab.path("vm.qmp")
    lab.storage_daemon(sock)
    lab.qemu(QemuSpec(qmp=qmp, name="joined", shared_memory=True, devices=vhost_user_blk(sock)))
    source = qmp_watch(qmp)
    row = wait_until(lambda: connected_vm(source, "joined"), what="the VM", describe=source.collect)
    interposed = DeviceView(
        key="vu:disk",
        name="disk",
        kind="vhost-user",
        source=SourceKind.VHOST_USER,
        shadow_via=ShadowVia.ENGINE,
        socket_path=str(sock),
        role=DeviceRole.COUNTS,
    )
    other = VMView(key="vu", name="interposer", source=SourceKind.VHOST_USER, devices=(interposed,))
    joined = join_views([row, other])
    qmp_vm = next(v for v in joined if v.source == SourceKind.QMP)
    dev = device(qmp_vm, "vub0")
    assert dev.key == "vu:disk" and dev.kind == "vhost-user-blk"
    assert dev.shadow_via is ShadowVia.ENGINE and dev.vhost_started is False
    assert not any(v.source == SourceKind.VHOST_USER and v.devices for v in joined)


def test_batch_json_of_a_runtime_includes_the_qmp_vm(lab: QemuLab, tmp_path: Path) -> None:
    """The --once --json data (the JSON document of a Runtime built from a config
    with one QMP socket) holds the VM, its devices and their queues."""
    qmp = lab.path("vm.qmp")
    lab.qemu(QemuSpec(qmp=qmp, name="batch", devices=virtio_blk_net()))
    config = Config(
        control_socket=str(tmp_path / "control.sock"),
        sections={
            "demo": DemoConfig(enabled=False),
            "qmp": QMPConfig(sockets=(QMPSocket(str(qmp)),), discover=False, poll_s=0.2),
        },
    )
    with Runtime(config) as runtime:

        def batch() -> dict[str, object] | None:
            data = snapshot_document(runtime.monitor.refresh())
            vms = [v for v in data["vms"] if v["name"] == "batch" and v["connected"]]
            if vms and {d["name"] for d in vms[0]["devices"]} == {"blk0", "net0"}:
                return vms[0]
            return None

        vm = wait_until(batch, what="the VM in the JSON snapshot")
    devices = {d["name"]: d for d in vm["devices"]}  # type: ignore[index,union-attr]
    assert devices["net0"]["kind"] == "virtio-net" and len(devices["net0"]["queues"]) == 3
    assert devices["blk0"]["source"] == "qmp" and devices["blk0"]["queues"][0]["kicks"] is None
    assert vm["source"] == "qmp"  # type: ignore[index]
