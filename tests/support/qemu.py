"""Guestless QEMUs (and qemu-storage-daemon) with a QMP socket for tests, always stopped.

``QemuLab`` is a per-test launcher over the lab's process classes:
``lab.qemu(spec)`` starts qemu-system-x86_64 (TCG, no guest: paused at -S or
sitting in firmware) as a ``svqtui.lab.process.ManagedProcess`` and waits for
its QMP socket; ``lab.storage_daemon(...)`` starts a
``svqtui.lab.storage.StorageDaemon``; ``lab.close()`` (the fixture finalizer)
stops every process it started (the lab classes' atexit hook kills leftovers
if a test run is interrupted). ``QemuSpec`` builds the command line; two
specs with the same devices make a migration pair (``incoming=``).

For a booted guest, use the lab's ``QemuVM`` through the fixtures of
tests.support.guest; the QMP tests' ``qmp_watch`` fixture
(tests/sources/qmp/conftest.py) attaches a ``QMPSource`` to any QMP socket.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from svqtui.lab.process import ManagedProcess, find_program
from svqtui.lab.qemu_vm import QEMU_BINARY, QEMU_PACKAGE
from svqtui.lab.storage import StorageDaemon
from svqtui.unix_socket import check_path

START_TIMEOUT_S = 30.0


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def virtio_blk_net(disk_id: str = "blk0", net_id: str = "net0") -> list[str]:
    """A virtio-blk disk (null-co, no file) and a virtio-net NIC (user netdev)."""
    return [
        "-blockdev",
        f"driver=null-co,node-name={disk_id}-node,size={16 << 20}",
        "-device",
        f"virtio-blk-pci,drive={disk_id}-node,id={disk_id}",
        "-netdev",
        f"user,id={net_id}-nd",
        "-device",
        f"virtio-net-pci,netdev={net_id}-nd,id={net_id}",
    ]


def vhost_user_blk(sock: Path, dev_id: str = "vub0", num_queues: int = 2) -> list[str]:
    """A vhost-user-blk device on ``sock`` (the spec needs shared_memory=True)."""
    return [
        "-chardev",
        f"socket,id={dev_id}-chr,path={sock}",
        "-device",
        f"vhost-user-blk-pci,chardev={dev_id}-chr,num-queues={num_queues},id={dev_id}",
    ]


@dataclass
class QemuSpec:
    """A guestless QEMU command line with a QMP socket."""

    qmp: Path
    name: str = "vm"
    devices: Sequence[str] = ()
    memory_mb: int = 64
    shared_memory: bool = False  # memfd backend, share=on: needed by vhost-user
    paused: bool = True  # -S: vCPUs never run
    incoming: str | None = None  # e.g. "tcp:127.0.0.1:PORT" for a migration target
    qmp_style: str = "qmp"  # "qmp" (-qmp unix:...), "mon" (-chardev + -mon) or "none"
    extra: Sequence[str] = field(default_factory=list)

    def argv(self, binary: str = QEMU_BINARY) -> list[str]:
        machine = "q35,accel=tcg"
        args = [binary, "-name", f"guest={self.name},debug-threads=on", "-nodefaults"]
        args += ["-display", "none", "-m", f"{self.memory_mb}M"]
        if self.shared_memory:
            machine += ",memory-backend=mem"
            args += ["-object", f"memory-backend-memfd,id=mem,size={self.memory_mb}M,share=on"]
        args += ["-machine", machine]
        if self.qmp_style == "none":
            pass  # no monitor at all: discovery lists it as unreachable
        elif self.qmp_style == "mon":
            args += ["-chardev", f"socket,id=qmp0,path={self.qmp},server=on,wait=off"]
            args += ["-mon", "chardev=qmp0,mode=control"]
        else:
            args += ["-qmp", f"unix:{self.qmp},server=on,wait=off"]
        if self.paused:
            args.append("-S")
        if self.incoming:
            args += ["-incoming", self.incoming]
        return [*args, *self.devices, *self.extra]


class QemuLab:
    """Starts QEMUs and storage daemons for one test; ``close()`` stops them all."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: list[ManagedProcess | StorageDaemon] = []

    def path(self, name: str) -> Path:
        """A socket path in the test's directory (``SocketPathTooLong`` if it cannot be)."""
        p = self.dir / name
        check_path(p, "test")
        return p

    def qemu(self, spec: QemuSpec) -> ManagedProcess:
        """Start QEMU for ``spec`` and wait for its QMP socket (if it has one)."""
        with contextlib.suppress(FileNotFoundError):
            spec.qmp.unlink()
        binary = find_program(QEMU_BINARY, QEMU_PACKAGE)
        proc = ManagedProcess(f"qemu {spec.name}", spec.argv(binary), self.dir / f"{spec.name}.log")
        self.procs.append(proc)
        proc.start()
        if spec.qmp_style != "none":
            proc.wait_for_path(spec.qmp, START_TIMEOUT_S, socket=True)
        return proc

    def storage_daemon(self, sock: Path, num_queues: int = 2, size_mb: int = 16) -> StorageDaemon:
        """qemu-storage-daemon exporting a fresh image as vhost-user-blk on ``sock``."""
        image = self.dir / f"{sock.stem}.img"
        image.unlink(missing_ok=True)
        daemon = StorageDaemon(image, sock, num_queues=num_queues, size_mb=size_mb)
        self.procs.append(daemon)
        daemon.start()
        return daemon

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
