"""The libvirt source against a real libvirtd and a booted TCG domain.

One domain (tests/sources/libvirt/conftest.py ``lab_domain``) serves every
test here, in file order: the ``qmp: false`` tests (nothing may taint the
domain) come before the ``qmp: true`` test (whose taint lasts until the
domain stops), and the libvirtd restart comes last. Figures for the report
are printed (run with -s to see them).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest

from svqtui.model import LogEvent, ShadowVia, Snapshot, VMView
from svqtui.sources.base import SourceContext
from svqtui.sources.libvirt.passthrough import DomainMonitor
from svqtui.sources.libvirt.settings import LibvirtConfig
from svqtui.sources.libvirt.source import LibvirtSource
from svqtui.sources.libvirt.views import NOTE_QMP_OFF
from svqtui.sources.qmp.devices import CMD_ELEMENT, CMD_STATUS, CMD_VHOST, NOTE_RING_VHOST
from svqtui.sources.qmp.source import QMPSource
from tests.sources.libvirt.conftest import LabDomain
from tests.support.libvirt import URI, Daemons, restart_libvirtd
from tests.support.wait import wait_until

libvirt = pytest.importorskip("libvirt", reason="libvirt Python bindings missing")
pytestmark = [pytest.mark.qemu, pytest.mark.libvirt]


def _vm(snap: Snapshot | None, name: str) -> VMView | None:
    if snap is None:
        return None
    return next((vm for vm in snap.vms if vm.name == name and vm.source == "libvirt"), None)


def _fresh_vm(lab: LabDomain, pred: object = None, timeout: float = 30.0) -> VMView:
    monitor = lab.runtime.monitor

    def ready() -> VMView | None:
        vm = _vm(monitor.refresh_soon(wait=True), lab.name)
        if vm is not None and (pred is None or pred(vm)):  # type: ignore[operator]
            return vm
        return None

    return wait_until(ready, timeout, what=f"libvirt domain {lab.name} in the snapshot")


def _pid_file(name: str) -> int:
    with open(f"/run/libvirt/qemu/{name}.pid") as f:
        return int(f.read())


def _poll_figure(source: LibvirtSource) -> str:
    costs = sorted(source.poll_costs)
    per = max(source.polled_domains, 1)
    median = costs[len(costs) // 2] / per if costs else 0.0
    return (
        f"poll per domain: median {median:.2f} ms, max {costs[-1] / per if costs else 0:.2f} ms"
        f" over {len(costs)} polls"
    )


def _taints(lab: LabDomain) -> list[str]:
    return list(lab.dom.messages(libvirt.VIR_DOMAIN_MESSAGE_TAINTING))


def test_domain_listed_by_name_uuid_pid_with_both_devices(lab_domain: LabDomain) -> None:
    """The domain appears by its libvirt name and UUID, running, with the QEMU
    pid of libvirt's pid file, and both disks of its XML: the vhost-user-blk
    disk (with its socket path) and the plain virtio-blk disk."""
    vm = _fresh_vm(lab_domain, lambda v: v.connected and len(v.devices) == 2)
    assert vm.key == f"libvirt:{lab_domain.uuid}"
    assert vm.pid == _pid_file(lab_domain.name)
    assert vm.status.startswith("running")
    kinds = {d.name: d.kind for d in vm.devices}
    assert kinds == {"virtio-disk0": "vhost-user-blk", "virtio-disk1": "virtio-blk"}
    plain = next(d for d in vm.devices if d.name == "virtio-disk1")
    assert plain.qom_path == "/machine/peripheral/virtio-disk1/virtio-backend"
    assert any(str(lab_domain.files.plain_disk) in n for n in plain.notes)
    src = lab_domain.source
    print(
        f"\nFIGURE libvirt qmp off: boot to first I/O {lab_domain.boot_s:.1f} s,"
        f" start to domains listed {(src.first_listed_s or 0) * 1000:.0f} ms,"
        f" {_poll_figure(src)}"
    )


def test_one_vm_one_row_with_qmp_discovery(lab_domain: LabDomain) -> None:
    """QMP's process discovery finds the same QEMU (its monitor is an inherited
    fd); the snapshot still shows one row for that pid: libvirt's."""
    pid = _pid_file(lab_domain.name)
    qmp = next(s for s in lab_domain.runtime.sources if isinstance(s, QMPSource))
    wait_until(
        lambda: any(v.pid == pid for v in qmp.collect(lab_domain.runtime.engine.snapshot())),
        30,
        what="QMP discovery finding the domain's QEMU",
    )
    snap = lab_domain.runtime.monitor.refresh_soon(wait=True)
    assert snap is not None
    rows = [vm for vm in snap.vms if vm.pid == pid]
    assert [(vm.source, vm.name) for vm in rows] == [("libvirt", lab_domain.name)]


