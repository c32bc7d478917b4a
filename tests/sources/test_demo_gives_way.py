"""``demo: enabled: auto`` gives way to real VMs: on a host where QMP discovery
(or libvirt) finds a QEMU, the runtime stops the demo for good, with one line,
and a reload does not bring it back; a forced demo stays.

QMP discovery connects to every QMP socket it finds, and a QEMU monitor
serves one client at a time, so the discovery scan here is limited to the
test's own QEMU (the real ``discovery.scan``, filtered by pid): other tests'
QEMUs are not this test's to take.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.config import Config
from svqtui.model import Snapshot, SourceKind
from svqtui.runtime import Runtime
from svqtui.sources import discovery
from svqtui.sources.demo.settings import DemoConfig
from svqtui.sources.discovery import DiscoveredVM
from svqtui.sources.libvirt.settings import LibvirtConfig
from svqtui.sources.qmp.settings import QMPConfig
from svqtui.sources.qmp.source import QMPSource
from tests.support.qemu import QemuLab, QemuSpec
from tests.support.wait import wait_until


@pytest.fixture
def qemus(sock_dir: Path) -> Iterator[QemuLab]:
    lab = QemuLab(sock_dir)
    try:
        yield lab
    finally:
        lab.close()


def _runtime(demo: bool | None, pids: set[int]) -> Runtime:
    """A runtime built from config (demo as given, QMP discovery on, libvirt
    off) whose discovery sees only the pids in ``pids`` (a set the test may
    add to)."""
    config = Config(
        refresh_s=0.1,
        sections={
            "demo": DemoConfig(enabled=demo, seed=3),
            "qmp": QMPConfig(discover=True, poll_s=0.2),
            "libvirt": LibvirtConfig(enabled=False),
        },
    )
    runtime = Runtime(config)
    (qmp,) = [s for s in runtime.sources if isinstance(s, QMPSource)]

    def scan(exclude: int | None) -> list[DiscoveredVM]:
        return [vm for vm in discovery.scan(exclude) if vm.pid in pids]

    qmp._scan = scan
    return runtime


def _kinds(snap: Snapshot | None) -> set[str]:
    return {vm.source for vm in snap.vms} if snap is not None else set()


def _names(snap: Snapshot | None) -> set[str]:
    return {vm.name for vm in snap.vms} if snap is not None else set()


@pytest.mark.qemu
def test_an_auto_demo_stops_once_discovery_finds_a_real_qemu(qemus: QemuLab) -> None:
    """The demo runs until discovery finds the test's QEMU; then its VMs leave
    the snapshot, its threads stop, its engine slots go, one log line says
    why, and a reload with the same config keeps it off."""
    pids: set[int] = set()
    runtime = _runtime(None, pids)
    with runtime:
        wait_until(lambda: SourceKind.DEMO in _kinds(runtime.monitor.latest), what="the demo")
        assert runtime.engine.snapshot().queues  # the demo's rings are in the engine
        qemu = qemus.qemu(QemuSpec(qmp=qemus.path("m.qmp"), name="real-vm", qmp_style="mon"))
        assert qemu.pid is not None
        pids.add(qemu.pid)
        snap = wait_until(
            lambda: (
                (s := runtime.monitor.latest) is not None
                and "real-vm" in _names(s)
                and SourceKind.DEMO not in _kinds(s)
                and s
            ),
            what="the real VM without the demo",
            describe=lambda: _names(runtime.monitor.latest),
        )
        assert _kinds(snap) == {SourceKind.QMP}
        assert not [s for s in runtime.sources if s.kind == SourceKind.DEMO]
        assert not runtime.engine.snapshot().queues  # the demo's slots were removed
        lines = [e.text for e in runtime.log.recent(100)[1]]
        assert any(
            line.startswith("demo: off: qmp found VM 'real-vm' (demo: enabled: auto gives way")
            for line in lines
        ), lines
        runtime.reload(runtime.config)
        later = runtime.monitor.wait_newer(runtime.monitor.seq + 2, timeout=5.0)
        assert SourceKind.DEMO not in _kinds(later)


@pytest.mark.qemu
def test_a_forced_demo_stays_beside_a_real_qemu(qemus: QemuLab) -> None:
    """demo: enabled: true keeps the demo running next to discovered VMs."""
    qemu = qemus.qemu(QemuSpec(qmp=qemus.path("m.qmp"), name="real-vm", qmp_style="mon"))
    assert qemu.pid is not None
    runtime = _runtime(True, {qemu.pid})
    with runtime:
        wait_until(
            lambda: "real-vm" in _names(runtime.monitor.latest),
            what="the real VM",
            describe=lambda: _names(runtime.monitor.latest),
        )
        later = runtime.monitor.wait_newer(runtime.monitor.seq + 3, timeout=5.0)
        assert _kinds(later) == {SourceKind.DEMO, SourceKind.QMP}
        assert not any(e.text.startswith("demo: off") for e in runtime.log.recent(100)[1])


def test_an_auto_demo_stays_when_nothing_else_is_found() -> None:
    """With nothing discovered, the auto demo keeps running."""
    runtime = _runtime(None, set())
    with runtime:
        wait_until(lambda: SourceKind.DEMO in _kinds(runtime.monitor.latest), what="the demo")
        later = runtime.monitor.wait_newer(runtime.monitor.seq + 3, timeout=5.0)
        assert _kinds(later) == {SourceKind.DEMO}
        assert [s.kind for s in runtime.sources if s.kind == SourceKind.DEMO] == ["demo"]
