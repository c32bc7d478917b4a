"""Helpers for the engine tests: real eventfds and a command barrier (waits:
tests.support.wait).

Nothing here is a mock: every fd is a real eventfd (or a real pipe/file where a
test wants a bad one) and every engine is a real Engine with its C thread.
"""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass

from svqtui.engine import Engine


def eventfd() -> int:
    """A fresh nonblocking eventfd (the caller closes it)."""
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def signal(fd: int, value: int = 1) -> None:
    """Add `value` to an eventfd, as a guest kick or a device call does."""
    os.write(fd, value.to_bytes(8, "little"))


def drain(fd: int) -> int:
    """Read and clear an eventfd's counter without blocking; 0 when unsignalled."""
    try:
        return int.from_bytes(os.read(fd, 8), "little")
    except BlockingIOError:
        return 0


def readable(fd: int) -> bool:
    """Whether an eventfd is signalled, without consuming it."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


@dataclass(frozen=True)
class QueueFds:
    """The four fds of one relayed queue, as add_queue takes them."""

    kick_src: int
    kick_dst: int
    call_src: int
    call_dst: int


class Rig:
    """A running engine plus the eventfds a test makes, closed after the engine stops."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.fds: list[int] = []
        # A queue without fds, taken first: barrier() sends it no-op commands.
        self._idle = engine.add_queue()

    def efd(self) -> int:
        """A fresh nonblocking eventfd, closed at teardown."""
        fd = eventfd()
        self.fds.append(fd)
        return fd

    def add(self, masked: bool = False) -> tuple[int, QueueFds]:
        """Add a queue on four fresh eventfds, with the add's signals drained.

        Checks on the way that the add signalled both destinations exactly
        once (a masked call link latches its signal as pending instead).
        """
        fds = QueueFds(self.efd(), self.efd(), self.efd(), self.efd())
        slot = self.engine.add_queue(
            fds.kick_src, fds.kick_dst, fds.call_src, fds.call_dst, masked=masked
        )
        assert drain(fds.kick_dst) == 1
        assert drain(fds.call_dst) == (0 if masked else 1)
        return slot, fds

    def barrier(self) -> None:
        """Return once every notification written before the call is handled.

        Submits two no-op commands (unmask a queue that has no fds) and waits
        for each. The engine relays every ready source of a loop iteration
        before it applies that iteration's commands, and the second command is
        submitted after the first was applied, so it is applied in an iteration
        whose epoll_wait began after the first was applied, hence after
        everything this thread wrote before calling barrier(): a source written
        before is relayed (or latched) by then. Two commands, not one, because
        a leftover command-ring wakeup could let a single command be taken by an
        iteration whose epoll_wait returned before it was submitted. (More
        than MAX_EVENTS ready sources at once could spill into a later
        iteration; no test comes near that.)
        """
        self.engine.set_masked(self._idle, False)
        self.engine.set_masked(self._idle, False)

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds.clear()


class Hammer:
    """A thread that signals `target()` until stopped, counting what it wrote."""

    def __init__(self, target: Callable[[], int]) -> None:
        self.target = target
        self.written = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hammer", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            signal(self.target())
            self.written += 1

    def __enter__(self) -> Hammer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
