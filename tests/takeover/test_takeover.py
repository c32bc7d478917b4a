"""``svqtui --headless --takeover`` end to end (docs/design.md#takeover): a
real old svqtui (O) and new one (N), a scripted front-end and back-end in
this process, notifications flowing throughout."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.control.protocol import Command
from svqtui.model import MaskState
from svqtui.sources.vhost_user.codec import FrontendRequest
from svqtui.takeover.errors import StateRefused, TakeoverBusy, TakeoverRunning
from svqtui.takeover.handshake import request_handover
from tests.support.wait import wait_until
from tests.takeover.rig import (
    DEVICE,
    IDLE_DEVICE,
    TakeoverRig,
    fd_count,
    fd_kinds,
    settled_fd_count,
)

R = FrontendRequest


@pytest.fixture
def make_rig(tmp_path: Path) -> Iterator[type[TakeoverRig]]:
    rigs: list[TakeoverRig] = []

    class Made(TakeoverRig):
        def __init__(self, shadow: bool, env: dict[str, str] | None = None) -> None:  # type: ignore[override]
            super().__init__(tmp_path, shadow, env)
            rigs.append(self)

    yield Made
    for rig in rigs:
        rig.close()


def _nothing_closed(rig: TakeoverRig) -> None:
    assert rig.backend.connections == 1 and rig.backend.closes == 0
    assert rig.pingpong is not None and rig.pingpong.lost is None, rig.pingpong.lost
    if rig.probe is not None:
        rig.probe.stop()  # the front-end's socket has one user at a time
        assert rig.probe.error is None, rig.probe.error
    rig.frontend.sync()  # the front-end's socket still works, both ways


def _log_lines(text: str, needle: str) -> list[str]:
    return [line for line in text.splitlines() if needle in line]


@pytest.mark.parametrize("shadow", [True, False], ids=["shadow-on", "shadow-off"])
def test_takeover_during_traffic_loses_nothing(make_rig: type[TakeoverRig], shadow: bool) -> None:
    """A takeover while kicks and calls flow and requests are answered: no
    socket closes on either peer, every kick gets its call (a spurious call
    is allowed), counters continue, N holds as many fds as O did, O exits 0."""
    rig = make_rig(shadow)
    rig.start_traffic()
    o_pid = rig.current.proc.pid if rig.current.proc else 0
    o_kinds = fd_kinds(o_pid)  # before any control client connects
    o_fds = len(o_kinds)
    if shadow:  # an operator hold on the queue without traffic
        wait_until(lambda: 1 in rig.queues(), what="O shows the queues")
        with rig.current.client() as c:
            c.mask(DEVICE, 1)
    before = rig.queues()
    rounds = rig.pingpong.rounds if rig.pingpong else 0
    assert rig.take_over() == 0
    wait_until(lambda: rig.pingpong is not None and rig.pingpong.rounds > rounds + 50)
    _nothing_closed(rig)
    after = rig.queues()
    assert rig.current.proc is not None
    n_fds = settled_fd_count(rig.current.proc.pid, o_fds)
    n_kinds = Counter(fd_kinds(rig.current.proc.pid))
    assert n_fds == o_fds, (n_kinds - Counter(o_kinds), Counter(o_kinds) - n_kinds)
    assert {q: v.shadow for q, v in after.items()} == {q: v.shadow for q, v in before.items()}
    # the guest memory came along: N reads the rings' indices from it
    assert before[0].avail_idx is not None and after[0].avail_idx is not None
    assert before[0].error is None and after[0].error is None
    if shadow:
        for q, view in before.items():
            assert (after[q].kicks or 0) >= (view.kicks or 0)
            assert (after[q].calls or 0) >= (view.calls or 0)
        assert (after[0].kicks or 0) > (before[0].kicks or 0)
        assert before[1].hold and after[1].hold
        assert after[1].mask in (MaskState.MASKED, MaskState.PENDING)
    assert len(_log_lines(rig.retired[0].stderr, "handed over to svqtui pid")) == 1
    assert "taken over: QEMU connected" in rig.current.stderr
    assert "Traceback" not in rig.current.stderr + rig.retired[0].stderr


def test_takeover_waits_for_a_pending_reply(make_rig: type[TakeoverRig]) -> None:
    """A takeover between a vhost-user request and its reply: O freezes only
    after the back-end's reply went to the front-end, which gets it."""
    rig = make_rig(True)
    rig.start_traffic(probe=False)
    rig.backend.delay[R.GET_CONFIG] = 1.0
    replied: list[float] = []

    def ask() -> None:
        reply = rig.frontend.request(R.GET_CONFIG, bytes(12 + 8))
        assert reply is not None and reply.request == R.GET_CONFIG
        replied.append(time.monotonic())

    asker = threading.Thread(target=ask)
    asker.start()
    assert rig.backend.holding.wait(5)
    assert rig.take_over() == 0
    exited = time.monotonic()
    asker.join(10)
    assert replied and replied[0] < exited
    _nothing_closed(rig)


