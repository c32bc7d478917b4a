"""The lab's shared disk (svqtui.lab.disk): one real qemu-storage-daemon, two exports."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import psutil

from svqtui.lab.disk import SharedDisk
from svqtui.lab.layout import LabLayout
from tests.support.lab import lab_processes
from tests.support.wait import wait_until


def status_is(pid: int, wanted: str) -> bool:
    return psutil.Process(pid).status() == wanted


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
        pid = disk.pid
        wait_until(lambda: status_is(pid, psutil.STATUS_STOPPED), what="the daemon stopped (T)")
        disk.resume()
        wait_until(lambda: not status_is(pid, psutil.STATUS_STOPPED), what="the daemon resumed")
        disk.stall()
        code = disk.stop()
    assert not disk.running and not disk.stalled
    assert code != -signal.SIGKILL, "SIGTERM was not handled: the daemon stayed stopped"
    assert lab_processes(lab_workdir) == []