def test_vhost_user_disk_joined_with_the_interposer(lab_domain: LabDomain) -> None:
    """The vhost-user disk is one row: libvirt's name and kind, the
    interposer's key, shadow control and queues; the interposer's own row for
    the device is gone."""

    def joined(vm: VMView) -> bool:
        return any(d.name == "virtio-disk0" and d.source == "vhost-user" for d in vm.devices)

    vm = _fresh_vm(lab_domain, joined)
    disk = next(d for d in vm.devices if d.name == "virtio-disk0")
    assert disk.kind == "vhost-user-blk"
    assert disk.socket_path == str(lab_domain.listen)
    assert disk.shadow_via is ShadowVia.ENGINE
    assert len(disk.queues) == 2  # the XML's queues='2', as the interposer saw them
    snap = lab_domain.runtime.monitor.latest
    assert snap is not None
    rows = [d.key for v in snap.vms for d in v.devices]
    assert rows.count(disk.key) == 1
    assert not [v for v in snap.vms if v.source == "vhost-user"]


def test_shadow_toggled_on_the_joined_row_with_verified_io(lab_domain: LabDomain) -> None:
    """Shadow mode switched on and off through the joined row's key (the
    interposer's) while the guest's verified I/O goes on: no failure line,
    I/O continues in both modes, the row reports the mode, and in shadow mode
    the engine counts the guest's kicks under libvirt's device name."""
    vm = _fresh_vm(lab_domain, lambda v: any(d.source == "vhost-user" for d in v.devices))
    key = next(d.key for d in vm.devices if d.name == "virtio-disk0")
    runtime = lab_domain.runtime

    def kicks(vm: VMView) -> int:
        disk = next(d for d in vm.devices if d.key == key)
        return sum(q.kicks or 0 for q in disk.queues)

    for on in (True, False, True, False):
        runtime.set_shadow(key, on)
        vm = _fresh_vm(
            lab_domain, lambda v, on=on: any(d.key == key and d.shadow is on for d in v.devices)
        )
        before = kicks(vm)
        lab_domain.wait_io(3)
        if on:
            _fresh_vm(lab_domain, lambda v, n=before: kicks(v) > n)
    assert lab_domain.console.failures == []


def test_suspend_and_resume_arrive_as_events(lab_domain: LabDomain) -> None:
    """dom.suspend()/resume() reach svqtui's event log as libvirt lifecycle
    events within a second, and the row's state follows."""
    seen: dict[str, float] = {}
    arrived = threading.Condition()

    def listener(event: LogEvent) -> None:
        for word in ("suspended", "resumed"):
            if f"libvirt {lab_domain.name}: {word}" in event.text:
                with arrived:
                    seen.setdefault(word, time.monotonic())
                    arrived.notify_all()

    lab_domain.runtime.log.subscribe(listener)
    t0 = time.monotonic()
    lab_domain.dom.suspend()
    t1 = time.monotonic()
    wait_until(lambda: "suspended" in seen, 5, what="the suspended event")
    _fresh_vm(lab_domain, lambda v: v.status.startswith("paused"))
    t2 = time.monotonic()
    lab_domain.dom.resume()
    t3 = time.monotonic()
    wait_until(lambda: "resumed" in seen, 5, what="the resumed event")
    _fresh_vm(lab_domain, lambda v: v.status.startswith("running"))
    lab_domain.wait_io(2)
    assert seen["suspended"] - t0 < 1.0
    assert seen["resumed"] - t2 < 1.0
    print(
        f"\nFIGURE libvirt event latency: suspended {(seen['suspended'] - t0) * 1000:.1f} ms"
        f" after suspend() was called (the call took {(t1 - t0) * 1000:.1f} ms),"
        f" resumed {(seen['resumed'] - t2) * 1000:.1f} ms after resume()"
        f" (the call took {(t3 - t2) * 1000:.1f} ms)"
    )


def test_qmp_off_leaves_the_domain_untainted(lab_domain: LabDomain) -> None:
    """With qmp: false, after every test above, libvirt reports no taint on the
    domain; each device says what qmp: true would add and that it taints."""
    vm = _fresh_vm(lab_domain)
    assert _taints(lab_domain) == []
    assert "not tainted" in vm.status
    assert all(NOTE_QMP_OFF in d.notes for d in vm.devices if d.source == "libvirt")
    joined = next(d for d in vm.devices if d.name == "virtio-disk0")
    assert NOTE_QMP_OFF in joined.notes  # the describing view's notes travel with the join


