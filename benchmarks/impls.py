"""The four relay implementations under test, behind one small interface.

Owns the adapters only: svqtui's engine (`engine` with its default adaptive
polling, `engine_off` never spinning, `engine_fixed` spinning 200 us after
every batch), the reference C relay of
c_relay.c (`c`), a pure-Python epoll relay (`python_epoll`) and an asyncio
relay (`asyncio`). Each relays, per queue, a kick link A -> B and a call link
B -> C, so one notification written to A crosses the relay twice before the
driver sees it on C. Each counts the eventfd values it read from kick sources,
which is what the benchmark's lost-notification figure is checked against.
Every relay thread is created by open(), so it inherits the calling thread's
CPU affinity.
"""

from __future__ import annotations

import asyncio
import os
import select
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from svqtui.engine import Engine, Polling

ONE = (1).to_bytes(8, sys.byteorder)
SETTLE_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class QueueFds:
    """One benchmark queue: the driver writes `a` and waits for `c`."""

    a: int  # kick source, written by the driver
    b: int  # kick destination and call source: the relay reads it back itself
    c: int  # call destination, waited for by the driver


class Relay(Protocol):
    """What the benchmark needs from an implementation."""

    name: str

    def open(self, queues: Sequence[QueueFds]) -> None:
        """Start relaying these queues; return once relaying is in force."""

    def kick_notifications(self) -> int:
        """Sum of the eventfd values read from every kick source so far."""

    def close(self) -> None:
        """Stop relaying; the caller closes the fds afterwards."""


