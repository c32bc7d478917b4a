"""qemu-storage-daemon with a vhost-user-blk export (svqtui.lab.storage), run for real."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from svqtui.errors import LabProcessError
from svqtui.lab.storage import StorageDaemon
from tests.support.guest import processes_mentioning

pytestmark = pytest.mark.qemu  # every test runs a real qemu-storage-daemon


def test_daemon_listens_on_its_socket_and_is_gone_after_stop(tmp_path: Path) -> None:
    """The image is created at its size, the export socket accepts a connection while
    the daemon runs, and no daemon process remains after the with block."""
    daemon = StorageDaemon(tmp_path / "disk.img", tmp_path / "vb.sock", size_mb=8)
    with daemon:
        assert daemon.running
        assert (tmp_path / "disk.img").stat().st_size == 8 * 1024 * 1024
        assert stat.S_ISSOCK((tmp_path / "vb.sock").stat().st_mode)
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.connect(str(tmp_path / "vb.sock"))
        assert processes_mentioning(str(tmp_path))
    assert not daemon.running
    assert processes_mentioning(str(tmp_path)) == []


def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    """A leftover file at the socket path is not taken for a ready daemon."""
    sock = tmp_path / "vb.sock"
    sock.write_text("stale")
    with StorageDaemon(tmp_path / "disk.img", sock, size_mb=8):
        assert stat.S_ISSOCK(sock.stat().st_mode)


def test_daemon_that_cannot_start_gives_its_own_reason(tmp_path: Path) -> None:
    """A daemon exiting at start (its image is unusable: a directory) is one
    LabProcessError carrying the daemon's message, and nothing is left running."""
    (tmp_path / "dir.img").mkdir()
    with (
        pytest.raises(
            LabProcessError, match=r"qemu-storage-daemon exited with code \d+ .*Is a directory"
        ),
        StorageDaemon(tmp_path / "dir.img", tmp_path / "vb.sock"),
    ):
        pass
    assert processes_mentioning(str(tmp_path)) == []


def test_daemon_is_stopped_when_the_with_block_raises(tmp_path: Path) -> None:
    """An exception inside the with block still stops the daemon."""
    with pytest.raises(RuntimeError), StorageDaemon(tmp_path / "d.img", tmp_path / "s", size_mb=8):
        raise RuntimeError("test body failed")
    assert processes_mentioning(str(tmp_path)) == []
