"""Fixtures of the libvirt source tests: a real libvirtd, and one lab domain per module.

``libvirtd`` (package): libvirtd and virtlogd started on their default sockets
(tests.support.libvirt), stopped by pid when this folder's tests are done (only
those started here), so the rest of the suite never sees a libvirt host. The
tests skip, saying why, only when libvirtd truly cannot run here
(not installed, not root) or the libvirt Python bindings are missing.

``lab_domain`` (module): qemu-storage-daemon (vhost-user-blk, 2 queues),
svqtui's interposer in front of it (a ``Runtime`` with ``devices:`` and the
libvirt source, qmp off, plus QMP process discovery of this domain's QEMU only), and a transient TCG
domain whose vhost-user disk connects to the interposer's listen socket, booted
once and shared by the module's tests (boot to first verified I/O is 5-15 s).
The listen socket is chmod 0777 and its directory 0755 so QEMU, running as
libvirt-qemu, may connect (the interposer has no owner/mode setting yet).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from svqtui.config import parse_config
from svqtui.lab.console import ConsoleLog, nth_io_ok
from svqtui.lab.guest_image import GuestImage
from svqtui.lab.storage import StorageDaemon
from svqtui.runtime import Runtime
from svqtui.sources import discovery
from svqtui.sources.discovery import DiscoveredVM
from svqtui.sources.libvirt.source import LibvirtSource
from svqtui.sources.qmp.settings import QMPConfig
from svqtui.sources.qmp.source import QMPSource
from svqtui.sources.registry import build_sources
from tests.support.libvirt import (
    URI,
    Daemons,
    LabFiles,
    LibvirtdUnavailable,
    create_domain,
    destroy_domain,
    lab_domain_xml,
    lab_files,
    libvirtd_running,
)
from tests.support.markers import LIBVIRT, QEMU, needs
from tests.support.wait import wait_until

BOOT_TIMEOUT_S = 120.0


@pytest.fixture(scope="package")
@needs(LIBVIRT)
def libvirtd() -> Iterator[Daemons]:
    """libvirtd (and virtlogd) answering at qemu:///system."""
    pytest.importorskip("libvirt", reason="libvirt Python bindings missing (scripts/test installs)")
    try:
        daemons = libvirtd_running()
    except LibvirtdUnavailable as err:
        pytest.skip(f"libvirtd cannot run here: {err}")
    try:
        yield daemons
    finally:
        daemons.stop()


@dataclass
class LabDomain:
    """The module's booted domain and what surrounds it."""

    name: str
    uuid: str
    dom: Any  # libvirt.virDomain, on ``conn``
    conn: Any  # a read-write connection of the test (not svqtui's)
    runtime: Runtime
    files: LabFiles
    console: ConsoleLog
    listen: Path  # the interposer's listen socket (the disk's socket in the XML)
    boot_s: float  # createXML to first verified I/O

    @property
    def source(self) -> LibvirtSource:
        return next(s for s in self.runtime.sources if isinstance(s, LibvirtSource))

    def wait_io(self, n: int = 1, timeout: float = 60.0) -> None:
        """``n`` more verified guest I/Os from now."""
        self.console.wait_for(
            nth_io_ok(n), timeout, f"{n} verified I/Os", since=self.console.mark()
        )


@pytest.fixture(scope="module")
@needs(QEMU, LIBVIRT)
def lab_domain(
    libvirtd: Daemons, guest_image: GuestImage, request: pytest.FixtureRequest
) -> Iterator[LabDomain]:
    import libvirt

    name = f"svq-lv-{request.module.__name__.rsplit('.', 1)[-1][-12:]}"
    workdir = Path(tempfile.mkdtemp(prefix="svq-lv-", dir="/tmp"))  # short socket paths
    workdir.chmod(0o755)  # libvirt-qemu must reach the files and the socket
    files = lab_files(guest_image, workdir)
    listen = workdir / "vu.sock"
    qsd = StorageDaemon(workdir / "disk.img", workdir / "qsd.sock", num_queues=2)
    config = parse_config(
        f"""
demo: {{enabled: false}}
devices:
  - {{name: vu0, listen: {listen}, backend: {qsd.socket}}}
qmp: {{discover: false}}
libvirt: {{enabled: true, uri: "{URI}", qmp: false, poll: 0.5}}
"""
    )
    destroy_domain(name)  # a leftover of an interrupted run
    conn = libvirt.open(URI)

    # QMP's process discovery, limited to this domain's QEMU: the machine may run
    # other QEMUs whose QMP monitors this test must not touch
    def scan(exclude_pid: int | None) -> list[DiscoveredVM]:
        return [vm for vm in discovery.scan(exclude_pid) if vm.name == name]

    qmp = QMPSource(QMPConfig(discover=True), rediscover_s=1.0, scan=scan)
    runtime = Runtime(config, sources=[*build_sources(config), qmp])
    try:
        with qsd, runtime:
            wait_until(listen.exists, 10, what=f"the interposer listening at {listen}")
            listen.chmod(0o777)
            t0 = time.monotonic()
            dom = create_domain(conn, lab_domain_xml(name, files, listen), name)
            try:
                console = ConsoleLog(files.serial_log)
                console.wait_for(nth_io_ok(1), BOOT_TIMEOUT_S, "the first verified I/O")
                yield LabDomain(
                    name=name,
                    uuid=dom.UUIDString(),
                    dom=dom,
                    conn=conn,
                    runtime=runtime,
                    files=files,
                    console=console,
                    listen=listen,
                    boot_s=time.monotonic() - t0,
                )
            finally:
                destroy_domain(name)
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            conn.close()
        shutil.rmtree(workdir, ignore_errors=True)