def test_qmp_on_shows_vhost_state_and_the_taint(
    lab_domain: LabDomain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second libvirt source with qmp: true reads the plain disk's queue
    indices and the vhost-user disk's vhost state through libvirt, reports
    the domain's custom-monitor taint as libvirt does, never sends a ring
    command (x-query-virtio-queue-status stops a vhost ring,
    x-query-virtio-queue-element can break the device) to the vhost-user disk
    (recorded on the way to libvirt), and the guest's verified I/O goes on."""
    sent: list[tuple[str, dict[str, object]]] = []
    real_command = DomainMonitor.command

    def recording(self: DomainMonitor, execute: str, arguments: Any = None) -> Any:
        sent.append((execute, dict(arguments or {})))
        return real_command(self, execute, arguments)

    monkeypatch.setattr(DomainMonitor, "command", recording)
    rt = lab_domain.runtime
    source = LibvirtSource(LibvirtConfig(enabled=True, uri=URI, qmp=True, poll_s=0.5))
    source.start(SourceContext(rt.engine, rt.loop, rt.log))
    try:

        def polled() -> VMView | None:
            engine = rt.engine.snapshot()
            vm = next((v for v in source.collect(engine) if v.name == lab_domain.name), None)
            devices = {d.name: d for d in vm.devices} if vm else {}
            disk, plain = devices.get("virtio-disk0"), devices.get("virtio-disk1")
            if vm is None or disk is None or plain is None or not disk.vhost_started:
                return None
            return None if any(q.ring_source is None for q in plain.queues) else vm

        vm = wait_until(polled, 30, what="both disks polled through libvirt")
        assert source.first_listed_s is not None
        lab_domain.wait_io(3)
        disk = next(d for d in vm.devices if d.name == "virtio-disk0")
        assert all(q.used_idx is None and q.ring_source is None for q in disk.queues)
        assert NOTE_RING_VHOST in disk.notes
        taints = _taints(lab_domain)
        assert taints, "libvirt reports no taint after monitor commands"
        vm = wait_until(
            lambda: (r := polled()) and "tainted:" in r.status and r, 15, what="the taint shown"
        )
        assert "custom-monitor" in vm.status or "custom monitor" in vm.status
        lab_domain.wait_io(3)
        assert lab_domain.console.failures == []
        vhost_path = "/machine/peripheral/virtio-disk0/virtio-backend"
        to_vhost = {c for c, a in sent if a.get("path") == vhost_path}
        assert CMD_VHOST in to_vhost and not to_vhost & {CMD_STATUS, CMD_ELEMENT}, to_vhost
        assert any(c == CMD_STATUS for c, _ in sent)  # the plain disk's queues are read
        print(
            f"\nFIGURE libvirt qmp on: start to domains listed"
            f" {source.first_listed_s * 1000:.0f} ms,"
            f" {_poll_figure(source)} ({len(sent)} monitor commands); taint {taints}"
        )
    finally:
        source.stop()


def test_libvirtd_restart_is_a_reconnect(lab_domain: LabDomain, libvirtd: Daemons) -> None:
    """libvirtd stopped and started under a running svqtui: the source says it
    is reconnecting (not an error), reconnects (close callback), lists the
    still-running domain again, and its events work on the new connection."""
    source = lab_domain.source
    connects = source.connects
    restart_libvirtd(libvirtd)
    t0 = time.monotonic()
    wait_until(lambda: source.connects > connects, 30, what="the source reconnecting")
    vm = _fresh_vm(lab_domain, lambda v: v.connected and v.status.startswith("running"))
    relisted = time.monotonic() - t0
    assert vm.pid == _pid_file(lab_domain.name)
    assert source.status().connected
    logged = lab_domain.runtime.log.since(0)[1]
    assert [e for e in logged if e.level == "error"] == []
    assert any(e.text.startswith("libvirt: reconnecting") for e in logged)
    assert any(e.text.startswith("libvirt: reconnected") for e in logged)
    conn = libvirt.open(URI)  # the old test connection died with libvirtd
    try:
        dom = conn.lookupByName(lab_domain.name)
        mark = len(source.events)
        dom.suspend()
        wait_until(
            lambda: any("suspended" in e.text for e in list(source.events)[mark:]),
            5,
            what="an event on the new connection",
        )
        dom.resume()
    finally:
        conn.close()
    lab_domain.wait_io(2)
    print(f"\nFIGURE libvirt restart: domain relisted {relisted:.2f} s after libvirtd answered")
    assert os.path.exists(f"/run/libvirt/qemu/{lab_domain.name}.pid")
