"""Pytest fixtures for a real booted lab guest doing verified I/O on a vhost-user-blk disk.

The root tests/conftest.py provides them to every test (marked ``qemu``):

- ``guest_image`` (session): the kernel + initramfs, built once into the user's
  cache (~/.cache/svqtui/guest/) and reused while its inputs are unchanged.
- ``storage_daemon``: qemu-storage-daemon exporting a fresh 64 MiB raw image
  (``.image``) as vhost-user-blk with 2 queues at ``.socket`` (in tmp_path).
- ``boot_guest(socket, ...)``: boots a TCG guest whose vhost-user-blk disk
  connects to ``socket`` (qemu-storage-daemon's, or an interposer's listen
  socket in front of it), by default waits for its first verified I/O, and
  returns the ``QemuVM`` (``vm.console`` has every SVQ line, ``vm.spec.qmp_socket``
  is its QMP socket). Every guest booted is stopped after the test, whatever
  happened. Request ``boot_guest`` after your back-end/interposer fixtures so
  that pytest stops the guests before those.
- ``booted_guest``: a guest on ``storage_daemon`` directly, already doing I/O.

With ``cpus=1`` (the default) the guest's virtio-blk driver uses one request
queue (queue 0) even when the device offers 2; pass ``cpus=2`` to drive both
(iterations alternate between them; about half the iteration rate under TCG).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import psutil
import pytest

from svqtui.lab.guest_image import GuestImage, build_guest_image
from svqtui.lab.guest_init import GuestParams
from svqtui.lab.qemu_vm import QemuVM, VhostUserBlkDisk
from svqtui.lab.storage import StorageDaemon
from tests.support.markers import QEMU, needs

BOOT_TIMEOUT_S = 120.0  # boot to first verified I/O takes ~3 s here; generous for loaded CI


class BootGuest(Protocol):
    def __call__(
        self,
        socket: Path,
        *,
        params: GuestParams | None = None,
        name: str = "svq-guest",
        cpus: int = 1,
        num_queues: int = 2,
        reconnect_s: int = 0,
        wait_io: int = 1,
        timeout: float = BOOT_TIMEOUT_S,
    ) -> QemuVM: ...


@pytest.fixture(scope="session")
@needs(QEMU)
def guest_image() -> GuestImage:
    """The lab guest image, from the user's cache (built on first use)."""
    return build_guest_image()


@pytest.fixture
@needs(QEMU)
def storage_daemon(tmp_path: Path) -> Iterator[StorageDaemon]:
    """qemu-storage-daemon: a 64 MiB raw image exported as vhost-user-blk (2 queues)."""
    daemon = StorageDaemon(tmp_path / "disk.img", tmp_path / "qsd.sock")
    with daemon:
        yield daemon


@pytest.fixture
@needs(QEMU)
def boot_guest(guest_image: GuestImage, tmp_path: Path) -> Iterator[BootGuest]:
    """A function that boots lab guests on a vhost-user-blk socket; all stopped at teardown."""
    vms: list[QemuVM] = []

    def boot(
        socket: Path,
        *,
        params: GuestParams | None = None,
        name: str = "svq-guest",
        cpus: int = 1,
        num_queues: int = 2,
        reconnect_s: int = 0,
        wait_io: int = 1,
        timeout: float = BOOT_TIMEOUT_S,
    ) -> QemuVM:
        disk = VhostUserBlkDisk(socket, num_queues=num_queues, reconnect_s=reconnect_s)
        vm = QemuVM.for_guest(guest_image, tmp_path, (disk,), params, name=name, cpus=cpus)
        vms.append(vm)
        vm.start()
        if wait_io:
            vm.wait_io_ok(wait_io, timeout)
        return vm

    try:
        yield boot
    finally:
        for vm in vms:
            vm.stop()


@pytest.fixture
@needs(QEMU)
def booted_guest(storage_daemon: StorageDaemon, boot_guest: BootGuest) -> QemuVM:
    """A guest doing verified I/O on qemu-storage-daemon directly (no interposer)."""
    # boot_guest is requested after storage_daemon so its guests stop first
    return boot_guest(storage_daemon.socket)


def processes_mentioning(text: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose command line contains ``text`` (e.g. a
    tmp_path): to check that nothing a test started is left running."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if text in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
