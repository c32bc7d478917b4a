"""What a frozen vhost-user channel hands over: a message read only in part
and output the peer has not taken yet both continue in the new channel, byte
for byte (svqtui.sources.vhost_user.channel, docs/design.md#takeover)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Iterator

import pytest

from svqtui.io_loop import IOLoop
from svqtui.sources.vhost_user.channel import Channel
from svqtui.sources.vhost_user.codec import VERSION, FrontendRequest, Message, pack_u64
from tests.support.wait import wait_until

R = FrontendRequest


@pytest.fixture
def loop() -> Iterator[IOLoop]:
    io = IOLoop(name="test-handover")
    io.start()
    yield io
    io.stop()


def test_a_partial_message_and_a_backlog_continue_in_the_new_channel(loop: IOLoop) -> None:
    """Freeze with 6 bytes of a header read and output queued behind a full
    socket buffer; a channel on a duplicate of the socket adopts both: the
    message completes with its fd, the peer receives every queued byte
    once (the frozen channel writes nothing more)."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    got: list[Message] = []
    old: list[Channel] = []
    big = Message(R.SET_MEM_TABLE, VERSION, bytes(range(256)) * 15)

    async def make_old() -> None:
        ch = Channel(asyncio.get_running_loop(), ours, got.append, lambda why, err: None)
        ch.start()
        old.append(ch)

    loop.call(make_old())
    msg = Message(R.SET_FEATURES, VERSION, pack_u64(0x1234))
    data = msg.encode()
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    peer.sendmsg([data[:6]], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, efd.to_bytes(4, "little"))])
    wait_until(lambda: old[0].handover_state()[1] != b"", what="the header read in part")

    async def freeze() -> tuple[object, ...]:
        ch = old[0]
        for _ in range(40):  # more than both socket buffers take
            ch.send(Message(big.request, big.flags, big.payload))
        ch.pause("takeover")  # as Connection.freeze does
        ch.hold_output(True)
        return ch.handover_state()

    header, buf, fds, out = loop.call(freeze())  # type: ignore[misc]
    assert header is None and buf == data[:6] and len(fds) == 1
    queued = b"".join(d for d, _ in out)
    assert queued  # the peer did not take it all

    new_got: list[Message] = []
    new: list[Channel] = []
    dup = socket.socket(fileno=os.dup(ours.fileno()))
    received_fds = [os.dup(fd) for fd in fds]  # what the transport would deliver

    async def adopt() -> None:
        ch = Channel(asyncio.get_running_loop(), dup, new_got.append, lambda why, err: None)
        ch.adopt(header, buf, received_fds, [(d, list(f)) for d, f in out])  # type: ignore[arg-type]
        ch.start()
        new.append(ch)

    loop.call(adopt())
    expected = len(big.encode()) * 40
    peer.sendall(data[6:])
    received = bytearray()
    peer.settimeout(5)
    while len(received) < expected:
        chunk = peer.recv(1 << 16)
        assert chunk
        received += chunk
    wait_until(lambda: bool(new_got), what="the message completed in the new channel")
    (done,) = new_got
    assert done.request == R.SET_FEATURES and done.payload == msg.payload and len(done.fds) == 1
    assert bytes(received) == big.encode() * 40
    done.close()
    os.close(efd)
    loop.call(_close(old[0]))
    loop.call(_close(new[0]))
    peer.close()


async def _close(ch: Channel) -> None:
    ch.close()
