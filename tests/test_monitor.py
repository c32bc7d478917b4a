"""The monitor: rates from successive totals, stuck verdicts, and the QMP/interposer join.

These tests feed the monitor scripted views through the shared fake source:
what is under test is the monitor's arithmetic and rules, not a device.
"""

from __future__ import annotations

import dataclasses
import os
import select
import time

from svqtui.config import StuckConfig
from svqtui.engine import Engine, Polling
from svqtui.eventlog import EventLog
from svqtui.model import (
    DeviceRole,
    DeviceView,
    QueueView,
    ShadowVia,
    SourceKind,
    StuckRule,
    VMRole,
    VMView,
)
from svqtui.monitor import Monitor, fold_vms, join_views
from svqtui.outputs.json_doc import snapshot_document
from svqtui.virtio.split_ring import RingState
from tests.support.fake_source import FakeSource
from tests.support.wait import wait_until


class Clock:
    def __init__(self) -> None:
        self.ns = 1_000_000_000_000

    def __call__(self) -> int:
        return self.ns

    def advance(self, seconds: float) -> None:
        self.ns += int(seconds * 1e9)


def make(stuck: StuckConfig | None = None) -> tuple[FakeSource, Monitor, Clock, EventLog]:
    source, clock, log = FakeSource(), Clock(), EventLog()
    monitor = Monitor([source], None, log, stuck or StuckConfig(after_s=5), clock_ns=clock)
    return source, monitor, clock, log


def test_rates_are_deltas_over_elapsed_time() -> None:
    """kicks/s and calls/s are the change of the totals divided by the interval."""
    source, monitor, clock, _ = make()
    monitor.refresh()
    source.queue = QueueView(index=0, kicks=300, calls=100)
    clock.advance(2.0)
    row = monitor.refresh().rows["d#0"]
    assert (row.kick_rate, row.call_rate) == (150.0, 50.0)
    assert row.history == (200.0,)


def test_counter_reset_gives_zero_rate_not_negative() -> None:
    """Totals going down (a reset) yield a rate of 0, never a negative one."""
    source, monitor, clock, _ = make()
    source.queue = QueueView(index=0, kicks=500, calls=500)
    monitor.refresh()
    source.queue = QueueView(index=0, kicks=3, calls=3)
    clock.advance(1.0)
    assert monitor.refresh().rows["d#0"].kick_rate == 0.0


def test_in_flight_without_used_progress_is_stuck_after_the_threshold() -> None:
    """in-flight > 0 with a frozen used index is stuck once `after` seconds pass."""
    source, monitor, clock, _ = make()
    source.queue = QueueView(index=0, kicks=1, calls=1, avail_idx=10, used_idx=4)
    assert monitor.refresh().rows["d#0"].stuck is None
    clock.advance(4.0)
    assert monitor.refresh().rows["d#0"].stuck is None
    clock.advance(1.5)
    row = monitor.refresh().rows["d#0"]
    reason = row.stuck
    assert reason is not None and "6 request(s) in flight" in reason and "stuck at 4" in reason
    assert row.stuck_rule is StuckRule.IN_FLIGHT
    source.queue = QueueView(index=0, kicks=1, calls=1, avail_idx=10, used_idx=10)
    clock.advance(1.0)
    row = monitor.refresh().rows["d#0"]
    assert row.stuck is None and row.stuck_rule is None


def test_kicks_without_calls_is_stuck() -> None:
    """Kicks rising while calls stay flat for `after` seconds is stuck, in words."""
    source, monitor, clock, _ = make()
    for kicks in (10, 20, 30, 40):
        source.queue = QueueView(index=0, kicks=kicks, calls=7)
        row = monitor.refresh().rows["d#0"]
        clock.advance(2.0)
    assert row.stuck is not None and "30 kick(s) and no call for 6s" in row.stuck
    assert row.stuck_rule is StuckRule.KICKS_WITHOUT_CALLS
    source.queue = QueueView(index=0, kicks=41, calls=8)
    assert monitor.refresh().rows["d#0"].stuck is None


