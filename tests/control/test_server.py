"""The control socket server, in process: real engine, real demo source, real
unix socket, driven through the client API and through raw bytes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svqtui.control.protocol import MAX_REQUEST_BYTES
from svqtui.engine.errors import BadFault, EngineNotRunning
from svqtui.errors import ControlError
from svqtui.model import (
    DeviceView,
    MaskState,
    QueueView,
    SourceKind,
    VMView,
)
from svqtui.outputs.json_doc import snapshot_document
from svqtui.outputs.table import format_table
from svqtui.sources.demo import DemoSource
from svqtui.sources.errors import ActionUnsupported, QueueOutOfRange, UnknownDevice
from tests.support.control import Served, demo_runtime, serve
from tests.support.fake_source import FakeSource

NET = "demo:web01/net0"


def queue(served: Served, key: str, index: int) -> QueueView:
    with served.client() as c:
        snap = c.snapshot()
    return next(q for q in snap.devices[key].queues if q.index == index)


def raw_exchange(path: str, payload: bytes) -> list[dict[str, Any]]:
    """Send raw bytes, half-close, and return every reply line until EOF."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return [json.loads(line) for line in data.splitlines()]


def test_status_is_the_once_json_shape(served: Served) -> None:
    """`status` returns exactly the JSON document of the latest snapshot, the
    shape of `svqtui --once --json`: VMs hold devices, devices hold queues."""
    latest = served.runtime.monitor.refresh()
    with served.client() as c:
        status = c.status()
    assert status == json.loads(json.dumps(snapshot_document(latest)))
    queues = [q for vm in status["vms"] for d in vm["devices"] for q in d["queues"]]
    assert len(queues) == 10
    assert {"kicks", "calls", "mask", "shadow"} <= set(queues[0])


def test_snapshot_rebuilds_the_model_exactly(served: Served) -> None:
    """`snapshot` rebuilds a Snapshot equal to the server's, so a client renders
    the same table as `svqtui --once`."""
    demo = served.runtime.sources[0]
    assert isinstance(demo, DemoSource)
    demo.advance(20)
    served.runtime.monitor.refresh()
    demo.advance(20)
    latest = served.runtime.monitor.refresh()
    with served.client() as c:
        snap = c.snapshot()
    assert snap == latest
    assert any(r.history for r in snap.rows.values())
    assert format_table(snap) == format_table(latest)


def test_actions_change_what_status_shows(served: Served) -> None:
    """mask/unmask/kick/call/shadow/reset go through the runtime to the demo
    source, and the next status shows their effect."""
    demo = served.runtime.sources[0]
    assert isinstance(demo, DemoSource)
    with served.client() as c:
        c.mask("web01/net0", 1)
        assert queue(served, NET, 1).mask in (MaskState.MASKED, MaskState.PENDING)
        c.call(NET, 1)  # a call while masked is held: PENDING
        assert queue(served, NET, 1).mask is MaskState.PENDING
        c.unmask("net0", 1)
        assert queue(served, NET, 1).mask is MaskState.UNMASKED
        before = queue(served, NET, 2)
        c.kick(NET, 2)
        c.call(NET, 2)
        after = queue(served, NET, 2)
        assert after.injected_kicks == before.injected_kicks + 1
        assert after.injected_calls == before.injected_calls + 1
        demo.advance(10)
        served.runtime.monitor.refresh()  # status shows the latest refresh
        assert (queue(served, NET, 0).kicks or 0) > 0
        c.reset("web01/net0")
        assert queue(served, NET, 0).kicks == 0
        c.shadow("db01/blk0", False)
        status = c.status()
        blk = status["vms"][1]["devices"][0]
        assert blk["shadow"] is False and not any(q["shadow"] for q in blk["queues"])
        c.shadow("blk0", True)
        assert c.status()["vms"][1]["devices"][0]["shadow"] is True


def test_action_errors_are_precise_and_the_connection_goes_on(served: Served) -> None:
    """Unknown device, queue out of range and an unsupported action come back
    as their own error classes with one-line messages; the connection stays usable."""
    with served.client() as c:
        with pytest.raises(UnknownDevice, match="no device 'nope'"):
            c.kick("nope", 0)
        with pytest.raises(QueueOutOfRange, match="has queues 0-7, not 8"):
            c.mask("net0", 8)
        c.shadow("net0", False)
        with pytest.raises(ActionUnsupported, match="shadow mode is off"):
            c.mask("net0", 0)
        with pytest.raises(UnknownDevice):
            c.reset("nope")
        assert c.hello()["pid"] == os.getpid()


