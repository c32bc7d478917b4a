"""qemu-storage-daemon serving raw disk images as vhost-user-blk exports.

This is the real vhost-user back-end the lab guest's disk talks to (directly, or
through svqtui's interposer), and the one the tests and benchmarks use.
``StorageDaemon`` runs one daemon with any number of ``Export``s (each a unix
socket serving an image; exports of the same image share its block node). It
creates missing images, starts the daemon, waits for every export's listening
socket, and stops it on exit of the ``with`` block, whatever happens inside it.

``stall()`` stops the daemon with SIGSTOP: the guest's requests queue up
unanswered, the way a wedged back-end looks to svqtui (kicks without calls, a
used index that does not move); ``resume()`` sends SIGCONT and they complete.
Stopping the daemon always resumes it first, so SIGTERM is not left pending.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from svqtui.lab.errors import LabProcessError
from svqtui.lab.process import ManagedProcess, StartStop, find_program
from svqtui.unix_socket import check_path

QSD_BINARY = "qemu-storage-daemon"
QSD_PACKAGE = "qemu-utils"


@dataclass(frozen=True, slots=True)
class Export:
    """One vhost-user-blk export: ``image`` served on the unix socket ``socket``."""

    image: Path
    socket: Path
    export_id: str = "exp0"
    num_queues: int = 2
    writable: bool = True


class StorageDaemon(StartStop):
    """A qemu-storage-daemon process serving ``exports``.

    ``StorageDaemon(image, socket)`` is the common case, one export; pass
    ``exports=`` (and no image/socket) for several."""

    def __init__(
        self,
        image: Path | None = None,
        socket: Path | None = None,
        *,
        exports: Sequence[Export] = (),
        size_mb: int = 64,
        num_queues: int = 2,
        writable: bool = True,
        export_id: str = "exp0",
        start_timeout: float = 30.0,
        stderr_path: Path | None = None,
    ) -> None:
        if image is not None and socket is not None and not exports:
            exports = (Export(image, socket, export_id, num_queues, writable),)
        elif image is not None or socket is not None or not exports:
            raise ValueError("StorageDaemon needs an image and a socket, or exports")
        self.exports = tuple(exports)
        self.size_mb = size_mb
        self.start_timeout = start_timeout
        first = self.exports[0].socket
        self.stderr_path = stderr_path or first.with_name(first.name + ".log")
        self._proc: ManagedProcess | None = None
        self._stalled = False

    @property
    def image(self) -> Path:
        """The first export's image."""
        return self.exports[0].image

    @property
    def socket(self) -> Path:
        """The first export's socket."""
        return self.exports[0].socket

    @property
    def sockets(self) -> list[Path]:
        """Every export's socket, in order."""
        return [e.socket for e in self.exports]

    @property
    def images(self) -> list[Path]:
        """Every distinct image, in the order of the exports (node ``disk<i>``)."""
        return list(dict.fromkeys(e.image for e in self.exports))

    @property
    def num_queues(self) -> int:
        """The first export's queue count."""
        return self.exports[0].num_queues

    def argv(self, binary: str = QSD_BINARY) -> list[str]:
        """The daemon's command line: image i is node ``disk<i>``, each export serves its node."""
        images = self.images
        args = [binary]
        for i, image in enumerate(images):
            args += [
                "--blockdev",
                f"driver=file,node-name=file{i},filename={image}",
                "--blockdev",
                f"driver=raw,node-name=disk{i},file=file{i}",
            ]
        for e in self.exports:
            args += [
                "--export",
                f"type=vhost-user-blk,id={e.export_id},addr.type=unix,addr.path={e.socket},"
                f"node-name=disk{images.index(e.image)},writable={'on' if e.writable else 'off'},"
                f"num-queues={e.num_queues}",
            ]
        return args

    @property
    def process(self) -> ManagedProcess:
        if self._proc is None:
            raise LabProcessError(f"qemu-storage-daemon for {self.socket} was not started")
        return self._proc

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
        """Create missing images, start the daemon, wait for every export's socket."""
        for e in self.exports:
            check_path(e.socket, "vhost-user-blk export")
        binary = find_program(QSD_BINARY, QSD_PACKAGE)
        for e in self.exports:
            for path in (e.image, e.socket):
                if "," in str(path):
                    raise LabProcessError(f"{path}: QEMU option values cannot contain ','")
        for image in self.images:
            if not image.exists():
                with image.open("wb") as f:
                    f.truncate(self.size_mb * 1024 * 1024)
        for e in self.exports:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(e.socket)  # a stale socket would look like a ready daemon
        self._proc = ManagedProcess("qemu-storage-daemon", self.argv(binary), self.stderr_path)
        self._proc.start()
        try:
            for e in self.exports:
                self._proc.wait_for_path(e.socket, self.start_timeout, socket=True)
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
