"""The demo source: real eventfds through the real engine, exact in lock-step."""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator

import pytest

from svqtui.engine import Engine, EngineSnapshot, Link
from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.model import MaskState, QueueView
from svqtui.sources.base import SourceContext
from svqtui.sources.demo import STALL_EVERY_TICKS, STALL_TICKS, DemoSource
from svqtui.sources.errors import ActionUnsupported, UnknownDevice
from tests.support.wait import wait_until

NET = "demo:web01/net0"
BLK = "demo:db01/blk0"


@pytest.fixture
def engine() -> Iterator[Engine]:
    with Engine(64) as e:
        yield e


def start(engine: Engine, **kw: object) -> DemoSource:
    demo = DemoSource(**kw)  # type: ignore[arg-type]
    demo.start(SourceContext(engine, IOLoop(), EventLog()))
    return demo


def _engine_snapshot(demo: DemoSource) -> EngineSnapshot:
    """What the monitor would hand the demo at a refresh."""
    engine = demo._engine  # the demo's own engine (a test looks inside)
    return engine.snapshot() if engine is not None else EngineSnapshot.empty()


def queues(demo: DemoSource, key: str) -> tuple[QueueView, ...]:
    for vm in demo.collect(_engine_snapshot(demo)):
        for dev in vm.devices:
            if dev.key == key:
                return dev.queues
    raise KeyError(key)


def test_lock_step_counts_every_notification_through_the_engine(engine: Engine) -> None:
    """In shadow mode every kick the guest wrote and every call the device wrote is
    counted by the engine, and every request posted is completed."""
    demo = start(engine, seed=1, autorun=False)
    demo.advance(50)
    for q, dq in zip(queues(demo, NET), demo.vms[0].devices[0].queues, strict=True):
        assert q.shadow
        assert q.kicks == dq.kicks_written > 0
        assert q.calls == dq.calls_written > 0
        assert q.avail_idx == q.used_idx
    demo.stop()


def test_same_seed_same_counters(engine: Engine) -> None:
    """--seed makes the workload repeatable: two runs give identical counters."""
    runs = []
    for _ in range(2):
        demo = start(engine, seed=5, autorun=False)
        demo.advance(40)
        runs.append([(q.kicks, q.calls, q.avail_idx, q.mask) for q in queues(demo, NET)])
        demo.stop()
    assert runs[0] == runs[1]


def test_shadow_off_counts_nothing_and_on_again_continues(engine: Engine) -> None:
    """Shadow off hands the path back (kicks unknown, ring still moving, engine
    queues removed); shadow on again continues the totals instead of restarting."""
    demo = start(engine, seed=2, autorun=False)
    demo.advance(20)
    before = queues(demo, BLK)
    demo.set_shadow(BLK, False)
    assert engine.queue_count == 8
    demo.advance(20)
    off = queues(demo, BLK)
    assert all(q.kicks is None and not q.shadow for q in off)
    assert off[0].avail_idx != before[0].avail_idx
    demo.set_shadow(BLK, True)
    demo.advance(20)
    after = queues(demo, BLK)
    assert all(
        a.kicks is not None and b.kicks is not None for a, b in zip(after, before, strict=True)
    )
    assert all(a.kicks > b.kicks for a, b in zip(after, before, strict=True))  # type: ignore[operator]
    demo.stop()


def test_operator_hold_latches_and_release_delivers_once(engine: Engine) -> None:
    """m on a shadowed queue: MASKED, then PENDING once a call is held; release
    delivers the held call to the guest exactly once."""
    demo = start(engine, seed=3, autorun=False)
    demo.advance(2)
    q = demo.vms[1].devices[0].queues[0]
    demo.set_masked(BLK, 0, True)
    while True:  # the guest has not consumed the last completions yet
        try:
            os.eventfd_read(q.guest_call)
        except BlockingIOError:
            break
    assert queues(demo, BLK)[0].mask is MaskState.MASKED
    os.eventfd_write(q.shadow_call, 1)  # the device calls while held
    wait_until(lambda: queues(demo, BLK)[0].mask is MaskState.PENDING, what="the call held")
    with pytest.raises(BlockingIOError):
        os.eventfd_read(q.guest_call)  # nothing reached the guest
    demo.set_masked(BLK, 0, False)
    assert os.eventfd_read(q.guest_call) == 1
    assert queues(demo, BLK)[0].mask is MaskState.UNMASKED
    demo.stop()


def test_hold_needs_shadow_mode(engine: Engine) -> None:
    """Without the engine in the path there is nothing to hold: a clear refusal."""
    demo = start(engine, seed=3, autorun=False, shadow=False)
    with pytest.raises(ActionUnsupported, match="press s"):
        demo.set_masked(NET, 0, True)
    with pytest.raises(UnknownDevice):
        demo.set_masked(NET, 99, True)
    demo.stop()


