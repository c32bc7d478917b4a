"""The AF_UNIX path limit (svqtui.unix_socket) matches what the kernel enforces."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from svqtui.errors import SvqtuiError
from svqtui.unix_socket import MAX_PATH, SocketPathTooLong, check_path, fits


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
