"""The event log across ``svqtui --headless --takeover``
(docs/design.md#takeover): N numbers on from O's last number and shows O's
recent lines (marked as O's), so a follower continues without a gap, a
repeat or a restart."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.control.client import ControlClient
from svqtui.errors import ControlError
from svqtui.model import LogEvent
from tests.support.headless import svqtui_env
from tests.support.wait import wait_until
from tests.takeover.rig import TakeoverRig

MARK = re.compile(r"^\[svqtui pid \d+\] ")


class Follower:
    """``ControlClient.events(since)`` every 20 ms, as ``ctl events
    --follow`` does (a fresh connection when the old one is lost)."""

    def __init__(self, path: str) -> None:
        self.client = ControlClient(path, timeout=10)
        self.seqs: list[int] = []
        self.events: list[LogEvent] = []
        self.since = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Follower:
        self.since, _ = self.client.events(0)  # from now on
        self.seqs.append(self.since)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                seq, events = self.client.events(self.since)
            except ControlError:
                self.client.close()
                continue
            self.seqs.append(seq)
            self.events.extend(events)
            self.since = seq

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[TakeoverRig]:
    made = TakeoverRig(tmp_path, shadow=True)
    yield made
    made.close()


def _texts(events: list[LogEvent]) -> list[str]:
    return [MARK.sub("", e.text) for e in events]


def test_a_follower_continues_across_takeovers(rig: TakeoverRig) -> None:
    """A client polling ``events`` every 20 ms through 3 takeovers: the
    sequence number never goes down, each takeover's lines reach it, and
    what it collected is exactly what the last N numbers after its start
    (no line missing, none twice)."""
    rig.start_traffic(probe=False)
    follower = Follower(rig.current.socket_path).start()
    start = follower.since
    try:
        for i in range(3):
            assert rig.take_over() == 0
            wait_until(
                lambda n=i + 1: sum("took over from" in e.text for e in follower.events) == n,  # type: ignore[misc]
                what="the follower sees N's lines",
            )
    finally:
        follower.stop()
    assert follower.seqs == sorted(follower.seqs), follower.seqs
    with ControlClient(rig.current.socket_path) as c:
        last, in_n = c.events(start)
    assert last >= follower.seqs[-1]
    collected = _texts(follower.events)
    assert _texts(in_n)[: len(collected)] == collected
    assert sum("took over from svqtui pid" in t for t in collected) == 3


def test_recent_history_is_shown_as_the_old_svqtuis(rig: TakeoverRig) -> None:
    """After a takeover ``ctl events`` shows O's recent lines marked with
    O's pid, numbered before N's own, then N's lines."""
    old_pid = rig.current.proc.pid if rig.current.proc else 0
    with rig.current.client() as c:
        seq_o, in_o = c.events(0)
    assert rig.take_over() == 0
    with rig.current.client() as c:
        seq_n, in_n = c.events(0)
    assert seq_n >= seq_o + 1
    marked = [e for e in in_n if e.text.startswith(f"[svqtui pid {old_pid}] ")]
    assert len(in_o) < 100  # all of them go along (the last 100)
    assert _texts(marked)[: len(in_o)] == _texts(in_o)
    assert any("took over from svqtui pid" in e.text for e in in_n[len(marked) :])
    assert in_n[: len(marked)] == marked  # O's lines first


def test_ctl_events_follow_prints_through_a_takeover(rig: TakeoverRig, tmp_path: Path) -> None:
    """``svqtui ctl events --follow`` through a takeover: it does not stop
    when O exits, prints N's "took over" line, and prints no line twice."""
    out = tmp_path / "follow.out"
    ctl = [sys.executable, "-m", "svqtui", "ctl", "--socket", rig.current.socket_path]
    with out.open("w") as sink:
        follow = subprocess.Popen(
            [*ctl, "events", "--follow"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=svqtui_env(tmp_path),
        )
    try:
        wait_until(lambda: "serving" in out.read_text(), what="the follower prints")
        assert rig.take_over() == 0
        with rig.current.client() as c:
            c.reset()  # a line N logs after the takeover
        wait_until(lambda: "took over from svqtui pid" in out.read_text(), what="N's line")
        time.sleep(1.2)  # two more polls
        assert follow.poll() is None, out.read_text()
    finally:
        follow.terminate()
        follow.wait(10)
    lines = out.read_text().splitlines()
    assert len(lines) == len(set(lines)), lines
    assert "Traceback" not in out.read_text() and "svqtui: " not in out.read_text()
