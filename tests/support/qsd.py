"""qemu-storage-daemon as a real vhost-user-blk back-end for tests and benchmarks.

``vhost_user_blk_daemon(workdir, exports=N)`` is the lab's ``StorageDaemon``
(svqtui.lab.storage) with N vhost-user-blk exports, each on its own fresh raw
image (``disk<i>.img``) and socket (``qsd<i>.sock``) in ``workdir``; start it
(or use it as a context manager) and it is always stopped. ``short_dir`` finds
a directory whose socket paths fit a unix socket address.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.lab.storage import Export, StorageDaemon
from svqtui.unix_socket import fits

__all__ = ["StorageDaemon", "short_dir", "vhost_user_blk_daemon"]

IMAGE_MB = 16
LONGEST_NAME = "other/.vu10.sock.12345678"  # the longest socket name tests put under it


def short_dir(preferred: Path) -> tuple[Path, bool]:
    """``preferred`` if socket paths under it fit a unix socket address, else a
    new short directory in /tmp (second value: the caller must remove it)."""
    if fits(preferred / LONGEST_NAME):
        return preferred, False
    return Path(tempfile.mkdtemp(prefix="svq-", dir="/tmp")), True


def vhost_user_blk_daemon(
    workdir: Path, exports: int = 1, num_queues: int = 2, size_mb: int = IMAGE_MB
) -> StorageDaemon:
    """A (not yet started) daemon with ``exports`` exports on fresh images in ``workdir``."""
    for i in range(exports):
        (workdir / f"disk{i}.img").unlink(missing_ok=True)
    return StorageDaemon(
        exports=[
            Export(workdir / f"disk{i}.img", workdir / f"qsd{i}.sock", f"exp{i}", num_queues)
            for i in range(exports)
        ],
        size_mb=size_mb,
        stderr_path=workdir / "qsd.log",
    )


@pytest.fixture
def sock_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory for unix sockets: tmp_path when its paths fit sun_path,
    else a short one in /tmp, removed after the test."""
    path, created = short_dir(tmp_path)
    yield path
    if created:
        shutil.rmtree(path, ignore_errors=True)
