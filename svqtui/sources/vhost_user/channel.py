"""One vhost-user socket on the I/O loop: framed reads, fd passing, queued writes.

A ``Channel`` owns a nonblocking unix stream socket and reads it with the
asyncio loop's reader callbacks (asyncio streams cannot pass fds). Each read
asks for exactly the bytes that complete the current header or payload, so
the SCM_RIGHTS fds of a read always belong to the message being assembled.
Writes go out at once when the socket takes them, else they queue (bounded)
until it is writable again. Nothing here knows what the messages mean.
"""

from __future__ import annotations

import array
import asyncio
import collections
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from svqtui.errors import ProtocolError
from svqtui.sources.vhost_user.codec import Decoder, Message, close_fds
from svqtui.sources.vhost_user.errors import TooManyFds

SCM_MAX_FD = 253  # the kernel's limit of fds per SCM_RIGHTS message
ANCILLARY_SPACE = socket.CMSG_SPACE(SCM_MAX_FD * array.array("i").itemsize)
MAX_MESSAGES_PER_WAKEUP = 64  # fairness between sockets on the loop
MAX_QUEUED_BYTES = 1 << 20  # a peer that stops reading this long is broken

OnMessage = Callable[[Message], None]
OnClosed = Callable[[str, ProtocolError | None], None]


@dataclass(slots=True)
class _Outgoing:
    data: bytes
    fds: list[int]  # sent with the first byte of data
    owned: list[int] = field(default_factory=list)  # closed once sent (or dropped)


