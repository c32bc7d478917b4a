"""Hostile QMP peers: deep JSON, escape sequences in names, event floods.

The peers are scripted (tests/support/fake_qmp.py): a real QEMU cannot be made
to send JSON nested 20,000 deep, a VM name with terminal escapes (QEMU's
-name takes one, but the flood and the nesting need a scripted peer anyway),
or 10,000s of STOP/RESUME events a second.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from svqtui.eventlog import EventLog
from svqtui.sources.qmp.settings import QMPSocket
from svqtui.text_safety import is_unsafe
from tests.support.fake_qmp import BASE_COMMANDS, FakeQMP
from tests.support.qmp import WatchFn, log_lines, rows, vm
from tests.support.wait import wait_until

DEEP = 20_000


@pytest.fixture
def fakes() -> Iterator[list[FakeQMP]]:
    servers: list[FakeQMP] = []
    yield servers
    for server in servers:
        server.close()


def test_deeply_nested_reply_is_one_clear_line(
    tmp_path: Path, qmp_watch: WatchFn, event_log: EventLog, fakes: list[FakeQMP]
) -> None:
    """A reply nested 20,000 deep ends the session with one error line saying
    the peer does not speak QMP, never an internal error or a traceback
    class name, and the row is disconnected and retrying."""
    path = tmp_path / "deep.sock"
    deep = b'{"return": ' + b"[" * DEEP + b"]" * DEEP + b', "id": "__qmp#00001"}\n'
    fakes.append(FakeQMP(path, raw_replies={"query-commands": deep}))
    source = qmp_watch(path)
    wait_until(lambda: any(str(path) in line for line in log_lines(event_log)), what="a line")
    time.sleep(1.0)  # a few retries
    lines = [line for line in log_lines(event_log) if str(path) in line]
    assert len(lines) == 1, lines
    assert "not QMP" in lines[0] or "does not speak QMP" in lines[0], lines[0]
    for word in ("internal", "unexpected", "RecursionError", "Traceback"):
        assert word not in lines[0]
    assert not rows(source)[0][1]


def test_escape_sequences_in_names_never_reach_the_log_or_the_view(
    tmp_path: Path, qmp_watch: WatchFn, event_log: EventLog, fakes: list[FakeQMP]
) -> None:
    """A VM name and event data with OSC/CSI escapes, bidi overrides and a
    10,000-character tail show up escaped and bounded in the row and the log."""
    path = tmp_path / "evil.sock"
    evil = "\x1b]0;pwned\x07vm\x1b[2J\u202e" + "x" * 10_000
    fakes.append(
        FakeQMP(
            path,
            commands=(*BASE_COMMANDS, "query-name"),
            replies={"query-name": {"name": evil}},
            flood=[
                {"event": "DEVICE_DELETED", "data": {"device": "\x1b[31mdisk\x9b0m"}},
                {"event": "SHUTDOWN", "data": {"reason": evil}},
            ],
        )
    )
    source = qmp_watch(QMPSocket(str(path)))
    wait_until(lambda: vm(source, "x") is None and bool(rows(source)[0][1]), what="connected")
    wait_until(lambda: any("deleted" in line for line in log_lines(event_log)), what="events")
    fakes[0].flood_stop.set()
    name = rows(source)[0][0]
    assert not any(is_unsafe(ch) for ch in name)
    assert name.startswith("\\x1b]0;pwned\\x07vm\\x1b[2J\\u202e") and len(name) < 200
    for line in log_lines(event_log):
        assert not any(is_unsafe(ch) for ch in line), line
        assert len(line) < 1200
    assert any("device \\x1b[31mdisk\\x9b0m deleted" in line for line in log_lines(event_log))


def test_event_flood_keeps_memory_and_the_log_bounded(
    tmp_path: Path, qmp_watch: WatchFn, event_log: EventLog, fakes: list[FakeQMP]
) -> None:
    """A peer sending STOP/RESUME as fast as it can for 8 s: svqtui reads
    them all without its RSS growing by more than 20 MB (before the fix:
    about 1.2 KB per event kept forever in two listeners), and the log gets
    a handful of lines, not one per event."""
    path = tmp_path / "flood.sock"
    flood = [
        {"event": "STOP", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}},
        {"event": "RESUME", "data": {}, "timestamp": {"seconds": 1, "microseconds": 0}},
    ]
    fakes.append(FakeQMP(path, flood=flood))
    me = psutil.Process(os.getpid())
    source = qmp_watch(path)
    wait_until(lambda: bool(rows(source)) and rows(source)[0][1], what="connected")
    time.sleep(1.0)  # the first allocations of a session are not a leak
    rss_before = me.memory_info().rss
    sent_before = fakes[0].events_sent
    time.sleep(8.0)
    fakes[0].flood_stop.set()
    sent = fakes[0].events_sent - sent_before
    grown = me.memory_info().rss - rss_before
    assert sent > 20_000, f"the flood was too slow to prove anything ({sent} events)"
    assert grown < 20 << 20, f"RSS grew {grown >> 20} MB over {sent:,} events"
    stop_lines = [line for line in log_lines(event_log) if "STOP" in line or "RESUME" in line]
    assert len(stop_lines) <= 12, stop_lines[:20]
    event_log.flush()
