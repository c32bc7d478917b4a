"""svqtui's own messages to the back-end (a shadow switch) go only between
front-end messages, never while a front-end request awaits its reply, and
their acks are consumed by svqtui, not passed to QEMU."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from svqtui.sources.vhost_user.codec import (
    ALWAYS_REPLIED,
    F_PROTOCOL_FEATURES,
    NEED_REPLY,
    REPLY,
    VERSION,
    Decoder,
    FrontendRequest,
    Message,
    ProtocolFeature,
    close_fds,
    pack_u64,
    pack_vring_file,
)
from svqtui.sources.vhost_user.fdident import eventfd_id
from tests.support.vhost_user_rig import Context, InterposerRig

R = FrontendRequest
SLOW_S = 0.3


@dataclass
class Seen:
    request: int
    flags: int
    fd_ids: list[int | None] = field(default_factory=list)


class ScriptedBackend:
    """A minimal vhost-user back-end (a real socket peer) that answers what a
    back-end must, delays its GET_CONFIG reply by SLOW_S seconds, and checks
    that nothing else arrives on its socket while that reply is pending."""

    def __init__(self, path: str) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen()
        self.seen: list[Seen] = []
        self.got_slow_request = threading.Event()
        self.replied_slow = threading.Event()
        self.intrusions = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        decoder = Decoder()
        with conn:
            while True:
                data, anc, _, _ = conn.recvmsg(decoder.need, socket.CMSG_SPACE(32))
                if not data:
                    return
                fds = [
                    fd
                    for level, kind, raw in anc
                    if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS
                    for fd in struct.unpack(f"{len(raw) // 4}i", raw[: len(raw) // 4 * 4])
                ]
                for msg in decoder.feed(data, fds):
                    self.seen.append(Seen(msg.request, msg.flags, [eventfd_id(f) for f in msg.fds]))
                    msg.close()
                    self._answer(conn, msg)

    def _answer(self, conn: socket.socket, msg: Message) -> None:
        if msg.request == R.GET_CONFIG:
            self.got_slow_request.set()
            conn.settimeout(SLOW_S)
            try:
                if conn.recv(1, socket.MSG_PEEK):
                    self.intrusions += 1
            except TimeoutError:
                pass
            conn.settimeout(None)
            conn.sendall(Message(msg.request, VERSION | REPLY, msg.payload).encode())
            self.replied_slow.set()
        elif msg.request == R.GET_FEATURES:
            conn.sendall(msg.reply(pack_u64(1 << F_PROTOCOL_FEATURES)).encode())
        elif msg.request == R.GET_PROTOCOL_FEATURES:
            conn.sendall(msg.reply(pack_u64(1 << ProtocolFeature.REPLY_ACK)).encode())
        elif msg.request in ALWAYS_REPLIED or msg.flags & NEED_REPLY:
            conn.sendall(msg.reply(pack_u64(0)).encode())

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.fixture
def scripted(context: Context, sock_dir: Path) -> Iterator[tuple[InterposerRig, ScriptedBackend]]:
    backend = ScriptedBackend(str(sock_dir / "scripted.sock"))
    rig = InterposerRig(context, sock_dir, [str(sock_dir / "scripted.sock")])
    try:
        yield rig, backend
    finally:
        rig.close()
        backend.close()


def test_a_shadow_switch_waits_for_a_pending_reply_and_keeps_its_acks(
    scripted: tuple[InterposerRig, ScriptedBackend],
) -> None:
    """Shadow on, asked while QEMU's GET_CONFIG awaits the back-end's slow
    reply, sends nothing until that reply has passed; then the back-end gets
    SET_VRING_CALL and SET_VRING_KICK with svqtui's eventfds and need_reply,
    and QEMU receives exactly its own GET_CONFIG reply, none of svqtui's acks."""
    rig, backend = scripted
    fe = rig.frontend(queues=1).init()
    kick, call = os.eventfd(0, os.EFD_NONBLOCK), os.eventfd(0, os.EFD_NONBLOCK)
    try:
        fe.request(R.SET_VRING_CALL, pack_vring_file(0, False), [call], need_reply=True)
        fe.request(R.SET_VRING_KICK, pack_vring_file(0, False), [kick], need_reply=True)
        replies: list[Message] = []
        config = struct.pack("=III", 0, 4, 0) + b"abcd"
        asker = threading.Thread(target=lambda: replies.append(fe.request(R.GET_CONFIG, config)))
        asker.start()
        assert backend.got_slow_request.wait(10)
        rig.source.set_shadow(rig.key(), True)
        assert backend.replied_slow.is_set()  # the switch waited for the reply
        asker.join(10)
        assert [m.payload for m in replies] == [config]
        assert backend.intrusions == 0
        fe.sync()  # QEMU's next round trip gets its own reply, not an ack of svqtui's
        after = backend.seen[[s.request for s in backend.seen].index(R.GET_CONFIG) + 1 :]
        injected = [(s.request, s.flags) for s in after[:2]]
        assert injected == [
            (R.SET_VRING_CALL, VERSION | NEED_REPLY),
            (R.SET_VRING_KICK, VERSION | NEED_REPLY),
        ]
        ours = {i for s in after[:2] for i in s.fd_ids}
        assert ours.isdisjoint({eventfd_id(kick), eventfd_id(call)}) and None not in ours
        assert after[2].request == R.GET_FEATURES
    finally:
        close_fds([kick, call])