def test_takeover_waits_for_a_shadow_switch(make_rig: type[TakeoverRig]) -> None:
    """A takeover in the middle of a shadow toggle: O finishes the switch
    (the back-end acks late), then hands over; N relays in shadow mode."""
    rig = make_rig(False)
    rig.start_traffic(probe=False)
    rig.backend.delay[R.SET_VRING_CALL] = 0.5
    done: list[object] = []

    def toggle() -> None:
        with rig.current.client(timeout=20) as c:
            done.append(c.shadow(DEVICE, True))

    toggler = threading.Thread(target=toggle)
    toggler.start()
    assert rig.backend.holding.wait(5)
    assert rig.take_over() == 0
    toggler.join(20)
    assert done, "the shadow toggle got no answer"
    rig.backend.delay.clear()
    _nothing_closed(rig)
    assert all(q.shadow for q in rig.queues().values())


@pytest.mark.parametrize("step", ["answer", "bundle", "refuse", "have", "hang", "released"])
def test_old_svqtui_resumes_when_the_new_one_fails(make_rig: type[TakeoverRig], step: str) -> None:
    """N dies, refuses or hangs at a step before "released" (or dies right
    after it, before it serves): O takes its rings back and goes on
    forwarding, with one log line saying why; the peers see nothing; a later
    takeover still works."""
    rig = make_rig(True)
    rig.start_traffic()
    old = rig.current
    assert old.proc is not None
    n = rig.successor(env={"SVQTUI_TAKEOVER_TEST_FAIL": step})
    assert n.proc is not None
    wait_until(lambda: _log_lines(old.stderr, "takeover failed"), timeout=20, what="O resumes")
    if step == "hang":
        n.stop()
    else:
        assert n.proc.wait(20) != 0
    rounds = rig.pingpong.rounds if rig.pingpong else 0
    wait_until(lambda: rig.pingpong is not None and rig.pingpong.rounds > rounds + 50)
    assert old.proc.poll() is None
    with old.client() as c:
        assert c.hello()["pid"] == old.proc.pid
    assert len(_log_lines(old.stderr, "takeover failed")) == 1
    assert "Traceback" not in old.stderr + n.stderr
    if step == "refuse":
        assert _log_lines(n.stderr, "svqtui: takeover refused: a test asked")
    _nothing_closed(rig)
    rig.retired.append(n)
    assert rig.take_over() == 0
    _nothing_closed(rig)


def test_unknown_state_version_is_refused(make_rig: type[TakeoverRig]) -> None:
    """A takeover request for a state version O does not hand over is
    refused with one line; O goes on unchanged."""
    rig = make_rig(True)
    rig.start_traffic()
    old = rig.current
    assert old.proc is not None
    with pytest.raises(StateRefused) as refused:
        request_handover(old.socket_path, state_versions=[99])
    assert "\n" not in str(refused.value) and "state version" in str(refused.value)
    with old.client() as c, pytest.raises(StateRefused):
        c.request(Command.TAKEOVER, protocol=1, state_versions=["x"])
    rounds = rig.pingpong.rounds if rig.pingpong else 0
    wait_until(lambda: rig.pingpong is not None and rig.pingpong.rounds > rounds + 50)
    with old.client() as c:
        assert c.hello()["pid"] == old.proc.pid
    _nothing_closed(rig)


