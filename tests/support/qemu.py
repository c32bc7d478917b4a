"""Start guestless QEMUs (and qemu-storage-daemon) with a QMP socket for tests,
and always kill them.

``QemuLab`` is a per-test launcher: ``lab.qemu(spec)`` starts
qemu-system-x86_64 (TCG, no guest: paused at -S or sitting in firmware) and
waits for its QMP socket; ``lab.storage_daemon(...)`` starts a vhost-user-blk
export; ``lab.close()`` (the fixture finalizer) kills every process it
started, in its own process group, and an atexit hook kills leftovers if a
test run is interrupted. ``QemuSpec`` builds the command line; two specs with
the same devices make a migration pair (``incoming=``).

Hook for tests with a booted guest (moving ring indices, vhost started):
``QemuSpec(kernel=..., initrd=..., append=...)`` boots a kernel instead of
sitting in firmware; the QMP tests' ``qmp_watch`` fixture
(tests/sources/qmp/conftest.py) attaches a ``QMPSource`` to any QMP socket,
e.g. the lab guest's (svqtui.lab).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import stat
import subprocess
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

QEMU = "qemu-system-x86_64"
QSD = "qemu-storage-daemon"
START_TIMEOUT_S = 30.0
UNIX_PATH_MAX = 107

_LIVE: weakref.WeakSet[Proc] = weakref.WeakSet()


def have_qemu() -> bool:
    return shutil.which(QEMU) is not None and shutil.which(QSD) is not None


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
    # Hook for a booted guest (another engineer's image): boot this kernel.
    kernel: Path | None = None
    initrd: Path | None = None
    append: str | None = None
    extra: Sequence[str] = field(default_factory=list)

    def argv(self) -> list[str]:
        machine = "q35,accel=tcg"
        args = [QEMU, "-name", f"guest={self.name},debug-threads=on", "-nodefaults"]
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
        if self.kernel is not None:
            args += ["-kernel", str(self.kernel)]
            if self.initrd is not None:
                args += ["-initrd", str(self.initrd)]
            if self.append is not None:
                args += ["-append", self.append]
        return [*args, *self.devices, *self.extra]


class Proc:
    """A child in its own process group, killed by ``kill()`` (idempotent)."""

    def __init__(self, name: str, argv: Sequence[str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        with log.open("wb") as out:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                start_new_session=True,
            )
        _LIVE.add(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace").strip()
        except OSError:
            return ""

    def wait_socket(self, path: Path, timeout: float = START_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(path.stat().st_mode):
                    return
            if not self.alive:
                raise RuntimeError(f"{self.name} exited before creating {path}: {self.output()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not create {path} within {timeout:g}s")
            time.sleep(0.02)

    def kill(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)
        _LIVE.discard(self)


class QemuLab:
    """Starts QEMUs and storage daemons for one test; ``close()`` kills them all."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.procs: list[Proc] = []

    def path(self, name: str) -> Path:
        p = self.dir / name
        if len(os.fsencode(p)) > UNIX_PATH_MAX:
            raise RuntimeError(f"socket path too long for a unix socket: {p}")
        return p

    def qemu(self, spec: QemuSpec) -> Proc:
        with contextlib.suppress(FileNotFoundError):
            spec.qmp.unlink()
        proc = Proc(f"qemu {spec.name}", spec.argv(), self.dir / f"{spec.name}.log")
        self.procs.append(proc)
        if spec.qmp_style != "none":
            proc.wait_socket(spec.qmp)
        return proc

    def storage_daemon(self, sock: Path, num_queues: int = 2, size_mb: int = 16) -> Proc:
        image = self.dir / f"{sock.stem}.img"
        with image.open("wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        argv = [
            QSD,
            "--blockdev",
            f"driver=file,node-name=file0,filename={image}",
            "--blockdev",
            "driver=raw,node-name=disk0,file=file0",
            "--export",
            f"type=vhost-user-blk,id=exp0,addr.type=unix,addr.path={sock},"
            f"node-name=disk0,writable=on,num-queues={num_queues}",
        ]
        proc = Proc(f"qsd {sock.name}", argv, self.dir / f"{sock.stem}.qsd.log")
        self.procs.append(proc)
        proc.wait_socket(sock)
        return proc

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()
        self.procs.clear()


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.kill()
