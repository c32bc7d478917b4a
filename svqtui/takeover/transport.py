"""Moving a JSON document and any number of fds between two svqtui processes
over a connected unix stream socket (docs/design.md#takeover).

One bundle on the wire::

    "SVQB" | u32 JSON length | u32 fd count | JSON bytes
    then, per batch of at most BATCH_FDS fds:  "F" | u16 n  + SCM_RIGHTS(n fds)

The steps after it ("have everything", "released", "serving", an error) are
small messages without fds: ``"SVQM" | u32 JSON length | JSON bytes``, at
most MAX_STEP_BYTES each (``send_step`` / ``recv_step``).

Each batch is its own 3-byte message with its fds attached, and the
receiver reads exactly 3 bytes per batch, so a batch's fds are never merged
with another's (a unix stream socket does not join data carrying fds). The
kernel caps one SCM_RIGHTS message at 253 fds (SCM_MAX_FD). Received fds
are close-on-exec; on any error every fd received so far is closed, so a
failed transfer leaks nothing and the sender still holds its own copies.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import struct
from collections.abc import Sequence
from typing import Any

from svqtui.takeover.errors import TransportError

MAGIC = b"SVQB"
BATCH_FDS = 250
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_FDS = 1 << 20
STEP_MAGIC = b"SVQM"
MAX_STEP_BYTES = 1 << 20
_HEAD = struct.Struct("<4sII")
_BATCH = struct.Struct("<cH")
_STEP = struct.Struct("<4sI")


def send_bundle(sock: socket.socket, doc: dict[str, Any], fds: Sequence[int]) -> None:
    """Send ``doc`` and ``fds`` (duplicates arrive; the caller keeps its own)."""
    data = json.dumps(doc, separators=(",", ":")).encode()
    if len(data) > MAX_JSON_BYTES:
        raise TransportError(f"state document of {len(data)} bytes is over {MAX_JSON_BYTES}")
    sock.sendall(_HEAD.pack(MAGIC, len(data), len(fds)) + data)
    for start in range(0, len(fds), BATCH_FDS):
        batch = list(fds[start : start + BATCH_FDS])
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", batch).tobytes())]
        sent = sock.sendmsg([_BATCH.pack(b"F", len(batch))], rights)
        if sent != _BATCH.size:  # 3 bytes on a blocking stream socket: all or an error
            raise TransportError(f"fd batch header cut short ({sent} of {_BATCH.size} bytes)")


def _exact(sock: socket.socket, n: int, what: str) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise TransportError(f"the peer closed the hand-over stream during {what}")
        buf += chunk
    return bytes(buf)


def recv_bundle(sock: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """Receive one bundle: the document and the fds, in the order sent."""
    magic, size, count = _HEAD.unpack(_exact(sock, _HEAD.size, "the bundle header"))
    if magic != MAGIC:
        raise TransportError(f"not a hand-over bundle (magic {magic!r})")
    if size > MAX_JSON_BYTES or count > MAX_FDS:
        raise TransportError(f"bundle too large ({size} bytes, {count} fds)")
    try:
        doc = json.loads(_exact(sock, size, "the state document"))
    except (UnicodeDecodeError, ValueError) as err:
        raise TransportError(f"the state document is not JSON: {err}") from None
    if not isinstance(doc, dict):
        raise TransportError("the state document is not a JSON object")
    fds: list[int] = []
    try:
        while len(fds) < count:
            fds.extend(_recv_batch(sock, min(BATCH_FDS, count - len(fds))))
    except BaseException:
        _close(fds)
        raise
    return doc, fds


def _recv_batch(sock: socket.socket, expected: int) -> list[int]:
    space = socket.CMSG_SPACE(expected * 4)
    data, ancdata, flags, _ = sock.recvmsg(_BATCH.size, space, socket.MSG_CMSG_CLOEXEC)
    got: list[int] = []
    for level, kind, raw in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            arr = array.array("i")
            arr.frombytes(raw[: len(raw) - len(raw) % 4])
            got.extend(arr)
    try:
        if not data:
            raise TransportError("the peer closed the hand-over stream during the fds")
        if flags & socket.MSG_CTRUNC:
            raise TransportError("fds were lost in transit (control data truncated)")
        if len(data) != _BATCH.size:
            raise TransportError(f"fd batch header of {len(data)} bytes, expected {_BATCH.size}")
        tag, n = _BATCH.unpack(data)
        if tag != b"F" or n != expected or len(got) != expected:
            raise TransportError(
                f"fd batch announced {n} fds, {len(got)} arrived, {expected} expected"
            )
    except BaseException:
        _close(got)
        raise
    return got


def _close(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


def send_step(sock: socket.socket, step: str, **fields: Any) -> None:
    """Send one step message ``{"step": step, ...fields}``."""
    data = json.dumps({"step": step, **fields}, separators=(",", ":")).encode()
    if len(data) > MAX_STEP_BYTES:
        raise TransportError(f"step message of {len(data)} bytes is over {MAX_STEP_BYTES}")
    sock.sendall(_STEP.pack(STEP_MAGIC, len(data)) + data)


def recv_step(sock: socket.socket) -> dict[str, Any]:
    """Receive one step message (bounded; the socket's timeout applies)."""
    magic, size = _STEP.unpack(_exact(sock, _STEP.size, "a step header"))
    if magic != STEP_MAGIC or size > MAX_STEP_BYTES:
        raise TransportError(f"not a step message (magic {magic!r}, {size} bytes)")
    try:
        doc = json.loads(_exact(sock, size, "a step message"))
    except (UnicodeDecodeError, ValueError) as err:
        raise TransportError(f"a step message is not JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("step"), str):
        raise TransportError("a step message without a step")
    return doc