def test_repeated_takeovers_keep_fds_and_report_the_gap(make_rig: type[TakeoverRig]) -> None:
    """20 takeovers in a row, shadow toggled between them, traffic all along:
    nothing lost, fd counts stable (per shadow mode: shadow holds 2
    eventfds per ring); prints the gap per takeover (the longest
    request/reply and kick/call round trip, front-end's view)."""
    rig = make_rig(True)
    rig.start_traffic()
    assert rig.current.proc is not None
    fds: dict[bool, set[int]] = {True: {fd_count(rig.current.proc.pid)}, False: set()}
    shadow = True
    request_gaps: list[float] = []
    notify_gaps: list[float] = []
    for i in range(20):
        if i % 5 == 4:
            shadow = i % 10 != 4
            with rig.current.client(timeout=20) as c:
                c.shadow(DEVICE, shadow)
        start = time.monotonic()
        assert rig.take_over() == 0
        time.sleep(0.1)
        assert rig.probe is not None and rig.pingpong is not None
        request_gaps.append(rig.probe.worst_since(start))
        notify_gaps.append(rig.pingpong.worst_since(start))
        assert rig.current.proc is not None
        known = fds[shadow] or {fd_count(rig.current.proc.pid)}
        fds[shadow].add(settled_fd_count(rig.current.proc.pid, min(known)))
    _nothing_closed(rig)
    ms = [1000 * g for g in request_gaps]
    ks = [1000 * g for g in notify_gaps]
    print(
        f"\ntakeover gap, request/reply: p50 {statistics.median(ms):.1f} ms, max {max(ms):.1f} ms;"
        f" kick/call: p50 {statistics.median(ks):.1f} ms, max {max(ks):.1f} ms;"
        f" fd counts (shadow on, off) {sorted(fds[True])}, {sorted(fds[False])};"
        f" spurious calls {rig.pingpong.spurious}"
    )
    assert len(fds[True]) == 1 and len(fds[False]) == 1, fds


def _notifications(sock: socket.socket, timeout: float) -> Iterator[dict[str, str]]:
    deadline = time.monotonic() + timeout
    while True:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        data = sock.recv(4096).decode()
        yield dict(line.split("=", 1) for line in data.splitlines() if "=" in line)


