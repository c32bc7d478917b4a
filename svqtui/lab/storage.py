"""qemu-storage-daemon serving a raw disk image as a vhost-user-blk export.

This is the real vhost-user back-end the lab guest's disk talks to (directly, or
through svqtui's interposer). ``StorageDaemon`` creates the image file if it is
missing, starts the daemon, waits for its listening socket, and stops it on exit
of the ``with`` block, whatever happens inside it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from svqtui.errors import LabProcessError
from svqtui.lab.process import ManagedProcess, StartStop, find_program
from svqtui.unix_socket import check_path

QSD_PACKAGE = "qemu-utils"


class StorageDaemon(StartStop):
    """A qemu-storage-daemon process with one vhost-user-blk export at ``socket``."""

    def __init__(
        self,
        image: Path,
        socket: Path,
        *,
        size_mb: int = 64,
        num_queues: int = 2,
        writable: bool = True,
        export_id: str = "exp0",
        start_timeout: float = 30.0,
    ) -> None:
        self.image = image
        self.socket = socket
        self.size_mb = size_mb
        self.num_queues = num_queues
        self.writable = writable
        self.export_id = export_id
        self.start_timeout = start_timeout
        self.stderr_path = socket.with_name(socket.name + ".log")
        self._proc: ManagedProcess | None = None

    def argv(self, binary: str = "qemu-storage-daemon") -> list[str]:
        """The daemon's command line."""
        return [
            binary,
            "--blockdev",
            f"driver=file,node-name=file0,filename={self.image}",
            "--blockdev",
            "driver=raw,node-name=disk0,file=file0",
            "--export",
            f"type=vhost-user-blk,id={self.export_id},addr.type=unix,addr.path={self.socket},"
            f"node-name=disk0,writable={'on' if self.writable else 'off'},"
            f"num-queues={self.num_queues}",
        ]

    @property
    def process(self) -> ManagedProcess:
        if self._proc is None:
            raise LabProcessError(f"qemu-storage-daemon for {self.socket} was not started")
        return self._proc

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    def start(self) -> None:
        """Create the image if missing, start the daemon, wait for its socket."""
        check_path(self.socket, "vhost-user-blk export")
        binary = find_program("qemu-storage-daemon", QSD_PACKAGE)
        for path in (self.image, self.socket):
            if "," in str(path):
                raise LabProcessError(f"{path}: QEMU option values cannot contain ','")
        if not self.image.exists():
            with self.image.open("wb") as f:
                f.truncate(self.size_mb * 1024 * 1024)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket)  # a stale socket would look like a ready daemon
        self._proc = ManagedProcess("qemu-storage-daemon", self.argv(binary), self.stderr_path)
        self._proc.start()
        try:
            self._proc.wait_for_path(self.socket, self.start_timeout, socket=True)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.stop()
