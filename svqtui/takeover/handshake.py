"""The takeover's handshake on the control socket (docs/design.md#takeover).

The new svqtui (N) connects to the control socket the old one (O) serves and
sends one request line::

    {"id": 1, "cmd": "takeover",
     "args": {"protocol": 1, "state_versions": [1], "optional": ["metrics", "events"]}}

``optional`` lists the optional parts of the state this svqtui reads (an
older one omits it): O sends a part that carries fds only when it is
listed, since an fd the reader does not know is refused.

O answers with one ordinary response line. A refusal is an error response
(TakeoverStateRefused, TakeoverRunning, TakeoverBusy: one line). An
acceptance ``{"pid": O's pid, "state_version": 1}`` carries exactly one fd
by SCM_RIGHTS on its first byte: one end of a fresh unix stream socket pair,
on which the hand-over runs (svqtui.takeover.transport), so large fd
batches never interleave with control replies.
"""

from __future__ import annotations

import array
import contextlib
import os
import select
import socket
import time
from typing import Any

from svqtui.control.protocol import (
    MAX_RESPONSE_BYTES,
    PROTOCOL_VERSION,
    Command,
    Request,
    Response,
    decode_line,
)
from svqtui.errors import ControlError
from svqtui.takeover.errors import TakeoverAborted, TransportError
from svqtui.takeover.state import UNDERSTOOD_VERSIONS
from svqtui.takeover.timeline import Timeline
from svqtui.unix_socket import peer_uid

#: The optional parts of the state this svqtui reads (docs/design.md#takeover).
OPTIONAL_PARTS = ("metrics", "events")
REPLY_TIMEOUT_S = 15.0  # O freezes (at most 5 s) and captures before it answers


def takeover_request(
    state_versions: list[int] | None = None, requested_at: float | None = None
) -> Request:
    """``requested_at``: this process's ``time.monotonic()`` (O's timeline
    counts from it, svqtui.takeover.timeline)."""
    versions = sorted(UNDERSTOOD_VERSIONS) if state_versions is None else state_versions
    return Request(
        Command.TAKEOVER,
        {
            "protocol": PROTOCOL_VERSION,
            "state_versions": versions,
            "optional": list(OPTIONAL_PARTS),
            **({} if requested_at is None else {"requested_at": requested_at}),
        },
        id=1,
    )


def _fds_of(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, raw in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(raw[: len(raw) - len(raw) % 4])
            fds.extend(arr)
    return fds


def request_handover(
    path: str,
    timeout: float = REPLY_TIMEOUT_S,
    state_versions: list[int] | None = None,
    timeline: Timeline | None = None,
) -> tuple[dict[str, Any], socket.socket]:
    """Ask the svqtui serving ``path`` to hand over; return its answer and
    the hand-over stream. Its refusal is raised as its wire class (one line);
    ``ControlUnreachable``-like trouble as ControlError. ``timeline`` gets
    the request (its origin) and the answer."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    fds: list[int] = []
    try:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError as err:
            raise ControlError(
                f"takeover: no svqtui serves {path} ({err.strerror or err}): start one "
                "without --takeover"
            ) from None
        uid = peer_uid(sock)
        if uid is not None and uid not in (0, os.getuid()):
            raise ControlError(f"takeover: {path} is served by uid {uid}, not by this user")
        now = time.monotonic()
        if timeline is not None:
            timeline.origin = timeline.mark("request", now)
        sock.sendall(takeover_request(state_versions, now).encode())
        line = bytearray()
        deadline = time.monotonic() + timeout
        while not line.endswith(b"\n"):
            sock.settimeout(max(deadline - time.monotonic(), 0.001))
            try:
                data, anc, flags, _ = sock.recvmsg(
                    65536, socket.CMSG_SPACE(4 * 4), socket.MSG_CMSG_CLOEXEC
                )
            except TimeoutError:
                raise TakeoverAborted(
                    f"takeover: the svqtui serving {path} did not answer within {timeout:g} s"
                ) from None
            fds.extend(_fds_of(anc))
            if flags & socket.MSG_CTRUNC:
                raise TransportError("takeover: the hand-over stream's fd was lost in transit")
            if not data:
                raise TakeoverAborted(f"takeover: the svqtui serving {path} closed the connection")
            line += data
            if len(line) > MAX_RESPONSE_BYTES:
                raise TakeoverAborted("takeover: the answer is too long")
        result = Response.from_wire(decode_line(bytes(line), "response")).unwrap()
        if len(fds) != 1 or not isinstance(result, dict):
            raise TakeoverAborted(f"takeover: the answer carried {len(fds)} fds, expected 1")
        stream = socket.socket(fileno=fds.pop())
        if timeline is not None:
            timeline.mark("answer")
        if stream.family != socket.AF_UNIX or stream.type != socket.SOCK_STREAM:
            stream.close()
            raise TakeoverAborted("takeover: the hand-over fd is not a unix stream socket")
        return result, stream
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        sock.close()


def send_with_fd(sock_fd: int, data: bytes, fd: int, timeout: float = 5.0) -> None:
    """Send ``data`` with ``fd`` attached to its first byte on the connected
    socket ``sock_fd`` (nonblocking, an asyncio transport's, with nothing
    buffered), waiting at most ``timeout`` for room."""
    rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())]
    dup = socket.socket(fileno=os.dup(sock_fd))  # never changes the file's O_NONBLOCK
    try:
        deadline = time.monotonic() + timeout
        poller = select.poll()
        poller.register(dup.fileno(), select.POLLOUT)
        while data:
            try:
                sent = dup.sendmsg([data], rights, socket.MSG_NOSIGNAL)
            except BlockingIOError:
                sent = 0
            if sent:
                data, rights = data[sent:], []
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                raise TakeoverAborted("takeover: the requester does not read its answer")
            poller.poll(left * 1000)
    finally:
        dup.close()
