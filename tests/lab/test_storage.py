"""qemu-storage-daemon with a vhost-user-blk export (svqtui.lab.storage), run for real."""

from __future__ import annotations

import socket
import stat
from pathlib import Path

import pytest

from svqtui.lab.errors import LabProcessError
from svqtui.lab.storage import Export, StorageDaemon
from tests.support.guest import processes_mentioning


@pytest.mark.qemu
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


@pytest.mark.qemu
def test_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    """A leftover file at the socket path is not taken for a ready daemon."""
    sock = tmp_path / "vb.sock"
    sock.write_text("stale")
    with StorageDaemon(tmp_path / "disk.img", sock, size_mb=8):
        assert stat.S_ISSOCK(sock.stat().st_mode)


@pytest.mark.qemu
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


@pytest.mark.qemu
def test_daemon_is_stopped_when_the_with_block_raises(tmp_path: Path) -> None:
    """An exception inside the with block still stops the daemon."""
    with pytest.raises(RuntimeError), StorageDaemon(tmp_path / "d.img", tmp_path / "s", size_mb=8):
        raise RuntimeError("test body failed")
    assert processes_mentioning(str(tmp_path)) == []


def test_exports_of_one_image_share_its_node_and_others_get_their_own() -> None:
    """The command line has one block node per distinct image; each export serves
    its image's node with its own id, queue count and writability."""
    a, b = Path("/w/a.img"), Path("/w/b.img")
    daemon = StorageDaemon(
        exports=[
            Export(a, Path("/w/1.sock"), "e1"),
            Export(b, Path("/w/2.sock"), "e2", num_queues=4, writable=False),
            Export(a, Path("/w/3.sock"), "e3"),
        ]
    )
    argv = daemon.argv("qsd")
    blockdevs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--blockdev"]
    exports = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--export"]
    assert blockdevs == [
        "driver=file,node-name=file0,filename=/w/a.img",
        "driver=raw,node-name=disk0,file=file0",
        "driver=file,node-name=file1,filename=/w/b.img",
        "driver=raw,node-name=disk1,file=file1",
    ]
    assert [e.split(",")[1] for e in exports] == ["id=e1", "id=e2", "id=e3"]
    assert "addr.path=/w/2.sock,node-name=disk1,writable=off,num-queues=4" in exports[1]
    assert "node-name=disk0,writable=on,num-queues=2" in exports[2]
    assert daemon.sockets == [Path("/w/1.sock"), Path("/w/2.sock"), Path("/w/3.sock")]
    with pytest.raises(ValueError, match="an image and a socket, or exports"):
        StorageDaemon(a)


@pytest.mark.qemu
def test_every_export_listens_before_start_returns(tmp_path: Path) -> None:
    """A daemon with two exports on two images: start() returns once both
    sockets accept connections, and both images were created."""
    exports = [Export(tmp_path / f"d{i}.img", tmp_path / f"s{i}.sock", f"e{i}") for i in (0, 1)]
    with StorageDaemon(exports=exports, size_mb=8):
        for e in exports:
            assert e.image.stat().st_size == 8 * 1024 * 1024
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.connect(str(e.socket))
    assert processes_mentioning(str(tmp_path)) == []