def test_sigusr2_starts_a_successor_that_tells_systemd(make_rig: type[TakeoverRig]) -> None:
    """SIGUSR2 makes O start ``svqtui ... --takeover`` itself (how the
    systemd unit upgrades): the successor sends READY=1 with MAINPID= its own
    pid to NOTIFY_SOCKET, O exits 0, the peers see nothing."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = tempfile.mktemp(prefix="svq-notify-", dir="/tmp")
    notify.bind(path)
    n_pid = 0
    try:
        rig = make_rig(True, env={"NOTIFY_SOCKET": path})
        old = rig.current
        assert old.proc is not None
        first = next(m for m in _notifications(notify, 20) if "READY" in m)
        assert first["MAINPID"] == str(old.proc.pid)
        rig.start_traffic()
        old.proc.send_signal(signal.SIGUSR2)
        ready = next(m for m in _notifications(notify, 30) if "READY" in m)
        n_pid = int(ready["MAINPID"])
        assert n_pid != old.proc.pid
        assert old.proc.wait(30) == 0
        with old.client() as c:
            assert c.hello()["pid"] == n_pid
        _nothing_closed(rig)
        assert "SIGUSR2: started a successor" in old.stderr
    finally:
        notify.close()
        os.unlink(path)
        if n_pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(n_pid, signal.SIGTERM)
            wait_until(lambda: not os.path.exists(f"/proc/{n_pid}"), timeout=20)


def test_a_second_takeover_is_refused_while_one_runs(make_rig: type[TakeoverRig]) -> None:
    """While a hand-over is running (its requester holds the stream), a
    second takeover request on a control connection made before it is
    refused with one line (TakeoverRunning; new connections wait in the
    backlog meanwhile); when the first requester closes its stream, O
    resumes with one log line."""
    rig = make_rig(True)
    rig.start_traffic()
    old = rig.current
    with old.client() as early:
        early.hello()
        _, stream = request_handover(old.socket_path)
        try:
            with pytest.raises(TakeoverRunning) as refused:
                early.request(Command.TAKEOVER, protocol=1, state_versions=[1])
            assert "\n" not in str(refused.value)
        finally:
            stream.close()
    wait_until(lambda: _log_lines(old.stderr, "takeover failed"), timeout=20, what="O resumes")
    assert len(_log_lines(old.stderr, "takeover failed")) == 1
    rounds = rig.pingpong.rounds if rig.pingpong else 0
    wait_until(lambda: rig.pingpong is not None and rig.pingpong.rounds > rounds + 50)
    _nothing_closed(rig)


def test_a_reply_pending_past_the_budget_refuses_the_takeover(
    make_rig: type[TakeoverRig],
) -> None:
    """A front-end request whose reply the back-end holds longer than the
    5 s switch budget: the takeover is refused with one line
    (TakeoverBusy); O goes on and the reply still arrives."""
    rig = make_rig(True)
    rig.start_traffic(probe=False)
    rig.backend.delay[R.GET_CONFIG] = 7.0
    replied: list[bool] = []

    def ask() -> None:
        replied.append(rig.frontend.request(R.GET_CONFIG, bytes(20)) is not None)

    rig.frontend.sock.settimeout(15)
    asker = threading.Thread(target=ask)
    asker.start()
    assert rig.backend.holding.wait(5)
    with pytest.raises(TakeoverBusy) as refused:
        request_handover(rig.current.socket_path)
    assert "\n" not in str(refused.value) and "GET_CONFIG" in str(refused.value)
    asker.join(15)
    assert replied == [True]
    rig.backend.delay.clear()
    _nothing_closed(rig)


def _shadow_wanted(rig: TakeoverRig, name: str) -> bool:
    """The shadow mode a device without a connection will start in."""
    time.sleep(0.3)  # a refresh (0.1 s) later
    with rig.current.client() as c:
        snap = c.snapshot()
    note = next(d for vm in snap.vms for d in vm.devices if d.name == name).shadow_note
    return "shadow on when QEMU connects" in note


def test_actions_during_a_freeze_are_refused_not_lost(tmp_path: Path) -> None:
    """While a takeover has O frozen (N hangs before "have"), a shadow change
    for a device without a connection, and a mask on a connected one, sent
    on a connection opened before, are refused with one line
    (TakeoverRunning), not applied and lost; once O resumes they apply, and
    a change made then reaches N in the next takeover."""
    rig = TakeoverRig(tmp_path, True, idle_device=True)
    try:
        rig.start_traffic(probe=False)
        old = rig.current
        with old.client(timeout=20) as c:
            c.hello()
            n = rig.successor(env={"SVQTUI_TAKEOVER_TEST_FAIL": "hang"})
            refused: list[TakeoverRunning] = []

            def attempt() -> bool:
                try:
                    c.shadow(IDLE_DEVICE, True)
                except TakeoverRunning as err:
                    refused.append(err)
                    return True
                return False

            wait_until(attempt, timeout=20, interval=0.01, what="an action refused by the freeze")
            with pytest.raises(TakeoverRunning):
                c.mask(DEVICE, 0)
            msg = str(refused[0])
            assert "\n" not in msg and "a takeover of this svqtui is running; try again" in msg
            wait_until(lambda: _log_lines(old.stderr, "takeover failed"), timeout=20)
            n.stop()
            rig.retired.append(n)
            c.shadow(IDLE_DEVICE, True)  # O goes on: applied now
        assert _shadow_wanted(rig, IDLE_DEVICE)
        assert rig.take_over() == 0
        assert _shadow_wanted(rig, IDLE_DEVICE)
        _nothing_closed(rig)
    finally:
        rig.close()