def _received_fds(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, data in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(data[: len(data) - len(data) % arr.itemsize])
            fds.extend(arr)
    return fds


class Channel:
    """A vhost-user message stream over one socket, driven by one asyncio loop.

    ``on_message`` gets each complete message (it then owns the message's
    fds); ``on_closed`` is called once when the peer hangs up, breaks the
    protocol or an I/O error occurs (not when ``close()`` is called).
    ``on_drained`` is called when a write backlog has been flushed.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        on_message: OnMessage,
        on_closed: OnClosed,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        sock.setblocking(False)
        self._loop = loop
        self._sock = sock
        self._fd = sock.fileno()
        self._on_message = on_message
        self._on_closed = on_closed
        self._on_drained = on_drained
        self._decoder = Decoder()
        self._out: collections.deque[_Outgoing] = collections.deque()
        self._queued = 0
        self._pauses: set[str] = set()
        self._reading = False
        self._writing = False
        self._output_held = False  # a takeover: the backlog is being handed over
        self.closed = False

    # -- a takeover (docs/design.md#takeover) --------------------------------

    def fileno(self) -> int:
        return self._fd

    def hold_output(self, held: bool) -> None:
        """Stop (or resume) writing the backlog: a frozen channel's unwritten
        output is handed over, so it must not also be written from here."""
        self._output_held = held
        if held and self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        elif not held:
            self._flush()

    def handover_state(
        self,
    ) -> tuple[tuple[int, int, int] | None, bytes, list[int], list[tuple[bytes, list[int]]]]:
        """While paused: the partial message read but not decoded (header,
        bytes, fds) and the output not yet written (data, fds still to send
        with it). The channel keeps owning every fd."""
        header, buf, fds = self._decoder.state()
        return header, buf, fds, [(item.data, list(item.fds)) for item in self._out]

    def adopt(
        self,
        header: tuple[int, int, int] | None,
        buf: bytes,
        fds: list[int],
        out: list[tuple[bytes, list[int]]],
    ) -> None:
        """Continue where another process's channel stopped (before
        ``start()``): its partial message and its unwritten output, whose
        fds this channel now owns."""
        self._decoder.restore(header, buf, fds)
        for data, out_fds in out:
            self._out.append(_Outgoing(data, list(out_fds), list(out_fds)))
            self._queued += len(data)

    # -- reading -------------------------------------------------------------

    def start(self) -> None:
        self._update_reader()
        if self._out:
            self._flush()

    def pause(self, reason: str) -> None:
        """Stop reading until every reason given here is resumed."""
        self._pauses.add(reason)
        self._update_reader()

    def resume(self, reason: str) -> None:
        self._pauses.discard(reason)
        self._update_reader()

    def _update_reader(self) -> None:
        want = not self.closed and not self._pauses
        if want and not self._reading:
            self._loop.add_reader(self._fd, self._readable)
        elif not want and self._reading:
            self._loop.remove_reader(self._fd)
        self._reading = want

    def _readable(self) -> None:
        for _ in range(MAX_MESSAGES_PER_WAKEUP):
            if self.closed or self._pauses:
                return
            try:
                data, ancdata, flags, _ = self._sock.recvmsg(self._decoder.need, ANCILLARY_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self._fail(f"read failed: {err.strerror or err}", None)
                return
            fds = _received_fds(ancdata)
            try:
                if flags & socket.MSG_CTRUNC:
                    close_fds(fds)
                    raise TooManyFds(
                        f"fds of a message were lost: more than {SCM_MAX_FD}, or svqtui"
                        " has no room for them (open-file limit)"
                    )
                if not data:
                    close_fds(fds)
                    self._decoder.eof()
                    self._fail("closed the connection", None)
                    return
                messages = self._decoder.feed(data, fds)
            except ProtocolError as err:
                self._fail(str(err), err)
                return
            for message in messages:
                self._on_message(message)
                if self.closed:
                    message.close()
                    return

    # -- writing -------------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Bytes queued because the peer's socket buffer was full."""
        return self._queued

    def send(self, message: Message, fds: Sequence[int] | None = None) -> None:
        """Send a message. Without ``fds`` the message's own fds go along and
        are closed once sent; with ``fds`` those go instead (the caller keeps
        them) and the message's own fds are closed now."""
        if fds is None:
            out = _Outgoing(message.encode(), list(message.fds), list(message.fds))
        else:
            data = message.encode()
            message.close()
            out = _Outgoing(data, list(fds))
        message.fds = []
        if self.closed:
            close_fds(out.owned)
            return
        self._out.append(out)
        self._queued += len(out.data)
        self._flush()

    def _flush(self) -> None:
        if self._output_held:
            return
        while self._out and not self.closed:
            item = self._out[0]
            anc = (
                [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", item.fds).tobytes())]
                if item.fds
                else []
            )
            try:
                sent = self._sock.sendmsg([item.data], anc, socket.MSG_NOSIGNAL)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                self._fail(f"write failed: {err.strerror or err}", None)
                return
            if item.fds:
                close_fds(item.owned)
                item.fds, item.owned = [], []
            item.data = item.data[sent:]
            self._queued -= sent
            if not item.data:
                self._out.popleft()
        if self.closed:
            return
        if self._queued > MAX_QUEUED_BYTES:
            self._fail(f"stopped reading ({self._queued} bytes queued)", None)
            return
        want = bool(self._out)
        if want and not self._writing:
            self._loop.add_writer(self._fd, self._flush)
        elif not want and self._writing:
            self._loop.remove_writer(self._fd)
            if self._on_drained is not None:
                self._on_drained()
        self._writing = want

    # -- closing -------------------------------------------------------------

    def _fail(self, reason: str, error: ProtocolError | None) -> None:
        if self.closed:
            return
        self.close()
        self._on_closed(reason, error)

    def close(self) -> None:
        """Close the socket and every fd still queued (idempotent, no callback)."""
        if self.closed:
            return
        self.closed = True
        if self._reading:
            self._loop.remove_reader(self._fd)
            self._reading = False
        if self._writing:
            self._loop.remove_writer(self._fd)
            self._writing = False
        for item in self._out:
            close_fds(item.owned)
        self._out.clear()
        self._queued = 0
        self._decoder.close()
        self._sock.close()
