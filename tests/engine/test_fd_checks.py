"""The engine never blocks and never silently un-watches: destinations and
sources are made nonblocking, fds that are not eventfds or pipes are refused,
and a source fd already used by another link is refused (docs/design.md#limits)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import tempfile

import pytest

from svqtui.engine import End, Link
from svqtui.engine.errors import BadFd, FdInUse
from tests.support.engine import Rig, drain, signal

EVENTFD_MAX = 0xFFFF_FFFF_FFFF_FFFE


def _blocking(fd: int) -> bool:
    return not fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_NONBLOCK


def test_full_blocking_pipe_destination_does_not_stop_the_engine(rig: Rig) -> None:
    """A blocking pipe as a kick destination, filled to the brim: the engine
    made it nonblocking, so 200 kicks into it do not block the engine thread
    and another queue relays every kick meanwhile (before: the engine thread
    hung in write() and every queue stopped)."""
    r, w = os.pipe()
    rig.fds += [r, w]
    assert _blocking(w)
    slot, fds = rig.add()
    rig.engine.set_fd(slot, Link.KICK, End.DST, w)
    assert not _blocking(w)
    with pytest.raises(BlockingIOError):
        while True:
            os.write(w, b"x" * 65536)
    good_slot, good = rig.add()
    for _ in range(200):
        signal(fds.kick_src)
        signal(good.kick_src)
        rig.barrier()
        assert drain(good.kick_dst) == 1
    assert rig.engine.health().alive
    assert rig.engine.queue(good_slot).error is None


def test_saturated_blocking_eventfd_destination_does_not_stop_the_engine(rig: Rig) -> None:
    """A blocking eventfd a peer filled to its maximum counter (a write would
    block forever): accepted, made nonblocking, and the engine goes on."""
    dst = os.eventfd(0, os.EFD_CLOEXEC)  # blocking
    rig.fds.append(dst)
    os.write(dst, EVENTFD_MAX.to_bytes(8, "little"))
    slot, fds = rig.add()
    rig.engine.set_fd(slot, Link.CALL, End.DST, dst)
    assert not _blocking(dst)
    _, good = rig.add()
    for _ in range(50):
        signal(fds.call_src)
        signal(good.call_src)
        rig.barrier()
        assert drain(good.call_dst) == 1
    assert rig.engine.health().alive


def test_blocking_source_is_made_nonblocking(rig: Rig) -> None:
    """A blocking eventfd as a source: made nonblocking (a second reader
    racing the engine must not leave it blocked in read())."""
    src = os.eventfd(0, os.EFD_CLOEXEC)
    rig.fds.append(src)
    slot = rig.engine.add_queue(src, rig.efd())
    assert not _blocking(src)
    rig.engine.remove_queue(slot)


@pytest.mark.parametrize("kind", ["regular file", "socket", "character device"])
@pytest.mark.parametrize("end", ["kick destination", "call source"])
def test_fds_that_are_not_eventfds_or_pipes_are_refused(rig: Rig, kind: str, end: str) -> None:
    """A file, a socket or /dev/null is refused with BadFd naming the end,
    the fd and what it is; no queue slot is used."""
    with contextlib.ExitStack() as stack:
        if kind == "regular file":
            fd = stack.enter_context(tempfile.TemporaryFile()).fileno()
        elif kind == "socket":
            fd = stack.enter_context(socket.socketpair()[0]).fileno()
        else:
            fd = os.open(os.devnull, os.O_RDWR)
            stack.callback(os.close, fd)
        args = [rig.efd(), rig.efd(), rig.efd(), rig.efd()]
        args[1 if end == "kick destination" else 2] = fd
        before = rig.engine.queue_count
        with pytest.raises(BadFd, match=f"{end} fd {fd} is a {kind}"):
            rig.engine.add_queue(*args)
        assert rig.engine.queue_count == before


def test_shared_source_is_refused_and_the_good_link_keeps_relaying(rig: Rig) -> None:
    """A second link given a source fd that another link reads is refused
    (add_queue and set_fd, same or other queue), and after the refused
    queue is removed the first link still relays (before: removing or fixing
    the bad one silently un-watched the good one)."""
    _, good = rig.add()
    with pytest.raises(FdInUse, match=f"fd {good.kick_src} is already the kick source"):
        rig.engine.add_queue(rig.efd(), rig.efd(), good.kick_src, rig.efd())
    slot, fds = rig.add()
    with pytest.raises(FdInUse):
        rig.engine.set_fd(slot, Link.KICK, End.SRC, good.kick_src)
    with pytest.raises(FdInUse, match="both the kick and the call link"):
        rig.engine.add_queue(fds.kick_src, rig.efd(), fds.kick_src, rig.efd())
    rig.engine.remove_queue(slot)
    for _ in range(20):
        signal(good.kick_src)
        rig.barrier()
        assert drain(good.kick_dst) == 1


def test_a_released_source_can_be_reused(rig: Rig) -> None:
    """Once a link lets go of a source (set_fd to another fd, or its queue
    removed), that fd may be another link's source."""
    slot, fds = rig.add()
    rig.engine.set_fd(slot, Link.KICK, End.SRC, rig.efd())
    other = rig.engine.add_queue(fds.kick_src, rig.efd())
    rig.engine.remove_queue(other)
    again = rig.engine.add_queue(fds.kick_src, rig.efd())
    rig.engine.set_fd(slot, Link.CALL, End.SRC, fds.call_src)  # its own fd again: fine
    rig.engine.remove_queue(again)
