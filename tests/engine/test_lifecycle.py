"""Engine lifecycle: start, health, stop, and the errors of the command-ring API."""

from __future__ import annotations

import os

import pytest

from svqtui.engine import End, Engine, Link
from svqtui.engine.errors import EngineFull, EngineNotRunning, EngineStartError, UnknownQueue
from tests.support.engine import Rig, drain, eventfd
from tests.support.wait import wait_until


def test_health_alive_from_start_to_stop() -> None:
    """health().alive is True as soon as start() returns (regression: the
    heartbeat used to be 0 until the first idle wakeup, so a fresh engine
    looked dead for up to 100 ms), stays True while running, and is False
    after stop(); thread_alive follows the thread, and the loop exits with 0."""
    engine = Engine(max_queues=4)
    assert not engine.health().alive
    engine.start()
    try:
        health = engine.health()
        assert health.alive and health.thread_alive
        assert health.heartbeat_age_s < 60  # a real timestamp, not "never"
        loops = health.loops
        wait_until(lambda: engine.health().loops > loops, what="the loop to keep turning")
        assert engine.health().alive
    finally:
        engine.stop()
    health = engine.health()
    assert not health.alive and not health.thread_alive
    assert engine.exit_code == 0


def test_commands_after_stop_raise_engine_not_running(rig: Rig) -> None:
    """Once stopped, every command raises EngineNotRunning (none hangs), the
    last snapshot stays readable, and a failed add does not leak its slot."""
    slot, fds = rig.add()
    rig.engine.stop()
    with pytest.raises(EngineNotRunning):
        rig.engine.add_queue()
    with pytest.raises(EngineNotRunning):
        rig.engine.set_masked(slot, True)
    with pytest.raises(EngineNotRunning):
        rig.engine.set_fd(slot, Link.CALL, End.DST, fds.kick_dst)
    with pytest.raises(EngineNotRunning):
        rig.engine.inject(slot, Link.KICK)
    with pytest.raises(EngineNotRunning):
        rig.engine.reset()
    with pytest.raises(EngineNotRunning):
        rig.engine.remove_queue(slot, handback=True)
    assert rig.engine.queue(slot).call.dst == fds.call_dst


def test_failed_add_releases_its_slot() -> None:
    """An add_queue that fails (engine stopped) gives its slot back: on a
    one-slot engine the second attempt still says EngineNotRunning, not
    EngineFull."""
    engine = Engine(max_queues=1)
    engine.start()
    engine.stop()
    for _ in range(2):
        with pytest.raises(EngineNotRunning):
            engine.add_queue()


def test_stop_is_idempotent_and_engines_do_not_restart() -> None:
    """stop() may be called any number of times, even on an engine that was
    never started; a stopped engine cannot be started again."""
    never = Engine(max_queues=1)
    never.stop()
    never.stop()
    engine = Engine(max_queues=1)
    engine.start()
    with pytest.raises(EngineStartError):
        engine.start()
    engine.stop()
    engine.stop()
    with pytest.raises(EngineStartError):
        engine.start()


def test_context_manager_starts_and_stops() -> None:
    """`with Engine() as e` runs the engine inside the block only."""
    kick_src, kick_dst = eventfd(), eventfd()
    try:
        with Engine(max_queues=2) as engine:
            assert engine.health().alive
            engine.add_queue(kick_src, kick_dst)
            assert drain(kick_dst) == 1
        assert not engine.health().thread_alive
    finally:
        for fd in (kick_src, kick_dst):
            os.close(fd)


def test_add_beyond_max_queues_raises_engine_full() -> None:
    """max_queues slots can be used, one more raises EngineFull; removing a
    queue frees its slot, and the reused slot gets a new generation."""
    with Engine(max_queues=3) as engine:
        slots = [engine.add_queue() for _ in range(3)]
        assert sorted(slots) == [0, 1, 2]
        with pytest.raises(EngineFull):
            engine.add_queue()
        generation = engine.queue(slots[1]).generation
        engine.remove_queue(slots[1])
        again = engine.add_queue()
        assert again == slots[1]
        assert engine.queue(again).generation == generation + 1
        assert set(engine.snapshot().queues) == {0, 1, 2}


@pytest.mark.parametrize(
    "call",
    [
        lambda e, s: e.set_masked(s, True),
        lambda e, s: e.set_fd(s, Link.KICK, End.SRC, -1),
        lambda e, s: e.inject(s, Link.CALL),
        lambda e, s: e.reset(s),
        lambda e, s: e.remove_queue(s),
        lambda e, s: e.queue(s),
    ],
    ids=["set_masked", "set_fd", "inject", "reset", "remove_queue", "queue"],
)
def test_unknown_slot_raises_unknown_queue(rig: Rig, call) -> None:
    """Every per-queue call on a slot that was never added, or was removed,
    raises UnknownQueue, and the engine carries on."""
    with pytest.raises(UnknownQueue):
        call(rig.engine, 42)
    slot, _ = rig.add()
    rig.engine.remove_queue(slot)
    with pytest.raises(UnknownQueue):
        call(rig.engine, slot)
    assert rig.engine.health().alive


def test_health_reports_no_backlog_when_idle(rig: Rig) -> None:
    """After synchronous commands the engine has applied all it was sent."""
    for _ in range(10):
        rig.add()
    health = rig.engine.health()
    assert health.backlog == 0
    assert health.submitted == health.applied > 0


def test_commands_before_start_raise_not_running() -> None:
    """A command to an engine whose thread was never started fails at once with
    EngineNotRunning instead of waiting out the timeout."""
    engine = Engine(4)
    with pytest.raises(EngineNotRunning, match="not started"):
        engine.add_queue()


def test_close_frees_the_engine_fds_and_refuses_later_use() -> None:
    """close() releases the engine's epoll, command-ring and tick fds at once (not at garbage
    collection) and any later call is EngineNotRunning, never a crash."""
    before = len(os.listdir("/proc/self/fd"))
    engine = Engine(4)
    engine.start()
    assert len(os.listdir("/proc/self/fd")) == before + 4  # epoll, command ring, tick, delay
    engine.close()
    assert len(os.listdir("/proc/self/fd")) == before
    with pytest.raises(EngineNotRunning):
        engine.snapshot()
    with pytest.raises(EngineNotRunning):
        engine.add_queue()
    engine.close()  # idempotent
