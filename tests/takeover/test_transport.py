"""The takeover transport over real unix stream sockets with real eventfds
and memfds: any number of fds arrive, in order, as working duplicates of
the sender's; a broken stream leaks no fd."""

from __future__ import annotations

import array
import os
import socket
import struct
import threading
from collections.abc import Iterator

import pytest

from svqtui.takeover.errors import TransportError
from svqtui.takeover.transport import BATCH_FDS, recv_bundle, send_bundle
from tests.support.vhost_user_rig import open_fds


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    a.settimeout(10)
    b.settimeout(10)
    try:
        yield a, b
    finally:
        a.close()
        b.close()


def _send_async(sock: socket.socket, doc: dict[str, object], fds: list[int]) -> threading.Thread:
    """Send from a thread: a big bundle does not fit the socket buffer."""
    thread = threading.Thread(target=send_bundle, args=(sock, doc, fds))
    thread.start()
    return thread


@pytest.mark.parametrize("count", [0, 1, BATCH_FDS, BATCH_FDS + 1, 3 * BATCH_FDS + 7])
def test_any_number_of_eventfds_arrive_in_order_and_work(
    pair: tuple[socket.socket, socket.socket], count: int
) -> None:
    """N eventfds (across batches of 250) arrive in the order sent; each is
    the same eventfd: a count written on the sender's side is read on the
    received one (a notification waiting in its counter is not lost)."""
    a, b = pair
    sent = [os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC) for _ in range(count)]
    try:
        for i, fd in enumerate(sent):
            os.eventfd_write(fd, i + 1)
        thread = _send_async(a, {"rings": count}, sent)
        doc, got = recv_bundle(b)
        thread.join(10)
        try:
            assert doc == {"rings": count} and len(got) == count
            assert [os.eventfd_read(fd) for fd in got] == list(range(1, count + 1))
            assert all(fd not in sent for fd in got)
            assert all(os.get_inheritable(fd) is False for fd in got)
        finally:
            for fd in got:
                os.close(fd)
    finally:
        for fd in sent:
            os.close(fd)


def test_a_memfd_arrives_as_the_same_memory(pair: tuple[socket.socket, socket.socket]) -> None:
    """A guest-memory memfd passed over: bytes written through the sender's fd
    are read through the received one."""
    a, b = pair
    mem = os.memfd_create("svqtui-test-mem", os.MFD_CLOEXEC)
    try:
        os.pwrite(mem, b"ring state", 4096)
        send_bundle(a, {"regions": 1}, [mem])
        _, (got,) = recv_bundle(b)
        try:
            assert os.pread(got, 10, 4096) == b"ring state"
        finally:
            os.close(got)
    finally:
        os.close(mem)


def test_a_stream_that_closes_midway_leaks_no_fd(pair: tuple[socket.socket, socket.socket]) -> None:
    """The sender dies after the first batch of a two-batch bundle: the
    receiver raises TransportError and has closed the fds it had received."""
    a, b = pair
    sent = [os.eventfd(0, os.EFD_CLOEXEC) for _ in range(BATCH_FDS + 1)]
    try:
        baseline = open_fds()

        def half() -> None:
            a.sendall(struct.pack("<4sII", b"SVQB", 2, len(sent)) + b"{}")
            rights = array.array("i", sent[:BATCH_FDS]).tobytes()
            a.sendmsg(
                [struct.pack("<cH", b"F", BATCH_FDS)],
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, rights)],
            )
            a.shutdown(socket.SHUT_WR)

        half()
        with pytest.raises(TransportError, match="closed the hand-over stream"):
            recv_bundle(b)
        assert open_fds() == baseline
    finally:
        for fd in sent:
            os.close(fd)


def test_garbage_is_refused(pair: tuple[socket.socket, socket.socket]) -> None:
    a, b = pair
    a.sendall(b"GET / HTTP/1.0\r\n\r\n")
    with pytest.raises(TransportError, match="not a hand-over bundle"):
        recv_bundle(b)
