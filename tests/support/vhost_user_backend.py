"""A scripted vhost-user back-end and a notification ping-pong, for tests that
watch every connection and every notification across svqtui's lifecycle
(tests/takeover).

``ScriptedBackend`` listens on a unix socket, answers what a vhost-user
back-end must (features with REPLY_ACK and MQ, 2 queues, acks), keeps each
ring's latest kick and call fds, and serves notifications: every kick it
reads is answered with one call. It counts connections and closes (a
takeover must show 1 and 0) and can hold its reply to one request type for a
while (``delay``). Its socket and its notifications run in two threads.

``PingPong`` drives one queue of a test front-end
(tests.support.vhost_user_frontend): it posts a sequence number, kicks, and
waits until the back-end has *seen* that number and a call arrived. A lost
kick or call is a timeout (``lost``); a spurious call is counted and
ignored. Each round trip's time is kept, so a takeover's gap shows up as the
longest one.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from svqtui.sources.vhost_user.codec import (
    ALWAYS_REPLIED,
    F_PROTOCOL_FEATURES,
    F_VERSION_1,
    NEED_REPLY,
    Decoder,
    FrontendRequest,
    Message,
    ProtocolFeature,
    VringState,
    close_fds,
    pack_u64,
    unpack_vring_file,
)
from tests.support.vhost_user_frontend import VhostUserFrontend

R = FrontendRequest
PROTOCOL = 1 << ProtocolFeature.REPLY_ACK | 1 << ProtocolFeature.MQ | 1 << ProtocolFeature.CONFIG
QUEUES = 2


@dataclass
class Shared:
    """What the front-end posted and the back-end has seen (one lock)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    posted: int = 0
    served: int = 0


