"""Run qemu-storage-daemon as a real vhost-user-blk back-end for tests and benchmarks.

``StorageDaemon`` starts one qemu-storage-daemon with N vhost-user-blk
exports (each on its own raw image and unix socket), waits for the sockets,
and always kills the process on ``stop()`` (use it as a context manager or
from a fixture with a finalizer).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

QSD = "qemu-storage-daemon"
IMAGE_SIZE = 16 << 20
SOCKET_PATH_MAX = 100  # sun_path is 108 bytes


def short_dir(preferred: Path) -> tuple[Path, bool]:
    """``preferred`` if socket paths under it fit sun_path, else a new short
    directory in /tmp (second value: the caller must remove it)."""
    if len(str(preferred)) + 16 < SOCKET_PATH_MAX:
        return preferred, False
    return Path(tempfile.mkdtemp(prefix="svq-", dir="/tmp")), True


class StorageDaemon:
    """A qemu-storage-daemon exporting ``exports`` vhost-user-blk devices."""

    def __init__(
        self, workdir: Path, exports: int = 1, num_queues: int = 2, size: int = IMAGE_SIZE
    ) -> None:
        if shutil.which(QSD) is None:
            raise RuntimeError(f"{QSD} is not installed (apt-get install qemu-utils)")
        self.workdir = workdir
        self.num_queues = num_queues
        self.images = [workdir / f"disk{i}.img" for i in range(exports)]
        self.sockets = [str(workdir / f"qsd{i}.sock") for i in range(exports)]
        self.size = size
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "qsd.log"

    def command(self) -> list[str]:
        cmd = [QSD]
        for i, (image, sock) in enumerate(zip(self.images, self.sockets, strict=True)):
            cmd += [
                "--blockdev",
                f"driver=file,node-name=file{i},filename={image}",
                "--blockdev",
                f"driver=raw,node-name=disk{i},file=file{i}",
                "--export",
                f"type=vhost-user-blk,id=exp{i},addr.type=unix,addr.path={sock},"
                f"node-name=disk{i},writable=on,num-queues={self.num_queues}",
            ]
        return cmd

    def start(self, timeout: float = 10.0) -> StorageDaemon:
        for image in self.images:
            with open(image, "wb") as f:
                f.truncate(self.size)
        for sock in self.sockets:
            if os.path.exists(sock):
                os.unlink(sock)
        log = open(self.log_path, "wb")  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while not all(os.path.exists(s) for s in self.sockets):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{QSD} did not start: {self.log_path.read_text()[-2000:]}")
            time.sleep(0.01)
        return self

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate (then kill) the daemon; idempotent."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def __enter__(self) -> StorageDaemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
