"""The status bar, the log pane and the device header say what they must in
words: engine state, rates, pause, filter, errors, notes, migration."""

from __future__ import annotations

import dataclasses

from textual.app import App, ComposeResult

from svqtui.console.selection import Scope, SortMode
from svqtui.eventlog import EventLog
from svqtui.model import EngineStatus, MigrationView, SourceKind, SourceStatus
from svqtui.widgets.device_header import scope_text
from svqtui.widgets.log_pane import LogPane
from svqtui.widgets.status_bar import ViewState, status_text
from tests.support.console import synthetic_snapshot


def test_status_bar_reports_engine_sources_delay_pause_filter() -> None:
    """Everything the status line promises is there, as words."""
    snap = synthetic_snapshot(1, 1)
    text = status_text(snap, ViewState(0.5, True, SortMode.CALLS, "blk")).plain
    assert "engine alive" in text
    assert "sources 1/1" in text
    assert "every 0.5s" in text
    assert "PAUSED" in text
    assert "sort calls/s" in text
    assert "filter blk" in text
    down = dataclasses.replace(
        snap,
        engine=EngineStatus(alive=False, relays_per_s=0, queues=0, backlog=3),
        sources=(SourceStatus("qmp", SourceKind.QMP, False, "refused"),),
    )
    text = status_text(down, ViewState(1.0)).plain
    assert "ENGINE DOWN" in text
    assert "backlog 3" in text
    assert "sources 0/1 (down: qmp)" in text


class LogHost(App[None]):
    def __init__(self, log: EventLog) -> None:
        super().__init__()
        self.event_log = log

    def compose(self) -> ComposeResult:
        yield LogPane(self.event_log)


async def test_log_pane_shows_each_event_once() -> None:
    """pull() appends only events added since the last pull; errors say
    ERROR; a line names its device when the text does not."""
    log = EventLog()
    log.info("demo: started")
    app = LogHost(log)
    async with app.run_test():
        pane = app.query_one(LogPane)
        assert pane.pull() == 1
        assert pane.pull() == 0
        log.error("shadow on for vm/blk0: back-end gone (reconnect it)", "vu:blk0")
        assert pane.pull() == 1
        assert pane.lines_written[-1].endswith(
            "ERROR shadow on for vm/blk0: back-end gone (reconnect it)"
        )
        assert len(pane.lines_written) == 2
        log.info("queue 0: hold (masked)", "demo:web01/net0", 0)
        pane.pull()
        assert pane.lines_written[-1].endswith("web01/net0: queue 0: hold (masked)")


def test_device_header_shows_notes_and_migration() -> None:
    """A device's notes (e.g. vhost-user masking) and a VM's migration are visible."""
    snap = synthetic_snapshot(2, 1)
    dev = dataclasses.replace(
        snap.vms[0].devices[0],
        notes=("guest vector masking happens inside QEMU for vhost-user",),
        source=SourceKind.VHOST_USER,
    )
    vm = dataclasses.replace(
        snap.vms[0],
        devices=(dev, snap.vms[0].devices[1]),
        migration=MigrationView("active", passes=2, total=100, remaining=25),
    )
    snap = dataclasses.replace(snap, vms=(vm,))
    text = scope_text(snap, Scope.device(dev.key)).plain
    assert "note: guest vector masking happens inside QEMU for vhost-user" in text
    assert "vhost-user" in text
    assert "migration active, 75% sent, pass 2" in scope_text(snap, Scope.vm(vm.key)).plain
    assert "1 VMs, 2 devices (2 shadowed), 2 queues" in scope_text(snap, Scope.all()).plain