class ScriptedBackend:
    """A vhost-user back-end peer for one front-end at a time."""

    def __init__(self, path: str, shared: Shared | None = None) -> None:
        self.path = path
        self.shared = shared or Shared()
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.listener.bind(path)
        self.listener.listen()
        self.connections = 0
        self.closes = 0  # the peer closed a connection (svqtui went away)
        self.requests: list[int] = []
        self.delay: dict[int, float] = {}  # request -> seconds before its reply
        self.holding = threading.Event()  # a delayed reply is being held now
        self.kicks = 0  # eventfd values read from kick fds
        self.calls = 0  # calls written
        self._lock = threading.Lock()
        self._kick: dict[int, int] = {}
        self._call: dict[int, int] = {}
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._threads = [
            threading.Thread(target=self._serve, name="backend-socket", daemon=True),
            threading.Thread(target=self._notify, name="backend-notify", daemon=True),
        ]
        for t in self._threads:
            t.start()

    # -- the socket ------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.listener, self._wake_r], [], [], 0.2)
            if self.listener not in ready:
                continue
            conn, _ = self.listener.accept()
            self.connections += 1
            with conn:
                if self._converse(conn):
                    self.closes += 1

    def _converse(self, conn: socket.socket) -> bool:
        """Serve one connection; True when the peer closed it."""
        decoder = Decoder()
        try:
            while not self._stop.is_set():
                ready, _, _ = select.select([conn, self._wake_r], [], [], 0.2)
                if conn not in ready:
                    continue
                data, anc, _, _ = conn.recvmsg(decoder.need, socket.CMSG_SPACE(8 * 4))
                fds = [
                    fd
                    for level, kind, raw in anc
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                    for fd in memoryview(raw[: len(raw) // 4 * 4]).cast("i")
                ]
                if not data:
                    close_fds(fds)
                    return True
                for msg in decoder.feed(data, fds):
                    self._answer(conn, msg)
            return False
        finally:
            decoder.close()

    def _answer(self, conn: socket.socket, msg: Message) -> None:
        self.requests.append(msg.request)
        delay = self.delay.get(msg.request)
        if delay:
            self.holding.set()
            time.sleep(delay)
            self.holding.clear()
        reply: bytes | None = None
        if msg.request in (R.SET_VRING_KICK, R.SET_VRING_CALL):
            index, nofd = unpack_vring_file(msg.payload)
            fd = msg.fds.pop(0) if msg.fds and not nofd else None
            table = self._kick if msg.request == R.SET_VRING_KICK else self._call
            with self._lock:
                old = table.pop(index, None)
                if fd is not None:
                    table[index] = fd
            if old is not None:
                os.close(old)
            os.write(self._wake_w, b"k")
        elif msg.request == R.GET_VRING_BASE:
            index = VringState.unpack(msg.payload).index
            with self._lock:
                old = self._kick.pop(index, None)
            if old is not None:
                os.close(old)
            reply = msg.reply(VringState(index, 0).pack()).encode()
        msg.close()
        if reply is None:
            if msg.request == R.GET_FEATURES:
                reply = msg.reply(pack_u64(1 << F_PROTOCOL_FEATURES | 1 << F_VERSION_1)).encode()
            elif msg.request == R.GET_PROTOCOL_FEATURES:
                reply = msg.reply(pack_u64(PROTOCOL)).encode()
            elif msg.request == R.GET_QUEUE_NUM:
                reply = msg.reply(pack_u64(QUEUES)).encode()
            elif msg.request in ALWAYS_REPLIED:
                reply = msg.reply(msg.payload).encode()
            elif msg.flags & NEED_REPLY:
                reply = msg.reply(pack_u64(0)).encode()
        if reply is not None:
            conn.sendall(reply)

    # -- notifications ---------------------------------------------------------------

    def _notify(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                kicks = dict(self._kick)
            poller = select.poll()
            poller.register(self._wake_r, select.POLLIN)
            for fd in kicks.values():
                poller.register(fd, select.POLLIN)
            for fd, _ in poller.poll(200):
                if fd == self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self._wake_r, 64)
                    continue
                self._kicked(fd, kicks)

    def _kicked(self, fd: int, kicks: dict[int, int]) -> None:
        with self._lock:
            index = next((i for i, k in self._kick.items() if k == fd), None)
            if index is None:  # replaced meanwhile
                return
            try:
                value = os.eventfd_read(fd)
            except BlockingIOError:
                return
            with self.shared.lock:
                self.shared.served = self.shared.posted
            self.kicks += value
            call = self._call.get(index)
            if call is not None:
                with contextlib.suppress(OSError):
                    os.eventfd_write(call, 1)
                    self.calls += 1

    def close(self) -> None:
        self._stop.set()
        os.write(self._wake_w, b"x")
        for t in self._threads:
            t.join(10)
        self.listener.close()
        with self._lock:
            close_fds([*self._kick.values(), *self._call.values()])
            self._kick.clear()
            self._call.clear()
        os.close(self._wake_r)
        os.close(self._wake_w)


class PingPong:
    """Kick -> call round trips on one queue, in a thread, nothing lost."""

    def __init__(
        self, fe: VhostUserFrontend, shared: Shared, queue: int = 0, timeout: float = 10.0
    ) -> None:
        self.fe = fe
        self.shared = shared
        self.queue = queue
        self.timeout = timeout
        self.rounds = 0
        self.spurious = 0
        self.lost: str | None = None
        self.times: list[tuple[float, float]] = []  # (start, duration) of each round
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pingpong", daemon=True)

    def start(self) -> PingPong:
        self._thread.start()
        return self

    def _run(self) -> None:
        q = self.fe.queues[self.queue]
        poller = select.poll()
        poller.register(q.call, select.POLLIN)
        while not self._stop.is_set():
            with self.shared.lock:
                self.shared.posted += 1
                seq = self.shared.posted
            start = time.monotonic()
            os.eventfd_write(q.kick, 1)
            q.kicks_sent += 1
            while True:
                left = start + self.timeout - time.monotonic()
                if left <= 0 or not poller.poll(left * 1000):
                    self.lost = f"round {seq}: no call within {self.timeout:g} s"
                    return
                with contextlib.suppress(BlockingIOError):
                    q.calls_received += os.eventfd_read(q.call)
                with self.shared.lock:
                    done = self.shared.served >= seq
                if done:
                    break
                self.spurious += 1
            self.times.append((start, time.monotonic() - start))
            self.rounds += 1
            time.sleep(0.001)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(self.timeout + 5)

    def worst_since(self, since: float) -> float:
        """The longest round trip that started at or after ``since``."""
        return max((d for s, d in self.times if s >= since), default=0.0)


class RequestProbe:
    """GET_FEATURES round trips on the front-end's socket, in a thread: the
    longest wait for a reply is how long the vhost-user path was frozen."""

    def __init__(self, fe: VhostUserFrontend, interval: float = 0.002) -> None:
        self.fe = fe
        self.interval = interval
        self.times: list[tuple[float, float]] = []
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="request-probe", daemon=True)

    def start(self) -> RequestProbe:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                self.fe.sync()
            except Exception as err:  # the socket closed or a reply was lost
                self.error = f"{type(err).__name__}: {err}"
                return
            self.times.append((start, time.monotonic() - start))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)

    def worst_since(self, since: float) -> float:
        return max((d for s, d in self.times if s >= since), default=0.0)