def owed_call_ring(used: int, used_event: int) -> RingState:
    return RingState(
        size=128,
        event_idx=True,
        indirect_desc=True,
        packed=False,
        avail_flags=0,
        avail_idx=used,
        used_flags=0,
        used_idx=used,
        used_event=used_event,
        avail_event=used,
    )


def test_a_dropped_call_is_stuck_as_a_call_owed() -> None:
    """A dropped call is counted like a delivered one, so after the guest's
    last kick the counters look answered and nothing is in flight; the used
    index passed used_event and no call came since: stuck (rule
    kicks_without_calls) with the diagnosis naming the owed call."""
    source, monitor, clock, _ = make()
    source.queue = QueueView(0, kicks=84, calls=84, ring=owed_call_ring(84, 84))
    monitor.refresh()
    clock.advance(0.5)
    source.queue = QueueView(0, kicks=85, calls=85, dropped=1, ring=owed_call_ring(85, 84))
    row = monitor.refresh().rows["d#0"]
    assert row.stuck is None and row.diagnosis is None
    clock.advance(6.0)
    row = monitor.refresh().rows["d#0"]
    assert row.stuck_rule is StuckRule.KICKS_WITHOUT_CALLS
    assert row.stuck == "a call owed: used index at 85, no call for 6s"
    assert row.diagnosis == (
        "device owes a call: used index 85 passed used_event 84 and no call for 6.0 s"
    )
    source.queue = QueueView(0, kicks=85, calls=86, ring=owed_call_ring(85, 85))
    clock.advance(0.5)
    row = monitor.refresh().rows["d#0"]
    assert row.stuck is None and row.diagnosis is None


def test_a_kick_dropped_with_its_request_is_a_kick_owed() -> None:
    """The kick counter's last move with a dropped kick in it: the request made
    available in that refresh was not kicked (a kick owed); the same counters
    with the kick delivered: the back-end is not reading."""
    for dropped, verdict in ((1, "kick owed: avail 78"), (0, "back-end not reading")):
        source, monitor, clock, _ = make()
        state = dataclasses.replace(owed_call_ring(77, 77), avail_idx=77)
        source.queue = QueueView(0, kicks=77, calls=77, ring=state)
        monitor.refresh()
        clock.advance(0.5)
        state = dataclasses.replace(state, avail_idx=78)
        source.queue = QueueView(
            0, kicks=78, calls=77, dropped=dropped, dropped_kicks=dropped, ring=state
        )
        monitor.refresh()
        clock.advance(6.0)
        row = monitor.refresh().rows["d#0"]
        assert row.diagnosis is not None and row.diagnosis.startswith(verdict), dropped


def test_a_sources_own_verdict_is_the_source_rule() -> None:
    """A source's stuck hint is the row's stuck reason, under the rule "source"."""
    source, monitor, _, _ = make()
    source.queue = QueueView(index=0, kicks=1, calls=1, stuck_hint="device stalled")
    row = monitor.refresh().rows["d#0"]
    assert (row.stuck, row.stuck_rule) == ("device stalled", StuckRule.SOURCE)


def test_engine_status_carries_heartbeat_age_and_relays() -> None:
    """With a running engine, the snapshot has its heartbeat age (fresh: the
    idle loop beats every 100 ms) and its relay counter; without one, none."""
    engine = Engine(4)
    engine.start()
    try:
        monitor = Monitor([FakeSource()], engine, EventLog(), StuckConfig())
        wait_until(
            lambda: monitor.refresh().engine.heartbeat_age_s is not None,
            what="an engine heartbeat",
        )
        status = monitor.refresh().engine
        assert status.alive and status.heartbeat_age_s is not None
        assert 0 <= status.heartbeat_age_s < 1.0
        assert status.relays == 0
    finally:
        engine.close()
    assert make()[1].refresh().engine.heartbeat_age_s is None


def test_stuck_rules_can_be_switched_off() -> None:
    """config stuck.in_flight / kicks_without_calls false disable each rule."""
    off = StuckConfig(after_s=1, in_flight=False, kicks_without_calls=False)
    source, monitor, clock, _ = make(off)
    source.queue = QueueView(index=0, kicks=5, calls=0, avail_idx=5, used_idx=0)
    monitor.refresh()
    source.queue = QueueView(index=0, kicks=9, calls=0, avail_idx=9, used_idx=0)
    clock.advance(10)
    assert monitor.refresh().rows["d#0"].stuck is None