def test_engine_not_running_is_reported(tmp_path: Path) -> None:
    """With the engine thread stopped, an action that needs it answers
    EngineNotRunning instead of hanging or crashing the server."""
    with serve(demo_runtime(tmp_path / "c.sock")) as served, served.client() as c:
        served.runtime.engine.stop()
        with pytest.raises(EngineNotRunning):
            c.kick(NET, 0)
        served.runtime.monitor.refresh_soon(wait=True)  # status shows the latest snapshot
        assert c.status()["engine"]["alive"] is False


def test_events_since_a_sequence_number(served: Served) -> None:
    """`events` returns the log after a sequence number: actions show up once."""
    with served.client() as c:
        seq, events = c.events(0)
        assert any("demo" in e.text for e in events)
        c.kick(NET, 3)
        seq2, new = c.events(seq)
        assert seq2 > seq
        assert any(e.text == "control: kick net0 queue 3" and e.device_key == NET for e in new)
        assert c.events(seq2) == (seq2, [])


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"this is not json\n", "not JSON"),
        (b"[1,2,3]\n", "not a JSON object"),
        (b'{"id": 4, "cmd": "frobnicate"}\n', "unknown command"),
        (b'{"cmd": "kick", "args": {"device": "net0", "queue": "zero"}}\n', "'queue'"),
        (b'{"cmd": "shadow", "args": {"device": "net0"}}\n', "'on'"),
    ],
)
def test_malformed_requests_get_an_error_and_the_connection_goes_on(
    served: Served, payload: bytes, message: str
) -> None:
    """A malformed request is answered with a ControlProtocolError and the same
    connection still answers the next request."""
    replies = raw_exchange(served.path, payload + b'{"id": 9, "cmd": "hello"}\n')
    assert len(replies) == 2
    assert replies[0]["ok"] is False and replies[0]["error"]["type"] == "ControlProtocolError"
    assert message in replies[0]["error"]["message"]
    assert replies[0]["id"] == (4 if b'"id": 4' in payload else None)  # echoed when readable
    assert replies[1] == {"id": 9, "ok": True, "result": replies[1]["result"]}


def test_a_huge_line_closes_only_its_connection(served: Served) -> None:
    """A request line over the limit gets an error and its connection is closed
    (the reply may be lost to a reset, as the server does not read the rest);
    another client connected meanwhile, and new clients, are served."""
    with served.client() as bystander:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(10)
            s.connect(served.path)
            received = b""
            try:
                s.sendall(b"x" * (4 * MAX_REQUEST_BYTES))
                while chunk := s.recv(65536):
                    received += chunk
            except (ConnectionResetError, BrokenPipeError):
                pass  # closed: the other acceptable outcome
        assert received == b"" or b"longer than" in received
        assert bystander.hello()["protocol"] == 1
    with served.client() as c:
        assert c.hello()["protocol"] == 1


def test_a_last_request_without_newline_is_answered(served: Served) -> None:
    """`printf '{"cmd":"hello"}' | socat - UNIX:...` works: the final line need not end in \\n."""
    replies = raw_exchange(served.path, b'{"id": "a", "cmd": "hello"}')
    assert replies[0]["id"] == "a" and replies[0]["ok"] is True


class StandIn(FakeSource):
    """The shared fake source with one 2-queue device whose shadow action
    blocks until released, or fails with a bug-like exception: timings and
    failures the demo source cannot produce."""

    def __init__(self) -> None:
        super().__init__("stand-in", kind=SourceKind.DEMO)
        dev = DeviceView("t:vm/d", "d", "test", SourceKind.DEMO, queues=(QueueView(0),))
        self.vms = [VMView("t:vm", "vm", SourceKind.DEMO, devices=(dev,))]
        self.entered = threading.Event()
        self.release = threading.Event()
        self.crash = False

    def stop(self) -> None:
        self.release.set()

    def set_shadow(self, device_key: str, on: bool) -> None:
        if self.crash:
            raise RuntimeError("a bug")
        self.entered.set()
        self.release.wait(30)


@pytest.fixture
def stand_in(tmp_path: Path) -> Iterator[tuple[Served, StandIn]]:
    source = StandIn()
    with serve(demo_runtime(tmp_path / "c.sock", [source])) as served:
        yield served, source


def test_an_internal_error_is_one_line_and_the_server_goes_on(
    stand_in: tuple[Served, StandIn],
) -> None:
    """An unexpected exception in a source becomes a ControlError reply and an
    event log line; the server keeps answering."""
    served, source = stand_in
    source.crash = True
    with served.client() as c:
        with pytest.raises(ControlError, match="internal error in shadow: RuntimeError: a bug"):
            c.shadow("d", True)
        assert c.hello()["protocol"] == 1
    _, events = served.runtime.log.since(0)
    assert any(e.level == "error" and "a bug" in e.text for e in events)