def test_inject_and_reset(engine: Engine) -> None:
    """k/c inject through the engine (counted as injected); r zeroes the totals."""
    demo = start(engine, seed=4, autorun=False)
    demo.advance(5)
    demo.inject(NET, 1, Link.KICK)
    demo.inject(NET, 1, Link.CALL)
    q = queues(demo, NET)[1]
    assert (q.injected_kicks, q.injected_calls) == (1, 1)
    demo.reset(NET)
    q = queues(demo, NET)[1]
    assert (q.kicks, q.calls, q.injected_kicks) == (0, 0, 0)
    demo.stop()


def test_the_stalling_queue_builds_in_flight_then_recovers(engine: Engine) -> None:
    """blk0 queue 1's device stops answering for a while: in-flight grows, then drains."""
    demo = start(engine, seed=6, autorun=False)
    demo.advance(STALL_EVERY_TICKS - STALL_TICKS + 20)
    stalled = queues(demo, BLK)[1]
    assert stalled.in_flight and stalled.in_flight > 0
    demo.advance(STALL_TICKS + 5)
    assert queues(demo, BLK)[1].in_flight == 0
    demo.stop()


def test_stop_releases_engine_queues_and_fds(engine: Engine) -> None:
    """stop() removes every engine queue and closes every eventfd the demo opened."""
    ctx = SourceContext(engine, IOLoop(), EventLog())
    gc.collect()  # earlier tests' garbage must not close fds during the count
    gc.disable()
    try:
        before = len(os.listdir("/proc/self/fd"))
        demo = DemoSource(seed=1)
        demo.start(ctx)
        time.sleep(0.2)
        demo.stop()
        assert engine.queue_count == 0
        assert len(os.listdir("/proc/self/fd")) == before
    finally:
        gc.enable()


def test_autorun_shows_live_counters_within_a_second(engine: Engine) -> None:
    """The free-running demo has notifications flowing within a second of start."""
    demo = start(engine)
    time.sleep(1.0)
    assert sum(q.kicks or 0 for q in queues(demo, NET)) > 0
    assert demo.status().connected
    demo.stop()


def test_a_cycle_shows_every_diagnosis(engine: Engine) -> None:
    """Over one cycle of the demo's schedule, the monitor's diagnosis names each
    rule at least once, on the queue whose episode causes it, and the ring
    columns (suppression flags, event indices, the oldest request) are filled."""
    from svqtui.config import StuckConfig
    from svqtui.monitor import Monitor
    from svqtui.sources.demo.source import TICK_S

    demo = start(engine, seed=3, autorun=False)
    now = [1_000_000_000_000]
    monitor = Monitor([demo], engine, EventLog(), StuckConfig(after_s=5), clock_ns=lambda: now[0])
    seen: dict[str, set[str]] = {}
    flags: set[tuple[str, int, int]] = set()
    oldest: list[tuple[str, float]] = []
    per_refresh = 20  # one refresh a second of demo time
    for _ in range(STALL_EVERY_TICKS // per_refresh + 1):
        demo.advance(per_refresh)
        now[0] += int(per_refresh * TICK_S * 1e9)
        snap = monitor.refresh()
        for row in snap.rows.values():
            ring = row.view.ring
            assert ring is not None and ring.error is None
            flags.add((row.key, ring.avail_flags or 0, ring.used_flags or 0))
            if row.view.oldest is not None and row.oldest_age_s is not None:
                oldest.append((row.view.oldest.describe(), row.oldest_age_s))
            if row.diagnosis:
                seen.setdefault(row.diagnosis.split(":")[0], set()).add(row.key)
    demo.stop()
    assert seen.get("device owes a call") == {"demo:db01/blk0#0"}
    assert seen.get("kick owed") == {"demo:db01/blk0#0"}
    assert seen.get(
        "guest suppressed calls (NO_INTERRUPT) 5.0 s ago and has not re-enabled them"
    ) == {"demo:web01/net0#1"}
    assert "demo:web01/net0#2" in seen.get("calls held by the guest's mask", set())
    assert "demo:db01/blk0#1" in seen.get("back-end not reading", set())
    assert ("demo:web01/net0#1", 1, 0) in flags  # NO_INTERRUPT on
    assert ("demo:web01/net0#3", 0, 1) in flags  # NO_NOTIFY on
    # the kick-lost and stalled queues wait on a decoded request, growing older
    assert any(text.startswith(("READ sector", "WRITE sector")) for text, _ in oldest)
    assert max(age for _, age in oldest) >= 5.0
