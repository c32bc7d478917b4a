"""Faults: disconnects of either side, malformed messages from either side,
fuzzed garbage; each closes only its own pair, frees every fd and engine
queue, and the interposer keeps listening."""

from __future__ import annotations

import os
import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svqtui.sources.vhost_user.codec import (
    MAX_PAYLOAD,
    REPLY,
    VERSION,
    FrontendRequest,
    Message,
    pack_u64,
    pack_vring_file,
)
from tests.support.qsd import StorageDaemon, vhost_user_blk_daemon
from tests.support.vhost_user_frontend import VhostUserFrontend, pattern
from tests.support.vhost_user_rig import Context, InterposerRig, open_fds, wait_fds
from tests.support.wait import wait_until

R = FrontendRequest


def verified_io(fe: VhostUserFrontend, qi: int, generation: int, blocks: int = 4) -> None:
    for block in range(blocks):
        fe.write_block(qi, block, pattern(block, generation))
    for block in range(blocks):
        assert fe.read_block(qi, block) == pattern(block, generation)


def connections_ended(context: Context, key: str) -> int:
    """How many front-end connections of a device have ended (closed,
    refused, or dropped because the back-end was unreachable)."""
    return sum(
        ": disconnected: " in e.text or "refused a second front-end" in e.text
        for e in context.events(key)
    )


def wait_eof(sock: socket.socket) -> None:
    """Read until the interposer closes the connection (fails after 10 s)."""
    sock.settimeout(10)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass  # closed with our unread bytes still queued


def test_front_end_disconnect_frees_everything_and_listening_goes_on(rig: InterposerRig) -> None:
    """QEMU going away mid-shadow closes the back-end side too, releases every
    fd (received, dup'ed, svqtui's eventfds, memory maps) and engine queue, shows
    the device disconnected with the reason, and a new QEMU connects and works."""
    baseline = open_fds()
    fe = rig.ready_frontend().start()
    rig.source.set_shadow(rig.key(), True)
    verified_io(fe, 0, 1)
    assert rig.context.engine.queue_count == 2
    fe.close()
    rig.wait_connected(connected=False)
    assert rig.device().status == "disconnected: QEMU (front-end) closed the connection"
    assert rig.device().queues == ()
    wait_fds(baseline, "every fd of the connection to be closed")
    assert rig.context.engine.queue_count == 0
    fe2 = rig.ready_frontend().start()
    verified_io(fe2, 1, 2)
    assert rig.device().connected


def test_back_end_disconnect_closes_the_pair_and_reconnects_later(
    rig: InterposerRig, qsd: StorageDaemon
) -> None:
    """The back-end dying closes QEMU's connection too, frees everything and
    shows why; once the back-end is back, a reconnecting QEMU works again."""
    baseline = open_fds()
    fe1 = rig.ready_frontend(1).start()  # another device, gone with the same daemon
    fe = rig.ready_frontend().start()
    rig.source.set_shadow(rig.key(), True)
    verified_io(fe, 0, 1)
    qsd.stop()
    wait_eof(fe.sock)
    fe.close()
    rig.wait_connected(connected=False)
    assert rig.device().status == "disconnected: the back-end closed the connection"
    rig.wait_connected(1, connected=False)
    fe1.close()
    wait_fds(baseline, "every fd of both connections to be closed")
    assert rig.context.engine.queue_count == 0
    qsd.start()
    fe2 = rig.ready_frontend().start()
    verified_io(fe2, 0, 2)


def _oversized(sock: socket.socket) -> None:
    sock.send(struct.pack("=III", R.SET_FEATURES, VERSION, MAX_PAYLOAD + 1))


def _bad_version(sock: socket.socket) -> None:
    sock.send(struct.pack("=III", R.GET_FEATURES, 2, 0))