def test_a_slow_action_blocks_neither_reads_nor_the_io_loop(
    stand_in: tuple[Served, StandIn],
) -> None:
    """While an action waits (an engine command or a vhost-user round trip can
    take ~2 s), other clients' reads are answered and the I/O loop, which
    forwards vhost-user messages, keeps running."""
    served, source = stand_in
    done: list[object] = []

    def act() -> None:
        with served.client(timeout=30) as c:
            done.append(c.shadow("d", True))

    actor = threading.Thread(target=act)
    actor.start()
    try:
        assert source.entered.wait(10)
        with served.client() as c:
            assert c.status()["vms"][0]["name"] == "vm"
        assert served.runtime.loop.call(asyncio.sleep(0, result="alive"), timeout=5) == "alive"
        assert not done
    finally:
        source.release.set()
        actor.join(30)
    assert done and done[0] == {"device": "t:vm/d", "name": "d", "done": "shadow on d"}


def connect_as_nobody(path: str) -> str:
    """In a forked child running as uid/gid 65534: connect, say hello, and
    report "denied", "eof" (dropped unanswered, or reset) or "answered"."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain syscalls only, then _exit
        try:
            os.close(r)
            os.setgid(65534)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            try:
                s.connect(path)
            except PermissionError:
                result = b"denied"
            else:
                try:
                    s.sendall(b'{"cmd": "hello"}\n')
                    result = b"eof" if s.recv(100) == b"" else b"answered"
                except (ConnectionResetError, BrokenPipeError):
                    result = b"eof"
        except BaseException as err:
            result = repr(err).encode()
        os.write(w, result)
        os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    os.waitpid(pid, 0)
    return out


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another user")
def test_other_users_are_kept_out() -> None:
    """The socket is 0600 so another user cannot connect; and even if its mode is
    widened by hand, the server drops clients of another uid (peer credentials)."""
    base = tempfile.mkdtemp(prefix="svq")
    try:
        os.chmod(base, 0o755)
        with serve(demo_runtime(Path(base) / "c.sock")) as served:
            assert connect_as_nobody(served.path) == "denied"
            os.chmod(served.path, 0o666)
            assert connect_as_nobody(served.path) == "eof"
            with served.client() as c:
                assert c.hello()["protocol"] == 1
        _, events = served.runtime.log.since(0)
        assert any("refused a client of uid 65534" in e.text for e in events)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_clients_beyond_the_limit_are_turned_away(served: Served) -> None:
    """Past max_clients, a new connection gets one error line and is closed;
    the connected clients go on."""
    served.server.max_clients = 1
    with served.client() as first:
        assert first.hello()["protocol"] == 1
        with pytest.raises(ControlError, match="too many control clients"), served.client() as c:
            c.hello()
        assert first.hello()["protocol"] == 1


def test_fault_arms_counts_and_clears_over_the_socket(served: Served) -> None:
    """`fault` arms a named fault on a queue (its view says so), a dropped call
    is counted, `clear` disarms; a bad fault name is a BadFault in one line."""
    demo = served.runtime.sources[0]
    assert isinstance(demo, DemoSource)
    with served.client() as c:
        c.fault(NET, 1, "drop-call", 2)
        assert queue(served, NET, 1).fault == "drop the next 2 calls"
        c.fault(NET, 1, "clear")
        assert queue(served, NET, 1).fault is None
        c.fault(NET, 1, "dup-call")
        demo.advance(4)
        served.runtime.monitor.refresh_soon(wait=True)
        assert queue(served, NET, 1).duplicated >= 1
        with pytest.raises(BadFault, match="drop-everything"):
            c.fault(NET, 1, "drop-everything")


def test_a_takeover_request_without_a_donor_is_refused_in_one_line(served: Served) -> None:
    """Only ``--headless`` can be taken over: elsewhere a takeover request is
    a TakeoverError line and the connection closes; serving goes on."""
    replies = raw_exchange(
        served.path,
        b'{"id": 1, "cmd": "takeover", "args": {"protocol": 1, "state_versions": [1]}}\n',
    )
    assert len(replies) == 1 and replies[0]["error"]["type"] == "TakeoverError"
    assert "only --headless" in replies[0]["error"]["message"]
    with served.client() as c:
        assert c.hello()["pid"] == os.getpid()


def test_paused_accepting_keeps_new_clients_waiting(served: Served) -> None:
    """A takeover's freeze pauses accepting: a client connecting meanwhile
    waits in the listen backlog and is served once accepting resumes."""
    loop = served.runtime.loop
    loop.call(served.server.pause_accepting())
    answer: list[dict[str, Any]] = []

    def hello() -> None:
        with served.client(timeout=10) as c:
            answer.append(c.hello())

    waiter = threading.Thread(target=hello)
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive() and not answer
    loop.call(served.server.resume_accepting())
    waiter.join(10)
    assert answer and answer[0]["pid"] == os.getpid()