class EngineRelay:
    """svqtui.engine.Engine, one queue per benchmark queue, in one polling mode."""

    def __init__(self, polling: Polling = Polling.ADAPTIVE, poll_us: int = 200) -> None:
        self.name = "engine" if polling is Polling.ADAPTIVE else f"engine_{polling.value}"
        self.polling = polling
        self.poll_us = poll_us
        self._engine: Engine | None = None
        self._opened_ns = 0

    def open(self, queues: Sequence[QueueFds]) -> None:
        engine = Engine(max_queues=max(len(queues), 1), polling=self.polling, poll_us=self.poll_us)
        engine.start()
        self._engine = engine
        self._opened_ns = time.monotonic_ns()
        for q in queues:
            engine.add_queue(kick_src=q.a, kick_dst=q.b, call_src=q.b, call_dst=q.c)
        self._wait_add_signals(len(queues))

    def _wait_add_signals(self, count: int) -> None:
        """add_queue signals B and C once; wait until B's signal reached C too,
        so draining C afterwards leaves every queue quiet."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while self._call_notifications() < count:
            if time.monotonic() > deadline:
                raise TimeoutError("the engine did not relay its add-time signals")
            time.sleep(0.001)

    def _call_notifications(self) -> int:
        if self._engine is None:
            return 0
        return sum(q.call.notifications for q in self._engine.snapshot().queues.values())

    def kick_notifications(self) -> int:
        if self._engine is None:
            return 0
        return sum(q.kick.notifications for q in self._engine.snapshot().queues.values())

    def usage(self) -> tuple[float, float, float]:
        """(engine thread CPU s, spin s, wall s) since open()."""
        if self._engine is None:
            return 0.0, 0.0, 0.0
        stats = self._engine.polling()
        wall = (time.monotonic_ns() - self._opened_ns) / 1e9
        return (stats.thread_cpu_ns or 0) / 1e9, stats.spin_ns / 1e9, wall

    def close(self) -> None:
        if self._engine is not None:
            self._engine.stop()
            self._engine = None


class CRelay:
    """The reference relay of c_relay.c, run in a thread with the GIL released."""

    name = "c"

    def __init__(self, lib: Any) -> None:
        self._lib = lib
        self._raw: Any = None
        self._kick_links: list[int] = []
        self._thread: threading.Thread | None = None

    def open(self, queues: Sequence[QueueFds]) -> None:
        lib = self._lib
        self._raw = lib.crelay_create(2 * len(queues))
        if not self._raw:
            raise OSError("crelay_create failed")
        for q in queues:
            self._kick_links.append(self._add(q.a, q.b))
            self._add(q.b, q.c)
        self._thread = threading.Thread(target=lib.crelay_run, args=(self._raw,), daemon=True)
        self._thread.start()

    def _add(self, src: int, dst: int) -> int:
        link = int(self._lib.crelay_add(self._raw, src, dst))
        if link < 0:
            raise OSError(-link, os.strerror(-link))
        return link

    def kick_notifications(self) -> int:
        return sum(int(self._lib.crelay_notifications(self._raw, i)) for i in self._kick_links)

    def close(self) -> None:
        if self._thread is not None:
            self._lib.crelay_stop(self._raw)
            self._thread.join()
            self._thread = None
        if self._raw is not None:
            self._lib.crelay_destroy(self._raw)
            self._raw = None


class _PythonRelayBase:
    """Routing table and counters shared by the two pure-Python relays."""

    def __init__(self) -> None:
        self._routes: dict[int, int] = {}
        self._counts: dict[int, int] = {}
        self._kick_srcs: list[int] = []
        self._thread: threading.Thread | None = None

    def _plan(self, queues: Sequence[QueueFds]) -> None:
        for q in queues:
            self._routes[q.a] = q.b
            self._routes[q.b] = q.c
            self._kick_srcs.append(q.a)
        self._counts = dict.fromkeys(self._routes, 0)

    def _relay_one(self, src: int) -> None:
        """The hot path: drain one readable source, count, write 1 onwards."""
        try:
            data = os.read(src, 8)
        except BlockingIOError:
            return
        self._counts[src] += int.from_bytes(data, sys.byteorder)
        os.write(self._routes[src], ONE)

    def _start(self, target: Callable[[], None], name: str) -> None:
        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def kick_notifications(self) -> int:
        return sum(self._counts[fd] for fd in self._kick_srcs)


class PythonEpollRelay(_PythonRelayBase):
    """select.epoll + os.read/os.write in one thread."""

    name = "python_epoll"

    def __init__(self) -> None:
        super().__init__()
        self._epoll = select.epoll()
        self._stopfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def open(self, queues: Sequence[QueueFds]) -> None:
        self._plan(queues)
        for fd in (*self._routes, self._stopfd):
            self._epoll.register(fd, select.EPOLLIN)
        self._start(self._run, "python-epoll-relay")

    def _run(self) -> None:
        poll, relay_one, stopfd = self._epoll.poll, self._relay_one, self._stopfd
        while True:
            for fd, _events in poll():
                if fd == stopfd:
                    return
                relay_one(fd)

    def close(self) -> None:
        if self._thread is not None:
            os.eventfd_write(self._stopfd, 1)
            self._thread.join()
            self._thread = None
        self._epoll.close()
        os.close(self._stopfd)


class AsyncioRelay(_PythonRelayBase):
    """An asyncio event loop in one thread, one loop.add_reader per source."""

    name = "asyncio"

    def __init__(self) -> None:
        super().__init__()
        self._loop = asyncio.new_event_loop()

    def open(self, queues: Sequence[QueueFds]) -> None:
        self._plan(queues)
        for fd in self._routes:
            self._loop.add_reader(fd, self._relay_one, fd)
        self._start(self._run, "asyncio-relay")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def close(self) -> None:
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._thread = None
        for fd in self._routes:
            self._loop.remove_reader(fd)
        self._loop.close()


def factories(clib: Any) -> dict[str, Callable[[], Relay]]:
    """Implementation name -> constructor, in report order."""
    return {
        "engine": EngineRelay,
        "engine_off": lambda: EngineRelay(Polling.OFF),
        "engine_fixed": lambda: EngineRelay(Polling.FIXED, 200),
        "c": lambda: CRelay(clib),
        "python_epoll": PythonEpollRelay,
        "asyncio": AsyncioRelay,
    }