def _too_many_fds(sock: socket.socket) -> None:
    fds = [os.eventfd(0) for _ in range(9)]
    try:
        data = Message(R.SET_MEM_TABLE, VERSION, bytes(8)).encode()
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack(f"{len(fds)}i", *fds))]
        sock.sendmsg([data], anc)
    finally:
        for fd in fds:
            os.close(fd)


def _truncated(sock: socket.socket) -> None:
    sock.send(Message(R.SET_FEATURES, VERSION, pack_u64(1)).encode()[:15])
    sock.shutdown(socket.SHUT_WR)


def _kick_without_fd(sock: socket.socket) -> None:
    sock.send(Message(R.SET_VRING_KICK, VERSION, pack_vring_file(0, False)).encode())


def _short_u64(sock: socket.socket) -> None:
    sock.send(Message(R.SET_PROTOCOL_FEATURES, VERSION, b"\0\0\0\0").encode())


MALFORMED: dict[str, tuple[Callable[[socket.socket], None], str]] = {
    "oversized": (_oversized, "exceeds the 4096-byte bound"),
    "bad-version": (_bad_version, "protocol version 2"),
    "too-many-fds": (_too_many_fds, "9 fds for one message"),
    "truncated": (_truncated, "connection closed in the middle of SET_FEATURES"),
    "kick-without-fd": (_kick_without_fd, "SET_VRING_KICK: 0 fds without NOFD"),
    "short-u64": (_short_u64, "payload of 4 bytes, expected 8"),
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_malformed_message_closes_only_its_pair(rig: InterposerRig, kind: str) -> None:
    """A malformed message from QEMU closes that device's pair with one clear
    error line; the other interposed device keeps doing verified I/O, and
    every fd of the closed pair is released."""
    other = rig.ready_frontend(1).start()
    verified_io(other, 0, 1)
    baseline = open_fds()
    fe = rig.ready_frontend()
    send, expected = MALFORMED[kind]
    send(fe.sock)
    wait_eof(fe.sock)
    fe.close()
    rig.wait_connected(connected=False)
    errors = rig.context.events(rig.key(), "error")
    assert len(errors) == 1
    assert "malformed message from QEMU (front-end)" in errors[0].text
    assert expected in errors[0].text
    assert rig.device().status.startswith("disconnected: malformed message from QEMU")
    verified_io(other, 1, 2)
    assert rig.context.events(rig.key(1), "error") == []
    wait_fds(baseline, "the closed pair's fds to be released")


class FakeBackend:
    """A misbehaving vhost-user back-end (qemu-storage-daemon cannot be made
    to send malformed replies): it answers GET_FEATURES with ``reply``."""

    def __init__(self, path: str, reply: bytes) -> None:
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(path)
        self.listener.listen()
        self.reply = reply
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(12)
            conn.sendall(self.reply)
            conn.settimeout(10)
            while conn.recv(4096):
                pass

    def close(self) -> None:
        self.listener.close()
        self.thread.join(10)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (struct.pack("=III", R.GET_FEATURES, VERSION | REPLY, 1 << 20), "exceeds"),
        (struct.pack("=III", R.GET_FEATURES, 3 | REPLY, 0), "protocol version 3"),
        (Message(R.GET_FEATURES, VERSION, pack_u64(0)).encode(), "without the reply flag"),
    ],
    ids=["oversized", "bad-version", "not-a-reply"],
)
def test_malformed_reply_from_the_back_end_closes_the_pair(
    context: Context, sock_dir: Path, reply: bytes, expected: str
) -> None:
    """A back-end breaking the protocol closes its pair with one clear line
    naming the back-end; QEMU's side sees the connection close."""
    fake = FakeBackend(str(sock_dir / "fake.sock"), reply)
    rig = InterposerRig(context, sock_dir, [str(sock_dir / "fake.sock")])
    try:
        baseline = open_fds()
        fe = rig.frontend()
        fe.send(Message(R.GET_FEATURES))
        wait_eof(fe.sock)
        fe.close()
        rig.wait_connected(connected=False)
        (error,) = context.events(rig.key(), "error")
        assert "malformed message from the back-end" in error.text and expected in error.text
        wait_fds(baseline, "the pair's fds to be released")
    finally:
        rig.close()
        fake.close()