def test_a_failing_source_is_reported_once_and_the_rest_goes_on() -> None:
    """A source whose collect() raises is marked down with one log line."""
    source, monitor, _, log = make()
    good = FakeSource("good", kind="qmp")
    monitor.sources.append(good)
    source.fail = OSError("socket gone")
    snap = monitor.refresh()
    monitor.refresh()
    assert [s.connected for s in snap.sources] == [False, True]
    errors = [e for e in log.since(0)[1] if e.level == "error"]
    assert len(errors) == 1 and "socket gone" in errors[0].text
    assert len(snap.vms) == 1


def test_join_merges_interposer_into_qmp_device_by_socket_path() -> None:
    """A device seen by QMP and by an interposer (same socket) is one row with both views."""
    counted = QueueView(index=0, kicks=5, calls=4, shadow=True)
    vu = DeviceView(
        key="vu:blk0",
        name="blk0",
        kind="vhost-user",
        source=SourceKind.VHOST_USER,
        socket_path="/run/blk0.sock",
        role=DeviceRole.COUNTS,
        shadow=True,
        shadow_via=ShadowVia.ENGINE,
        queues=(counted,),
    )
    qmp_dev = DeviceView(
        key="qmp:vm1/blk",
        name="vhost-user-blk-pci",
        kind="vhost-user-blk",
        source=SourceKind.QMP,
        socket_path="/run/blk0.sock",
        role=DeviceRole.DESCRIBES,
        vhost_started=True,
        log_enabled=True,
        queues=(QueueView(index=0, avail_idx=9, used_idx=8, ring_source="qmp"),),
    )
    other = dataclasses.replace(qmp_dev, key="qmp:vm1/net", socket_path=None)
    vms = [
        VMView(key="vu", name="interposer", source=SourceKind.VHOST_USER, devices=(vu,)),
        VMView(key="vm1", name="vm1", source=SourceKind.QMP, devices=(qmp_dev, other)),
    ]
    joined = join_views(vms)
    assert [vm.key for vm in joined] == ["vm1"]
    dev = joined[0].devices[0]
    assert dev.key == "vu:blk0" and dev.vhost_started and dev.log_enabled and dev.shadow
    assert dev.queues[0].kicks == 5 and dev.queues[0].avail_idx == 9
    assert joined[0].devices[1].key == "qmp:vm1/net"


def test_engine_status_reports_polling_and_spin_share() -> None:
    """With a real engine spinning (fixed polling) under real eventfd
    traffic, the engine status names the mode, gives a spin share and a CPU
    share over the interval (both between 0 and a whole core, spin > 0), and
    the JSON engine section carries them; with polling off the spin share is 0."""
    engine = Engine(max_queues=4, polling=Polling.FIXED, poll_us=1000)
    engine.start()
    fds = [os.eventfd(0, os.EFD_NONBLOCK) for _ in range(2)]
    try:
        engine.add_queue(kick_src=fds[0], kick_dst=fds[1])
        monitor = Monitor([], engine, EventLog(), StuckConfig())
        monitor.refresh()
        for _ in range(500):
            os.eventfd_write(fds[0], 1)
            select.select([fds[1]], [], [], 5.0)
            os.eventfd_read(fds[1])
        time.sleep(0.01)  # the last 1 ms window runs out
        snap = monitor.refresh()
        status = snap.engine
        assert status.polling == "fixed"
        assert 0 < status.spin_share <= 1.0
        assert status.cpu_share is not None and 0 < status.cpu_share <= 1.0
        section = snapshot_document(snap)["engine"]
        assert section["polling"] == "fixed" and section["spin_share"] == status.spin_share
        engine.set_polling(Polling.OFF)
        deadline = time.monotonic() + 5
        while engine.polling().spinning and time.monotonic() < deadline:
            time.sleep(0.01)  # the last window (fixed, 1 ms) runs out
        monitor.refresh()
        assert monitor.refresh().engine.spin_share == 0.0
    finally:
        engine.close()
        for fd in fds:
            os.close(fd)


