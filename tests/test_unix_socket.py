"""The AF_UNIX path limit (svqtui.unix_socket) matches what the kernel enforces;
sockets are bound with an exact mode whatever the umask, never through a symlink."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

from svqtui.errors import SvqtuiError
from svqtui.unix_socket import MAX_PATH, SocketPathTooLong, bind_private, check_path, fits


def _path_of_length(directory: Path, length: int) -> Path:
    base = os.fsencode(directory / "s")
    return Path(os.fsdecode(base + b"x" * (length - len(base))))


def test_the_longest_path_that_fits_binds_and_one_byte_more_does_not(tmp_path: Path) -> None:
    """A MAX_PATH-byte path binds a real socket and passes the check; MAX_PATH+1
    bytes is refused by the kernel and by ``check_path``, with a precise error."""
    if len(os.fsencode(tmp_path)) > MAX_PATH - 10:
        pytest.skip("tmp_path too long to build a path of exactly MAX_PATH bytes")
    longest = _path_of_length(tmp_path, MAX_PATH)
    too_long = _path_of_length(tmp_path, MAX_PATH + 1)
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(longest))
    assert fits(longest)
    check_path(longest, "test")
    with socket.socket(socket.AF_UNIX) as s, pytest.raises(OSError):
        s.bind(str(too_long))
    assert not fits(too_long)
    with pytest.raises(SocketPathTooLong, match=r"108 bytes, longer than 107 .*: do this") as err:
        check_path(too_long, "test", "do this")
    assert isinstance(err.value, SvqtuiError)
    assert err.value.path == str(too_long) and err.value.length == MAX_PATH + 1


def test_bind_private_ignores_the_umask(tmp_path: Path) -> None:
    """Under umask 000 the socket is still created with exactly the mode asked
    for, before listen() (nothing could connect with a wider one)."""
    old = os.umask(0)
    try:
        with socket.socket(socket.AF_UNIX) as a, socket.socket(socket.AF_UNIX) as b:
            bind_private(a, str(tmp_path / "a.sock"), 0o600)
            bind_private(b, str(tmp_path / "b.sock"), 0o640)
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.lstat(tmp_path / "a.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(tmp_path / "b.sock").st_mode) == 0o640


def test_the_mode_is_not_applied_through_a_symlink(tmp_path: Path) -> None:
    """If the bound socket was swapped for a symlink before its chmod, the
    link's target keeps its mode (ELOOP instead)."""
    from svqtui.unix_socket import _chmod_nofollow

    target = tmp_path / "target"
    target.write_text("x")
    os.chmod(target, 0o644)
    (tmp_path / "link").symlink_to(target)
    with pytest.raises(OSError, match="symlink"):
        _chmod_nofollow(str(tmp_path / "link"), 0o600)
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