headers = st.builds(
    lambda req, flags, size, payload: struct.pack("=III", req, flags, size) + payload,
    st.integers(0, 45),
    st.sampled_from([0, 1, 2, 5, 9, 13, 0x10001]),
    st.integers(0, 70),
    st.binary(max_size=64),
)
garbage = st.lists(st.one_of(st.binary(min_size=1, max_size=200), headers), min_size=1, max_size=4)


def test_fuzzed_garbage_closes_only_its_pair(
    context: Context, sock_dir: Path, qsd: StorageDaemon
) -> None:
    """Hypothesis-generated garbage (random bytes and random headers with
    random payloads) sent to one device only ever costs that device's
    connection: a second device served by another qemu-storage-daemon does
    verified I/O throughout, the interposer keeps listening, and no fd leaks."""
    other_dir = sock_dir / "other"
    other_dir.mkdir()
    other_qsd = vhost_user_blk_daemon(other_dir, exports=1)
    other_qsd.start()
    rig = InterposerRig(context, sock_dir, [qsd.sockets[0], other_qsd.sockets[0]])
    stop = threading.Event()
    failures: list[BaseException] = []
    rounds = [0]
    try:
        other = rig.ready_frontend(1).start()
        rig.source.set_shadow(rig.key(1), True)

        def io() -> None:
            try:
                while not stop.is_set():
                    rounds[0] += 1
                    verified_io(other, rounds[0] % 2, rounds[0])
            except BaseException as err:
                failures.append(err)

        worker = threading.Thread(target=io)
        worker.start()
        baseline = open_fds()

        @given(garbage)
        @settings(
            max_examples=60,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
            database=None,
        )
        def fuzz(chunks: list[bytes]) -> None:
            ended = connections_ended(context, rig.key())
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(rig.devices[0].listen)
                for chunk in chunks:
                    sock.send(chunk)
            except OSError:
                pass  # the interposer may close the pair mid-way
            finally:
                sock.close()
            wait_until(
                lambda: connections_ended(context, rig.key()) > ended,
                what="the fuzzed connection to end",
            )
            assert not failures, failures

        fuzz()
        before = rounds[0]
        wait_until(lambda: failures or rounds[0] > before + 1, what="more I/O on the other device")
        stop.set()
        worker.join(30)
        assert not failures, failures
        assert rig.device(1).connected and rig.device(1).shadow
        assert context.events(rig.key(1), "error") == []
        assert rig.device(0).status.startswith("disconnected")
        malformed = [e for e in context.events(rig.key(0), "error") if "malformed" in e.text]
        assert malformed, "the fuzzer never produced a malformed message"
        wait_fds(baseline, "no fd leaked by the fuzzed pairs")
    finally:
        stop.set()
        rig.close()
        other_qsd.stop()


def test_unreachable_back_end_drops_qemu_with_the_reason(context: Context, sock_dir: Path) -> None:
    """When the back-end socket is missing, QEMU's connection is closed with
    one error line naming the back-end path, the device says why, and the
    interposer keeps listening (no fd leaks across attempts)."""
    missing = str(sock_dir / "no-backend.sock")
    rig = InterposerRig(context, sock_dir, [missing])
    try:
        baseline = open_fds()
        for _ in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(rig.devices[0].listen)
            wait_eof(sock)
            sock.close()
        wait_until(lambda: len(context.events(rig.key(), "error")) == 3, what="three error lines")
        status = rig.device().status
        assert (
            status == f"disconnected: back-end unreachable at {missing}: No such file or directory"
        )
        assert missing in context.events(rig.key(), "error")[0].text
        wait_fds(baseline, "no fd left by the attempts")
    finally:
        rig.close()