def test_a_found_qemu_folds_into_the_view_that_manages_its_pid() -> None:
    """One VM, one row: QMP's view of a QEMU process (role FOUND) with the pid
    of libvirt's domain (role MANAGES) is dropped, its devices and CPU/RSS
    added to the domain's row; a FOUND view of another pid, and views of a
    pid nobody manages, stay as they are."""
    managed = VMView(
        key="libvirt:u1", name="web1", source="libvirt", pid=42, role=VMRole.MANAGES,
        rss_bytes=7,
    )  # fmt: skip
    extra = DeviceView(key="qmp:x/d", name="d", kind="virtio-net", source=SourceKind.QMP)
    found = VMView(
        key="qmp:pid:42", name="qemu-42", source=SourceKind.QMP, pid=42, role=VMRole.FOUND,
        cpu_percent=3.0, rss_bytes=99, devices=(extra,),
    )  # fmt: skip
    elsewhere = dataclasses.replace(found, key="qmp:pid:43", pid=43, devices=())
    plain = VMView(key="demo:a", name="a", source=SourceKind.DEMO, pid=42)
    out = fold_vms([found, managed, elsewhere, plain])
    assert [vm.key for vm in out] == ["libvirt:u1", "qmp:pid:43", "demo:a"]
    row = out[0]
    assert (row.name, row.cpu_percent, row.rss_bytes) == ("web1", 3.0, 7)
    assert row.devices == (extra,)
    assert [vm.key for vm in join_views([found, managed])] == ["libvirt:u1"]


def test_oldest_age_counts_from_when_its_position_was_first_seen() -> None:
    """The oldest request's age runs from the refresh that first saw the avail
    index pass its position, not from when it became the oldest, and across
    the 65535 wrap; nothing in flight has no age."""
    source, monitor, clock, _ = make()
    source.queue = QueueView(index=0, kicks=1, calls=1, avail_idx=65534, used_idx=65534)
    assert monitor.refresh().rows["d#0"].oldest_age_s is None
    clock.advance(1.0)
    source.queue = QueueView(index=0, kicks=2, calls=1, avail_idx=65535, used_idx=65534)
    assert monitor.refresh().rows["d#0"].oldest_age_s == 0.0
    clock.advance(2.0)
    source.queue = QueueView(index=0, kicks=3, calls=1, avail_idx=3, used_idx=65534)
    assert monitor.refresh().rows["d#0"].oldest_age_s == 2.0  # position 65534, seen at t=1
    clock.advance(1.0)
    source.queue = QueueView(index=0, kicks=3, calls=2, avail_idx=3, used_idx=65535)
    assert monitor.refresh().rows["d#0"].oldest_age_s == 1.0  # position 65535 seen at t=3
    clock.advance(1.0)
    source.queue = QueueView(index=0, kicks=3, calls=3, avail_idx=3, used_idx=3)
    assert monitor.refresh().rows["d#0"].oldest_age_s is None


def test_row_carries_the_diagnosis_of_an_owed_call() -> None:
    """The monitor feeds the diagnosis the used index at the last call and how
    long no call came: used passing used_event without a call is named."""
    from svqtui.virtio.split_ring import RingState

    def state(used: int, used_event: int) -> RingState:
        return RingState(256, True, False, False, 0, used, 0, used, used_event, used)

    source, monitor, clock, _ = make()
    source.queue = QueueView(index=0, kicks=5, calls=5, ring=state(100, 100))
    monitor.refresh()
    clock.advance(1.0)
    source.queue = QueueView(index=0, kicks=6, calls=6, ring=state(100, 100))
    monitor.refresh()  # a call at used 100
    for _ in range(3):
        clock.advance(2.0)
        source.queue = QueueView(index=0, kicks=6, calls=6, ring=state(104, 100))
        row = monitor.refresh().rows["d#0"]
    assert row.diagnosis == (
        "device owes a call: used index 104 passed used_event 100 and no call for 6.0 s"
    )
    assert (
        snapshot_document(monitor.refresh())["vms"][0]["devices"][0]["queues"][0]["diagnosis"]
        == row.diagnosis
    )
