"""Claiming the control socket path: one owner, 0600, stale files replaced, others' kept."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.control.errors import ControlSocketInUse
from svqtui.control.sockfile import SocketFile, probe
from svqtui.errors import ControlError
from svqtui.unix_socket import SocketPathTooLong


@pytest.fixture
def claims() -> Iterator[list[SocketFile]]:
    """SocketFiles created by a test, released at its end."""
    made: list[SocketFile] = []
    yield made
    for f in made:
        f.release()


def claim(path: Path, claims: list[SocketFile]) -> tuple[SocketFile, socket.socket]:
    f = SocketFile(str(path))
    claims.append(f)
    sock = f.claim()
    return f, sock


def test_claim_creates_a_private_dir_and_a_0600_socket(
    tmp_path: Path, claims: list[SocketFile]
) -> None:
    """The parent directory is created 0700, the socket is 0600 and accepts
    connections, and the lock file names this process."""
    path = tmp_path / "new" / "c.sock"
    f, sock = claim(path, claims)
    with sock:
        assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
        st = os.lstat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert probe(str(path))
        assert Path(f.lock_path).read_text().strip() == str(os.getpid())
        assert sorted(os.listdir(path.parent)) == ["c.sock", "c.sock.lock"]  # no temp name left
    f.release()
    assert os.listdir(path.parent) == []


def test_second_claim_is_refused_and_the_first_keeps_working(
    tmp_path: Path, claims: list[SocketFile]
) -> None:
    """While one owner holds the path, another claim fails with ControlSocketInUse
    naming the owner's pid, and leaves the owner's socket in place."""
    path = tmp_path / "c.sock"
    _, sock = claim(path, claims)
    with sock:
        with pytest.raises(ControlSocketInUse, match=f"pid {os.getpid()}"):
            claim(path, claims)
        assert probe(str(path))


def test_stale_socket_is_replaced(tmp_path: Path, claims: list[SocketFile]) -> None:
    """A socket file left by a process that died (nobody listening, no lock held)
    is replaced by a working one."""
    path = tmp_path / "c.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    assert path.exists() and not probe(str(path))
    _, sock = claim(path, claims)
    with sock:
        assert probe(str(path))


def test_a_foreign_listener_is_left_alone(tmp_path: Path, claims: list[SocketFile]) -> None:
    """Something other than svqtui listening on the path (no lock) makes the claim
    fail; its socket keeps working."""
    path = tmp_path / "c.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        other.listen()
        with pytest.raises(ControlSocketInUse, match="something other than svqtui"):
            claim(path, claims)
        assert probe(str(path))
    assert not Path(str(path) + ".lock").exists()


def test_a_regular_file_is_not_removed(tmp_path: Path, claims: list[SocketFile]) -> None:
    """A regular file at the path is an error, and the file is kept."""
    path = tmp_path / "c.sock"
    path.write_text("precious")
    with pytest.raises(ControlError, match="not a socket"):
        claim(path, claims)
    assert path.read_text() == "precious"


def test_release_does_not_remove_someone_elses_socket(
    tmp_path: Path, claims: list[SocketFile]
) -> None:
    """If the socket file was replaced behind our back, release leaves the new one
    (ours is moved aside, so the new file cannot reuse its inode number)."""
    path = tmp_path / "c.sock"
    f, sock = claim(path, claims)
    sock.close()
    os.rename(path, tmp_path / "moved.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(str(path))
        f.release()
        assert path.exists()


def test_too_long_path_is_one_clear_error(tmp_path: Path) -> None:
    """A path over the AF_UNIX limit is refused before anything is created."""
    path = tmp_path / ("x" * 120) / "c.sock"
    with pytest.raises(SocketPathTooLong, match="longer than 107 bytes"):
        SocketFile(str(path)).claim()
    assert not path.parent.exists()
