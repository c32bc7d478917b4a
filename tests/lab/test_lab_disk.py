"""The lab's shared disk (svqtui.lab.disk): one real qemu-storage-daemon, two exports."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import psutil

from svqtui.lab.disk import SharedDisk
from svqtui.lab.layout import LabLayout
from tests.support.lab import lab_processes


def wait_status(pid: int, wanted: str, timeout: float = 30.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = psutil.Process(pid).status()
        if status == wanted or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


def test_one_daemon_exports_the_same_node_on_both_slots(lab_workdir: Path) -> None:
    """Both slots' export sockets accept connections from one daemon process, and
    both exports serve the same block node (so a migration needs no disk copy)."""
    layout = LabLayout.create(lab_workdir)
    disk = SharedDisk(layout, size_mb=8)
    argv = " ".join(disk.argv())
    assert argv.count("--export") == 2 and argv.count("node-name=disk0,writable=on") == 2
    with disk:
        for slot in layout.slots:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(slot.backend))
        assert len(lab_processes(lab_workdir)) == 1
    assert lab_processes(lab_workdir) == []


def test_stall_freezes_the_daemon_and_stop_works_while_stalled(lab_workdir: Path) -> None:
    """stall() stops the process (state T), resume() lets it run again, and stopping
    a stalled daemon resumes it first, so it exits on SIGTERM (not SIGKILL after
    SIGTERM's timeout) and is gone."""
    layout = LabLayout.create(lab_workdir)
    disk = SharedDisk(layout, size_mb=8)
    with disk:
        assert disk.pid is not None
        disk.stall()
        assert disk.stalled
        assert wait_status(disk.pid, psutil.STATUS_STOPPED) == psutil.STATUS_STOPPED
        disk.resume()
        assert wait_status(disk.pid, psutil.STATUS_SLEEPING) != psutil.STATUS_STOPPED
        disk.stall()
        code = disk.stop()
    assert not disk.running and not disk.stalled
    assert code != -signal.SIGKILL, "SIGTERM was not handled: the daemon stayed stopped"
    assert lab_processes(lab_workdir) == []
