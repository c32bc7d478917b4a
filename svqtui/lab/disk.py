"""The lab's disk: one qemu-storage-daemon exporting one raw image once per slot.

Both exports (vhost-user-blk, writable) serve the same block node, so the QEMU
on either slot sees the same disk: at a migration the source QEMU stops the
guest and drains its requests before the destination starts it, so only one
of them writes at a time and the guest's data stays consistent without any
copy. (Block exports share the node with every permission, so a second
writable export of it is allowed.)

``stall()`` stops the daemon with SIGSTOP: the guest's requests queue up
unanswered, the way a wedged back-end looks to svqtui (kicks without calls, a
used index that does not move); ``resume()`` sends SIGCONT and they complete.
Stopping the daemon always resumes it first, so SIGTERM is not left pending.
"""

from __future__ import annotations

import contextlib
import os
import signal

from svqtui.errors import LabProcessError
from svqtui.lab.layout import LabLayout
from svqtui.lab.process import ManagedProcess, StartStop, find_program
from svqtui.lab.storage import QSD_PACKAGE
from svqtui.unix_socket import check_path

DISK_MB = 64
NUM_QUEUES = 2


class SharedDisk(StartStop):
    """qemu-storage-daemon with one writable vhost-user-blk export per lab slot."""

    def __init__(
        self,
        layout: LabLayout,
        *,
        size_mb: int = DISK_MB,
        num_queues: int = NUM_QUEUES,
        start_timeout: float = 30.0,
    ) -> None:
        self.layout = layout
        self.image = layout.disk_image
        self.size_mb = size_mb
        self.num_queues = num_queues
        self.start_timeout = start_timeout
        self._proc: ManagedProcess | None = None
        self._stalled = False

    def argv(self, binary: str = "qemu-storage-daemon") -> list[str]:
        """The daemon's command line: the image as node ``disk0``, exported per slot."""
        args = [
            binary,
            "--blockdev",
            f"driver=file,node-name=file0,filename={self.image}",
            "--blockdev",
            "driver=raw,node-name=disk0,file=file0",
        ]
        for slot in self.layout.slots:
            args += [
                "--export",
                f"type=vhost-user-blk,id={slot.export_id},addr.type=unix,"
                f"addr.path={slot.backend},node-name=disk0,writable=on,"
                f"num-queues={self.num_queues}",
            ]
        return args

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def stalled(self) -> bool:
        return self._stalled

    def start(self) -> None:
        """Create the image if missing, start the daemon, wait for every export's socket."""
        binary = find_program("qemu-storage-daemon", QSD_PACKAGE)
        for slot in self.layout.slots:
            check_path(slot.backend, "vhost-user-blk export")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(slot.backend)  # a stale socket would look like a ready daemon
        if not self.image.exists():
            with self.image.open("wb") as f:
                f.truncate(self.size_mb * 1024 * 1024)
        self._proc = ManagedProcess(
            "qemu-storage-daemon", self.argv(binary), self.layout.storage_log
        )
        self._proc.start()
        try:
            for slot in self.layout.slots:
                self._proc.wait_for_path(slot.backend, self.start_timeout, socket=True)
        except BaseException:
            self.stop()
            raise

    def stall(self) -> None:
        """Freeze the daemon (SIGSTOP): the back-end stops answering requests."""
        self._signal(signal.SIGSTOP, "stall")
        self._stalled = True

    def resume(self) -> None:
        """Let a stalled daemon go on (SIGCONT); nothing happens if it is not stalled."""
        if not self._stalled:
            return
        self._signal(signal.SIGCONT, "resume")
        self._stalled = False

    def _signal(self, sig: signal.Signals, doing: str) -> None:
        proc = self._proc
        if proc is None or proc.pid is None or not proc.running:
            raise LabProcessError(f"cannot {doing} qemu-storage-daemon: it is not running")
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            raise proc.died_error(f"before the {doing}") from None

    def stop(self) -> int | None:
        """Resume if stalled, then stop the daemon (idempotent); its exit code."""
        proc = self._proc
        if proc is None:
            return None
        if self._stalled and proc.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
            self._stalled = False
        return proc.stop()
