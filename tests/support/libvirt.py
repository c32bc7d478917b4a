"""A real libvirtd for tests, and transient TCG domains of the lab guest.

``libvirtd_running()`` (used by the session fixture ``libvirtd`` in
tests/sources/libvirt/conftest.py) starts ``virtlogd -d`` and ``libvirtd -d``
on their default sockets (no systemd here) unless they already run, waits
until ``qemu:///system`` answers, and returns a ``Daemons`` record whose
``stop()`` ends only the processes it started, by the pids in their pid
files. ``restart_libvirtd()`` stops libvirtd by pid and starts it again
(domains keep running).

``lab_domain_xml`` renders the domain the libvirt tests boot: direct kernel
boot of the lab guest (kernel and initrd copied to a directory libvirt may
chown), memfd shared memory (vhost-user needs it), a vhost-user-blk disk at
``vda`` (the guest's verified I/O runs there) and a plain virtio-blk disk at
``vdb``, the serial console to a file. ``create_domain`` bounds
``createXML``: with ``<reconnect>`` a back-end that refuses makes it hang, so
after ``timeout`` the domain is destroyed from another connection.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from svqtui.lab.guest_image import GuestImage
from svqtui.lab.guest_init import GuestParams
from svqtui.lab.qemu_vm import BASE_APPEND

URI = "qemu:///system"
LIBVIRTD_PID = Path("/run/libvirtd.pid")
VIRTLOGD_PID = Path("/run/virtlogd.pid")
SOCKET = Path("/run/libvirt/libvirt-sock")
CREATE_TIMEOUT_S = 60.0


class LibvirtdUnavailable(Exception):
    """libvirtd cannot run here (the reason says why); tests skip with it."""


def _pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _answers(timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["virsh", "-c", URI, "list"], capture_output=True, timeout=10, check=False
        )
        if done.returncode == 0:
            return True
        time.sleep(0.1)
    return False


@dataclass
class Daemons:
    """The daemons a test session started (None: it was running already)."""

    libvirtd: int | None
    virtlogd: int | None

    def stop(self) -> None:
        for pid in (self.libvirtd, self.virtlogd):
            if pid is not None:
                _stop_pid(pid)


def _stop_pid(pid: int, timeout: float = 15.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _start(program: str, pid_file: Path) -> int:
    if shutil.which(program) is None:
        raise LibvirtdUnavailable(
            f"{program} is not installed (Debian: libvirt-daemon-system, in scripts/test)"
        )
    if os.geteuid() != 0:
        raise LibvirtdUnavailable(f"{program} -d needs root to run on its system socket")
    subprocess.run([program, "-d"], check=True, timeout=30)
    deadline = time.monotonic() + 10
    while (pid := _pid(pid_file)) is None:
        if time.monotonic() > deadline:
            raise LibvirtdUnavailable(f"{program} -d started but wrote no pid to {pid_file}")
        time.sleep(0.05)
    return pid


def libvirtd_running() -> Daemons:
    """virtlogd and libvirtd running, started here if they were not."""
    virtlogd = None if _pid(VIRTLOGD_PID) else _start("virtlogd", VIRTLOGD_PID)
    libvirtd = None if _pid(LIBVIRTD_PID) else _start("libvirtd", LIBVIRTD_PID)
    daemons = Daemons(libvirtd, virtlogd)
    if not _answers(30):
        daemons.stop()
        raise LibvirtdUnavailable(f"libvirtd does not answer at {URI}")
    return daemons


def restart_libvirtd(daemons: Daemons) -> None:
    """Stop libvirtd by pid and start it again; domains keep running."""
    pid = _pid(LIBVIRTD_PID)
    if pid is not None:
        _stop_pid(pid)
    daemons.libvirtd = _start("libvirtd", LIBVIRTD_PID)
    if not _answers(30):
        raise LibvirtdUnavailable("libvirtd did not come back after a restart")


@dataclass(frozen=True)
class LabFiles:
    """The guest's files where libvirt may chown them to libvirt-qemu."""

    kernel: Path
    initrd: Path
    plain_disk: Path
    serial_log: Path


def lab_files(image: GuestImage, workdir: Path, plain_mb: int = 16) -> LabFiles:
    workdir.mkdir(parents=True, exist_ok=True)
    workdir.chmod(0o755)
    files = LabFiles(
        kernel=workdir / "vmlinuz",
        initrd=workdir / "initrd",
        plain_disk=workdir / "plain.img",
        serial_log=workdir / "serial.log",
    )
    shutil.copyfile(image.kernel, files.kernel)
    shutil.copyfile(image.initrd, files.initrd)
    with open(files.plain_disk, "wb") as f:
        f.truncate(plain_mb * 2**20)
    return files


def lab_domain_xml(
    name: str,
    files: LabFiles,
    vhost_user_socket: Path,
    *,
    queues: int = 2,
    params: GuestParams | None = None,
    memory_mb: int = 256,
) -> str:
    """A transient TCG domain of the lab guest (see the module docstring)."""
    cmdline = f"{BASE_APPEND} {(params or GuestParams()).kernel_args()}"
    return f"""<domain type='qemu'>
  <name>{name}</name>
  <memory unit='MiB'>{memory_mb}</memory>
  <vcpu>1</vcpu>
  <cpu mode='maximum'/>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
    <kernel>{files.kernel}</kernel>
    <initrd>{files.initrd}</initrd>
    <cmdline>{cmdline}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw' queues='{queues}'/>
      <source type='unix' path={quoteattr(str(vhost_user_socket))}>
        <reconnect enabled='yes' timeout='10'/>
      </source>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file={quoteattr(str(files.plain_disk))}/>
      <target dev='vdb' bus='virtio'/>
    </disk>
    <serial type='file'><source path={quoteattr(str(files.serial_log))}/></serial>
    <memballoon model='none'/>
  </devices>
</domain>"""


def create_domain(conn: Any, xml: str, name: str, timeout: float = CREATE_TIMEOUT_S) -> Any:
    """``conn.createXML(xml)``, bounded: after ``timeout`` the half-created
    domain is destroyed (from a new connection) and TimeoutError raised."""
    import libvirt

    result: dict[str, Any] = {}

    def create() -> None:
        try:
            result["dom"] = conn.createXML(xml, 0)
        except libvirt.libvirtError as err:
            result["error"] = err

    thread = threading.Thread(target=create, name="test-libvirt-create", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        destroy_domain(name)
        thread.join(30)
        raise TimeoutError(f"virsh create of {name} did not finish within {timeout:.0f} s")
    if "error" in result:
        raise result["error"]
    return result["dom"]


def destroy_domain(name: str) -> None:
    """Destroy a running domain by name, if it runs (a fresh connection)."""
    subprocess.run(
        ["virsh", "-c", URI, "destroy", name], capture_output=True, timeout=30, check=False
    )
