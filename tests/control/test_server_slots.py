"""Fair slots on the control socket, with real sockets: idle clients and
followers cannot lock out a command, idle connections are closed with a
reason, and a hung device's action does not delay another device's."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svqtui.control.client import ControlClient
from svqtui.control.errors import ControlBusy
from svqtui.model import DeviceView, QueueView, SourceKind, VMView
from tests.support.control import Served, demo_runtime, serve
from tests.support.fake_source import FakeSource
from tests.support.wait import wait_until


def line(sock: socket.socket) -> dict[str, Any]:
    """One reply line from a raw connection (read byte by byte: nothing after
    it is consumed)."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return json.loads(data) if data else {}


def follower(path: str) -> tuple[socket.socket, dict[str, Any]]:
    """A connection that asked for events twice (what `ctl events --follow`
    does); its second reply."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b'{"id": 1, "cmd": "events", "args": {"since": 0}}\n')
    line(s)
    s.sendall(b'{"id": 2, "cmd": "events", "args": {"since": 0}}\n')
    return s, line(s)


def test_32_idle_clients_and_32_followers_do_not_lock_out_a_command(served: Served) -> None:
    """With 32 connections that send nothing and 32 following events, a new
    command is answered within 2 s; followers past the cap got a
    ControlBusy line, and the oldest idle ones were told why and closed."""
    served.server.first_request_s = 60  # only the slot caps are under test here
    with contextlib.ExitStack() as stack:
        idle = []
        for _ in range(32):
            s = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            s.settimeout(10)
            s.connect(served.path)
            idle.append(s)
        replies = []
        for _ in range(32):
            s, reply = follower(served.path)
            stack.enter_context(s)
            replies.append(reply)
        started = time.monotonic()
        with served.client(timeout=5) as c:
            assert c.hello()["protocol"] == 1
            c.shadow("web01/net0", True)
        assert time.monotonic() - started < 2.0
        ok = [r for r in replies if r.get("ok")]
        busy = [r for r in replies if not r.get("ok")]
        assert len(ok) == served.server.max_followers
        assert busy and all(r["error"]["type"] == "ControlBusy" for r in busy)
        assert "too many clients following events" in busy[0]["error"]["message"]
        told = line(idle[0])  # the oldest idle connection made room
        assert told["error"]["type"] == "ControlBusy" and "sent nothing" in told["error"]["message"]


def test_a_silent_connection_is_closed_with_a_reason(served: Served) -> None:
    """A connection that sends nothing within first_request_s gets one
    ControlIdleTimeout line, then EOF."""
    served.server.first_request_s = 0.3
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(served.path)
        started = time.monotonic()
        reply = line(s)
        assert reply["error"]["type"] == "ControlIdleTimeout"
        assert s.recv(1) == b""
        assert 0.2 < time.monotonic() - started < 5


def test_a_client_reconnects_after_an_idle_close(served: Served) -> None:
    """ControlClient notices that the server closed its idle connection and
    sends the next request on a new one, instead of failing it."""
    served.server.idle_s = 0.3
    with served.client() as c:
        assert c.hello()["protocol"] == 1
        time.sleep(1.0)
        assert c.hello()["protocol"] == 1


class TwoDevices(FakeSource):
    """The shared fake with devices "a" and "b"; shadowing "a" hangs until
    released (a back-end that does not answer)."""

    def __init__(self) -> None:
        super().__init__("two", kind=SourceKind.DEMO)
        devs = tuple(
            DeviceView(f"t:{n}", n, "test", SourceKind.DEMO, queues=(QueueView(0),)) for n in "ab"
        )
        self.vms = [VMView("t:vm", "vm", SourceKind.DEMO, devices=devs)]
        self.hung = threading.Event()
        self.release = threading.Event()

    def stop(self) -> None:
        self.release.set()

    def set_shadow(self, device_key: str, on: bool) -> None:
        super().set_shadow(device_key, on)
        if device_key == "t:a":
            self.hung.set()
            self.release.wait(30)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Served, TwoDevices]]:
    source = TwoDevices()
    with serve(demo_runtime(tmp_path / "c.sock", [source])) as served:
        yield served, source


def test_a_hung_device_does_not_delay_another_devices_action(
    two: tuple[Served, TwoDevices],
) -> None:
    """While shadowing "a" hangs, shadowing "b" is answered at once; actions
    piling up on "a" past max_waiting_actions get a ControlBusy reply; "a"'s
    action completes once its back-end answers, and idle lanes leave no thread."""
    served, source = two
    done: list[object] = []

    def shadow_a() -> None:
        with contextlib.suppress(ControlBusy), ControlClient(served.path, 30) as c:
            done.append(c.shadow("a", True))

    threads = [threading.Thread(target=shadow_a)]
    threads[0].start()
    try:
        assert source.hung.wait(10)
        started = time.monotonic()
        with served.client(timeout=5) as c:
            assert c.shadow("b", True)["done"] == "shadow on b"
        assert time.monotonic() - started < 2.0
        for _ in range(served.server.max_waiting_actions - 1):
            threads.append(threading.Thread(target=shadow_a))
            threads[-1].start()
        time.sleep(0.5)
        with served.client(timeout=5) as c, pytest.raises(ControlBusy, match="waiting on t:a"):
            c.shadow("a", False)
    finally:
        source.release.set()
        for t in threads:
            t.join(30)
    assert len(done) == served.server.max_waiting_actions
    assert ("shadow", "t:b", "True") in source.actions
    wait_until(lambda: not action_threads(), what="idle action lanes to end their threads")


def action_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("svqtui-ctl-action")]
