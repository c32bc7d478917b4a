"""Rule 5 for bad fds: one queue goes into an error state with a clear reason,
while the engine and every other queue go on relaying."""

from __future__ import annotations

import errno
import os
import resource
import tempfile
from collections.abc import Iterator

import pytest

from svqtui.engine import End, Link
from svqtui.engine.errors import BadFd, FdInUse
from tests.support.engine import Rig, drain, signal
from tests.support.wait import wait_until


@pytest.fixture
def closed_fd() -> int:
    """An fd number that is not open and will not be reused during the test:
    the highest one the open-file limit allows (the kernel hands out the
    lowest free number, so a test would need thousands of fds to reach it)."""
    fd = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1
    with pytest.raises(OSError) as exc:
        os.fstat(fd)
    assert exc.value.errno == errno.EBADF
    return fd


@pytest.fixture
def read_only_fd() -> Iterator[int]:
    """An fd the engine accepts as a destination but cannot write: a pipe's
    read end (a file such as /dev/null is refused before it reaches the
    engine, see test_fd_checks.py)."""
    r, w = os.pipe()
    yield r
    os.close(r)
    os.close(w)


def assert_others_relay(rig: Rig) -> None:
    """The engine is alive and a fresh healthy queue relays both ways."""
    good_slot, good = rig.add()
    signal(good.kick_src)
    signal(good.call_src)
    rig.barrier()
    assert drain(good.kick_dst) == 1
    assert drain(good.call_dst) == 1
    assert rig.engine.queue(good_slot).error is None
    assert rig.engine.health().alive


def reason(text: str | None, link: str, end: str, fd: int, err: int) -> None:
    assert text is not None
    assert text.startswith(f"{link} {end} fd {fd}:"), text
    assert os.strerror(err) in text, text


def test_closed_call_destination(rig: Rig, closed_fd: int) -> None:
    """A closed call destination: the queue's error names the call link, its
    destination, the fd number and strerror(EBADF); its kick link and the
    other queues keep relaying."""
    fds = [rig.efd(), rig.efd(), rig.efd(), closed_fd]
    slot = rig.engine.add_queue(*fds)
    q = rig.engine.queue(slot)
    reason(q.error, "call", "destination", closed_fd, errno.EBADF)
    assert q.call.error == q.error and q.kick.healthy
    assert "write" in q.error
    signal(fds[0])
    rig.barrier()
    assert drain(fds[1]) == 2  # the add's signal and the kick
    assert_others_relay(rig)


def test_closed_kick_source(rig: Rig, closed_fd: int) -> None:
    """A closed kick source cannot be watched: the error names the kick
    link's source, the fd and EBADF; the call link still relays."""
    fds = [closed_fd, rig.efd(), rig.efd(), rig.efd()]
    slot = rig.engine.add_queue(*fds)
    q = rig.engine.queue(slot)
    reason(q.kick.error, "kick", "source", closed_fd, errno.EBADF)
    assert "watch" in q.kick.error
    assert q.call.healthy
    drain(fds[3])
    signal(fds[2])
    rig.barrier()
    assert drain(fds[3]) == 1
    assert_others_relay(rig)


def test_unwritable_destination(rig: Rig, read_only_fd: int) -> None:
    """A destination opened read-only fails every write: the error names the
    link, "destination", the fd and strerror; each failed delivery counts."""
    slot, fds = rig.add()
    rig.engine.set_fd(slot, Link.KICK, End.DST, read_only_fd)
    signal(fds.kick_src)
    rig.barrier()
    kick = rig.engine.queue(slot).kick
    reason(kick.error, "kick", "destination", read_only_fd, errno.EBADF)
    assert kick.errors == 2  # the set_fd's signal and the relayed kick
    assert kick.reads == 1
    assert_others_relay(rig)


def test_destination_closed_while_relaying(rig: Rig) -> None:
    """A destination closed by its owner while the queue runs: the next
    relay fails and the error appears; other queues are unaffected."""
    slot, fds = rig.add()
    victim = rig.efd()
    rig.engine.set_fd(slot, Link.CALL, End.DST, victim)
    drain(victim)
    rig.fds.remove(victim)
    os.close(victim)
    signal(fds.call_src)
    wait_until(lambda: rig.engine.queue(slot).error is not None, what="the error state")
    reason(rig.engine.queue(slot).call.error, "call", "destination", victim, errno.EBADF)
    assert_others_relay(rig)


def test_source_at_end_of_file(rig: Rig) -> None:
    """A source that is a pipe whose writer is gone reads end of file: the
    error says the kick source is not an eventfd, and the engine stops
    watching it instead of spinning on it."""
    r, w = os.pipe()
    rig.fds.append(r)
    os.close(w)
    slot, _fds = rig.add()
    rig.engine.set_fd(slot, Link.KICK, End.SRC, r)
    wait_until(lambda: rig.engine.queue(slot).error is not None, what="the error state")
    kick = rig.engine.queue(slot).kick
    assert kick.error.startswith(f"kick source fd {r}:")
    assert "end of file" in kick.error and "not an eventfd" in kick.error
    rig.barrier()
    assert rig.engine.queue(slot).kick.errors == 1, "a dead source must be unwatched"
    assert_others_relay(rig)


