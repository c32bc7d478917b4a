"""A QEMU (TCG) guest with vhost-user-blk disks (or vhost-user-net NICs), a QMP
socket and a serial log.

``VMSpec`` says what to run and renders QEMU's command line; ``QemuVM`` starts
it, waits for its QMP socket, follows its serial console (``console``, a
``ConsoleLog``) and stops it on exit of the ``with`` block, whatever happens.
``QemuVM.for_guest`` builds the usual lab VM from a ``GuestImage`` and
``GuestParams``.

vhost-user needs the guest RAM shared with the back-end, hence the memfd
memory backend with share=on. ``-name`` is the VM's name, which discovery shows.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from svqtui.lab.console import ConsoleLog, GuestLine, Predicate, nth_io_ok
from svqtui.lab.errors import LabProcessError
from svqtui.lab.guest_image import GuestImage
from svqtui.lab.guest_init import GuestParams
from svqtui.lab.process import ManagedProcess, StartStop, find_program
from svqtui.unix_socket import check_path

QEMU_BINARY = "qemu-system-x86_64"
QEMU_PACKAGE = "qemu-system-x86"
# quiet + the guest's own printk setting keep kernel messages off the console;
# panic=1 with -no-reboot turns a guest panic into a QEMU exit.
BASE_APPEND = "console=ttyS0 quiet panic=1"


@dataclass(frozen=True, slots=True)
class VhostUserBlkDisk:
    """A vhost-user-blk-pci device whose chardev connects to ``socket``."""

    socket: Path
    num_queues: int = 2
    reconnect_s: int = 0  # 0: the back-end must listen when QEMU starts


@dataclass(frozen=True, slots=True)
class VhostUserNetNic:
    """A virtio-net-pci NIC on a vhost-user netdev whose chardev connects to ``socket``.

    ``vectors=0`` (INTx, no MSI-X): QEMU 7.2 under TCG does not deliver a
    vhost-user-net device's MSI-X interrupts to the guest.
    """

    socket: Path
    queues: int = 2  # queue pairs (mq=on when more than one)
    mac: str = "52:54:00:12:34:56"
    reconnect_s: int = 0


@dataclass(frozen=True, slots=True)
class VMSpec:
    """What to run; files (QMP socket, serial log, QEMU's stderr) go to ``workdir``."""

    name: str
    kernel: Path
    initrd: Path
    workdir: Path
    disks: tuple[VhostUserBlkDisk, ...] = ()
    nics: tuple[VhostUserNetNic, ...] = ()
    append: str = ""  # after BASE_APPEND
    memory_mb: int = 256
    cpus: int = 1
    extra_args: tuple[str, ...] = ()

    @property
    def qmp_socket(self) -> Path:
        return self.workdir / f"{self.name}.qmp"

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"{self.name}.serial"

    @property
    def stderr_log(self) -> Path:
        return self.workdir / f"{self.name}.stderr"

    def argv(self, binary: str = QEMU_BINARY) -> list[str]:
        """QEMU's command line."""
        args = [
            binary,
            "-name",
            self.name,
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-no-reboot",
            "-object",
            f"memory-backend-memfd,id=mem,size={self.memory_mb}M,share=on",
            "-machine",
            "q35,accel=tcg,memory-backend=mem",
            "-m",
            f"{self.memory_mb}M",
            "-smp",
            str(self.cpus),
            "-chardev",
            f"file,id=serial0,path={self.serial_log}",
            "-serial",
            "chardev:serial0",
            "-qmp",
            f"unix:{self.qmp_socket},server=on,wait=off",
            "-kernel",
            str(self.kernel),
            "-initrd",
            str(self.initrd),
            "-append",
            f"{BASE_APPEND} {self.append}".strip(),
        ]
        for i, disk in enumerate(self.disks):
            chardev = f"socket,id=vhost{i},path={disk.socket}"
            if disk.reconnect_s:
                chardev += f",reconnect={disk.reconnect_s}"
            args += [
                "-chardev",
                chardev,
                "-device",
                f"vhost-user-blk-pci,id=vblk{i},chardev=vhost{i},num-queues={disk.num_queues}",
            ]
        for i, nic in enumerate(self.nics):
            chardev = f"socket,id=vnet{i},path={nic.socket}"
            if nic.reconnect_s:
                chardev += f",reconnect={nic.reconnect_s}"
            mq = ",mq=on" if nic.queues > 1 else ""
            args += [
                "-chardev",
                chardev,
                "-netdev",
                f"vhost-user,id=vnetdev{i},chardev=vnet{i},queues={nic.queues}",
                "-device",
                f"virtio-net-pci,id=vnic{i},netdev=vnetdev{i},mac={nic.mac},vectors=0{mq}",
            ]
        return [*args, *self.extra_args]


class QemuVM(StartStop):
    """A running (or runnable) QEMU guest; use as a context manager."""

    def __init__(self, spec: VMSpec, *, start_timeout: float = 60.0) -> None:
        self.spec = spec
        self.start_timeout = start_timeout
        self.console = ConsoleLog(spec.serial_log)
        self._proc: ManagedProcess | None = None

    @classmethod
    def for_guest(
        cls,
        image: GuestImage,
        workdir: Path,
        disks: tuple[VhostUserBlkDisk, ...],
        params: GuestParams | None = None,
        *,
        name: str = "svq-guest",
        cpus: int = 1,
        extra_args: tuple[str, ...] = (),
        nics: tuple[VhostUserNetNic, ...] = (),
    ) -> QemuVM:
        """The lab guest of ``image`` with ``disks`` (and ``nics``), its I/O paced by
        ``params``."""
        params = params or GuestParams()
        spec = VMSpec(
            name=name,
            kernel=image.kernel,
            initrd=image.initrd,
            workdir=workdir,
            disks=disks,
            nics=nics,
            append=params.kernel_args(),
            cpus=cpus,
            extra_args=extra_args,
        )
        return cls(spec)

    # ---- process -----------------------------------------------------------------

    @property
    def process(self) -> ManagedProcess:
        if self._proc is None:
            raise LabProcessError(f"QEMU guest {self.spec.name} was not started")
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def started_at(self) -> float | None:
        """time.monotonic() when QEMU was spawned."""
        return self._proc.started_at if self._proc else None

    def start(self) -> None:
        """Start QEMU and wait until its QMP socket is listening."""
        spec = self.spec
        binary = find_program(QEMU_BINARY, QEMU_PACKAGE)
        check_path(spec.qmp_socket, "QMP")
        for sock in [d.socket for d in spec.disks] + [n.socket for n in spec.nics]:
            check_path(sock, "vhost-user")
        for path in (spec.serial_log, spec.qmp_socket, spec.kernel, spec.initrd):
            if "," in str(path):
                raise LabProcessError(f"{path}: QEMU option values cannot contain ','")
        for path in (spec.kernel, spec.initrd):
            if not path.is_file():
                raise LabProcessError(f"guest {path.name} {path} does not exist: build the image")
        spec.workdir.mkdir(parents=True, exist_ok=True)
        for path in (spec.serial_log, spec.qmp_socket):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        self._proc = ManagedProcess(f"QEMU ({spec.name})", spec.argv(binary), spec.stderr_log)
        self._proc.start()
        try:
            deadline = time.monotonic() + self.start_timeout
            self._proc.wait_for_path(spec.qmp_socket, self.start_timeout, socket=True)
            self._wait_qmp_greeting(deadline)
        except BaseException:
            self.stop()
            raise

    def _wait_qmp_greeting(self, deadline: float) -> None:
        """Wait for QEMU's QMP greeting: it comes from the main loop, so once it is
        there every device (vhost-user connections included) was set up. The QMP
        socket itself appears earlier, before a failing device makes QEMU exit."""
        proc = self.process
        while True:
            if not proc.running:
                raise proc.died_error("while starting")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise LabProcessError(
                    f"{proc.name} (pid {proc.pid}) did not answer on its QMP socket "
                    f"{self.spec.qmp_socket} within {self.start_timeout:.0f} s"
                )
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(min(remaining, 1.0))
                data = b""
                with contextlib.suppress(OSError):  # refused, reset, timeout: retry
                    sock.connect(str(self.spec.qmp_socket))
                    while b"\n" not in data:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                if b'"QMP"' in data:
                    return
            time.sleep(0.02)

    def wait_exit(self, timeout: float) -> int | None:
        """Wait for QEMU to exit by itself (e.g. the guest powered off); its exit code."""
        return self.process.wait(timeout)

    def stop(self) -> int | None:
        """Stop QEMU (SIGTERM, then SIGKILL); its exit code."""
        return self._proc.stop() if self._proc else None

    # ---- console -----------------------------------------------------------------

    def wait_for(
        self,
        predicate: Predicate,
        timeout: float,
        what: str,
        *,
        since: int = 0,
        fail_fast: bool = True,
    ) -> GuestLine:
        """``ConsoleLog.wait_for`` that also ends if QEMU exits."""
        return self.console.wait_for(
            predicate, timeout, what, since=since, fail_fast=fail_fast, alive=lambda: self.running
        )

    def wait_io_ok(self, count: int, timeout: float, *, since: int = 0) -> GuestLine:
        """Wait until the guest has verified ``count`` I/O iterations after event index
        ``since`` (0: since boot; ``vm.console.mark()`` for "from now"). A failure
        line in that range raises ``GuestIOError``."""
        return self.wait_for(
            nth_io_ok(count), timeout, f"{count} verified I/O iterations", since=since
        )

    def wait_done(self, timeout: float) -> GuestLine:
        """Wait for the bounded run's SVQ-DONE line (a failure line raises first)."""
        return self.wait_for(lambda e: e.kind == "DONE", timeout, "SVQ-DONE")
