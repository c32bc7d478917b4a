"""Small helpers for the QMP tests: the test timing, finding rows, reading the log."""

from __future__ import annotations

from collections.abc import Callable

from svqtui.engine import EngineSnapshot
from svqtui.eventlog import EventLog
from svqtui.model import DeviceView, VMView
from svqtui.sources.qmp import QMPSource, Timing

TIMEOUT_S = 45.0  # generous: a shared, noisy 2-core machine

# Fast but not frantic: reconnects within about a second while tests wait.
TEST_TIMING = Timing(
    poll_s=0.2,
    connect_timeout_s=3.0,
    command_timeout_s=10.0,
    backoff_first_s=0.2,
    backoff_cap_s=1.0,
)

#: The ``qmp_watch`` fixture: start a QMPSource on the given sockets.
WatchFn = Callable[..., QMPSource]


def vm(source: QMPSource, name: str) -> VMView | None:
    return next((v for v in source.collect(EngineSnapshot.empty()) if v.name == name), None)


def connected_vm(source: QMPSource, name: str) -> VMView | None:
    """The VM row once connected and its device list polled."""
    row = vm(source, name)
    if row is None or not row.connected:
        return None
    if row.devices and all(d.queues for d in row.devices):
        return row
    return None


def device(row: VMView, name: str) -> DeviceView:
    found = [d for d in row.devices if d.name == name]
    assert found, f"no device {name} in {[d.name for d in row.devices]}"
    return found[0]


def log_lines(log: EventLog) -> list[str]:
    return [f"{e.level}: {e.text}" for e in log.since(0)[1]]


def rows(source: QMPSource) -> list[tuple[str, bool, str]]:
    return [(v.name, v.connected, v.status) for v in source.collect(EngineSnapshot.empty())]