def test_source_short_read(rig: Rig) -> None:
    """A source that yields fewer than 8 bytes is not an eventfd: read error
    with strerror(EIO) on the call source."""
    r, w = os.pipe()
    rig.fds += [r, w]
    os.write(w, b"abc")
    slot, _fds = rig.add()
    rig.engine.set_fd(slot, Link.CALL, End.SRC, r)
    wait_until(lambda: rig.engine.queue(slot).error is not None, what="the error state")
    reason(rig.engine.queue(slot).call.error, "call", "source", r, errno.EIO)
    assert "read failed" in rig.engine.queue(slot).call.error
    assert_others_relay(rig)


def test_regular_file_source_is_refused(rig: Rig) -> None:
    """A regular file is not an eventfd: set_fd refuses it with BadFd naming
    the kick source and the fd; the queue keeps its old source and relays."""
    with tempfile.TemporaryFile() as f:
        slot, fds = rig.add()
        with pytest.raises(BadFd, match=f"kick source fd {f.fileno()} is a regular file"):
            rig.engine.set_fd(slot, Link.KICK, End.SRC, f.fileno())
        assert rig.engine.queue(slot).kick.src == fds.kick_src
        rig.engine.remove_queue(slot)
    assert_others_relay(rig)


def test_same_source_twice_is_refused(rig: Rig) -> None:
    """One eventfd cannot be the source of two links (it would be read by
    both): the second add_queue is refused with FdInUse naming the fd and
    the link that has it, and the first link is untouched."""
    slot, fds = rig.add()
    with pytest.raises(FdInUse, match=f"fd {fds.kick_src} is already the kick source of queue"):
        rig.engine.add_queue(fds.kick_src, rig.efd())
    assert rig.engine.queue(slot).error is None


def test_replacing_the_bad_fd_clears_the_error(rig: Rig, closed_fd: int) -> None:
    """Replacing the failing fd with a good one clears the error and the
    link relays again, with the new destination signalled once."""
    slot = rig.engine.add_queue(rig.efd(), closed_fd)
    assert rig.engine.queue(slot).kick.error is not None
    good = rig.efd()
    rig.engine.set_fd(slot, Link.KICK, End.DST, good)
    kick = rig.engine.queue(slot).kick
    assert kick.healthy
    assert drain(good) == 1
    signal(kick.src)
    rig.barrier()
    assert drain(good) == 1


def test_replacing_the_other_end_keeps_the_error(rig: Rig) -> None:
    """A dead source is not revived by a new destination: the error must
    stay visible (it used to be cleared, leaving a link that looked healthy
    but was no longer watched). Replacing the source then clears it."""
    r, w = os.pipe()
    rig.fds.append(r)
    os.close(w)
    dst = rig.efd()
    slot = rig.engine.add_queue(r, dst)
    wait_until(lambda: rig.engine.queue(slot).error is not None, what="the error state")
    rig.engine.set_fd(slot, Link.KICK, End.DST, rig.efd())
    assert rig.engine.queue(slot).kick.error is not None, "source error hidden by set_fd(DST)"
    src = rig.efd()
    rig.engine.set_fd(slot, Link.KICK, End.SRC, src)
    assert rig.engine.queue(slot).kick.healthy


def test_bad_destination_error_survives_new_source(rig: Rig, read_only_fd: int) -> None:
    """A failing destination stays in error when only the source changes."""
    slot, _fds = rig.add()
    rig.engine.set_fd(slot, Link.CALL, End.DST, read_only_fd)
    rig.engine.set_fd(slot, Link.CALL, End.SRC, rig.efd())
    reason(rig.engine.queue(slot).call.error, "call", "destination", read_only_fd, errno.EBADF)


def test_many_broken_queues_do_not_stop_the_engine(rig: Rig, read_only_fd: int) -> None:
    """Twenty queues failing on every notification at once do not stop or
    stall the engine: a healthy queue relays every one of its 200 kicks."""
    broken = []
    for _ in range(20):
        slot, fds = rig.add()
        rig.engine.set_fd(slot, Link.KICK, End.DST, read_only_fd)
        broken.append((slot, fds))
    good_slot, good = rig.add()
    for _ in range(200):
        for _, fds in broken:
            signal(fds.kick_src)
        signal(good.kick_src)
        rig.barrier()
        assert drain(good.kick_dst) == 1
    snap = rig.engine.snapshot()
    assert all(snap.queues[slot].kick.errors >= 2 for slot, _ in broken)
    assert snap.queues[good_slot].error is None
    assert snap.health.alive
