"""The notify protocol as svqtui speaks it, against real AF_UNIX datagram
sockets the tests bind (a path and an abstract name), and the environment
variables systemd sets."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.control.sd_notify import Notifier, NotifySocketError, watchdog_interval_s


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = f"/tmp/svq-notify-{os.getpid()}-{tmp_path.name[-8:]}.sock"
    sock.bind(path)
    sock.settimeout(5)
    try:
        yield sock, path
    finally:
        sock.close()
        os.unlink(path)


def test_fields_arrive_as_one_datagram_on_a_path(receiver: tuple[socket.socket, str]) -> None:
    """send() delivers its fields as one datagram of KEY=VALUE lines; a newline
    inside a value cannot start a field of its own."""
    sock, path = receiver
    notifier = Notifier.from_env({"NOTIFY_SOCKET": path})
    assert notifier is not None
    try:
        assert notifier.send("READY=1", "STATUS=serving\nWATCHDOG=1")
        assert sock.recv(4096) == b"READY=1\nSTATUS=serving WATCHDOG=1"
    finally:
        notifier.close()


def test_an_abstract_socket_is_addressed_with_at() -> None:
    """NOTIFY_SOCKET=@name reaches the abstract socket "\\0name"."""
    name = f"svqtui-test-notify-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        sock.settimeout(5)
        notifier = Notifier(f"@{name}")
        try:
            assert notifier.send("STOPPING=1")
            assert sock.recv(4096) == b"STOPPING=1"
        finally:
            notifier.close()


def test_no_notify_socket_means_no_service_manager() -> None:
    assert Notifier.from_env({}) is None
    assert Notifier.from_env({"NOTIFY_SOCKET": ""}) is None


def test_a_relative_notify_socket_is_refused() -> None:
    """Neither a path nor @name: a precise error at start."""
    with pytest.raises(NotifySocketError, match="neither a path nor an abstract"):
        Notifier("run/notify")


def test_a_vanished_socket_is_reported_not_raised(tmp_path: Path) -> None:
    """Sending to a socket nobody binds returns False and says why (svqtui keeps running)."""
    notifier = Notifier(str(tmp_path / "gone.sock"))
    try:
        assert not notifier.send("WATCHDOG=1")
        assert notifier.failed is not None and "gone.sock" in notifier.failed
    finally:
        notifier.close()


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "10000000"}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}, 10.0),
        ({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], expected: float | None) -> None:
    """WATCHDOG_USEC in seconds, only when WATCHDOG_PID (if set) is this process."""
    assert watchdog_interval_s(env) == expected
