"""Engine polling (poll.c): spinning changes when events are noticed, never what
is done with them, and each mode spins (or not) as it says.

Real engines, real eventfds. Traffic is a ping-pong over one queue: this
thread writes the kick source, waits for the kick destination, writes the call
source, waits for the call destination, so the engine sees a steady stream of
short gaps, which is what makes the adaptive mode spin. No test asserts a
speed: CPU figures are checked against bounds far from what the code does
(an idle engine uses well under 0.1% of a core; the bound is 5%).
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.engine import Engine, Polling, PollingStats
from svqtui.engine.errors import EngineStartError
from tests.support.engine import Hammer, QueueFds, Rig, drain, signal
from tests.support.wait import wait_until

ROUND_TRIPS = 2_000


def _engine(mode: Polling, poll_us: int = 200, budget: float = 0.2) -> Engine:
    engine = Engine(max_queues=8, polling=mode, poll_us=poll_us, poll_cpu_budget=budget)
    engine.start()
    return engine


@pytest.fixture
def make_rig() -> Iterator[list[Rig]]:
    """Rigs on engines built by the test (mode and budget differ); stopped after."""
    rigs: list[Rig] = []
    yield rigs
    for rig in rigs:
        rig.engine.close()
        rig.close()


def _rig(rigs: list[Rig], mode: Polling, poll_us: int = 200, budget: float = 0.2) -> Rig:
    rig = Rig(_engine(mode, poll_us, budget))
    rigs.append(rig)
    return rig


def _wait_readable(fd: int) -> None:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    if not poller.poll(5000):
        raise AssertionError(f"fd {fd} not signalled within 5 s: a notification was lost")


def ping_pong(fds: QueueFds, n: int) -> None:
    """n round trips kick_src -> kick_dst, call_src -> call_dst, one at a time."""
    for _ in range(n):
        signal(fds.kick_src)
        _wait_readable(fds.kick_dst)
        assert drain(fds.kick_dst) == 1
        signal(fds.call_src)
        _wait_readable(fds.call_dst)
        assert drain(fds.call_dst) == 1


def settled(engine: Engine) -> PollingStats:
    """The polling stats once no spin window is open and none is about to:
    two reads 50 ms apart agree and neither is spinning."""
    seen: list[PollingStats] = []

    def quiet() -> bool:
        first = engine.polling()
        time.sleep(0.05)
        second = engine.polling()
        seen.append(second)
        return not first.spinning and not second.spinning and first.spin_ns == second.spin_ns

    wait_until(quiet, what="the engine to stop spinning")
    return seen[-1]


@pytest.mark.parametrize("mode", list(Polling))
def test_no_notification_lost_in_any_mode(make_rig: list[Rig], mode: Polling) -> None:
    """In every polling mode, 2,000 ping-pong round trips each arrive exactly
    once (a lost one times out), then a writer thread hammers the kick source:
    the engine's counts stay exact (notifications == written, reads ==
    delivered) and the destination saw every delivery."""
    rig = _rig(make_rig, mode)
    slot, fds = rig.add()
    rig.engine.reset(slot)
    ping_pong(fds, ROUND_TRIPS)
    rig.barrier()
    q = rig.engine.queue(slot)
    assert q.kick.notifications == q.kick.reads == q.kick.delivered == ROUND_TRIPS
    assert q.call.notifications == q.call.reads == q.call.delivered == ROUND_TRIPS
    with Hammer(lambda: fds.kick_src) as hammer:
        time.sleep(0.2)
    rig.barrier()
    kick = rig.engine.queue(slot).kick
    assert hammer.written > 0
    assert kick.notifications == ROUND_TRIPS + hammer.written
    assert kick.delivered == kick.reads
    assert drain(fds.kick_dst) == kick.delivered - ROUND_TRIPS
    assert kick.healthy


def test_off_mode_never_spins(make_rig: list[Rig]) -> None:
    """polling off: traffic opens no spin window at all."""
    rig = _rig(make_rig, Polling.OFF)
    _, fds = rig.add()
    ping_pong(fds, ROUND_TRIPS)
    stats = rig.engine.polling()
    assert stats.mode is Polling.OFF
    assert (stats.spin_ns, stats.hits, stats.misses, stats.spinning) == (0, 0, 0, False)


def test_fixed_mode_spins_under_traffic(make_rig: list[Rig]) -> None:
    """polling fixed (1 ms windows): spin time grows with traffic, windows
    find work (the next kick comes well within 1 ms), and once traffic stops
    the last window runs out (a miss) and the loop sleeps again."""
    rig = _rig(make_rig, Polling.FIXED, poll_us=1000)
    _, fds = rig.add()
    before = settled(rig.engine)
    ping_pong(fds, ROUND_TRIPS)
    after = settled(rig.engine)
    assert after.mode is Polling.FIXED and after.poll_us == 1000
    assert after.spin_ns > before.spin_ns
    assert after.hits > before.hits
    assert after.misses > before.misses


def test_adaptive_idle_engine_stops_spinning(make_rig: list[Rig]) -> None:
    """polling adaptive: after traffic (during which it spins), an idle
    engine opens no spin window for 2 s and its thread uses under 5% of a
    core (it wakes 10 times a second for its heartbeat)."""
    rig = _rig(make_rig, Polling.ADAPTIVE, poll_us=1000, budget=1.0)
    _, fds = rig.add()
    ping_pong(fds, ROUND_TRIPS)
    idle = settled(rig.engine)
    assert idle.spin_ns > 0, "dense ping-pong traffic should have opened spin windows"
    cpu0, t0 = rig.engine.thread_cpu_ns(), time.monotonic_ns()
    time.sleep(2.0)
    cpu1, t1 = rig.engine.thread_cpu_ns(), time.monotonic_ns()
    later = rig.engine.polling()
    assert cpu0 is not None and cpu1 is not None
    assert later.spin_ns == idle.spin_ns and not later.spinning
    assert (cpu1 - cpu0) / (t1 - t0) < 0.05


def test_adaptive_spin_stays_within_budget(make_rig: list[Rig]) -> None:
    """polling adaptive with a 2% budget and 1 ms windows: over about a second
    of dense traffic the time spent spinning stays within the budget (2% of
    the elapsed time, plus the 100 ms-of-budget burst and one window)."""
    budget = 0.02
    rig = _rig(make_rig, Polling.ADAPTIVE, poll_us=1000, budget=budget)
    _, fds = rig.add()
    start = settled(rig.engine)
    t0 = time.monotonic_ns()
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        ping_pong(fds, 100)
    end = settled(rig.engine)
    elapsed = time.monotonic_ns() - t0
    spun = end.spin_ns - start.spin_ns
    assert spun > 0, "dense traffic should have opened spin windows"
    assert spun <= budget * (elapsed + 100e6) + 1e6, (spun, elapsed, end)


def test_adaptive_backs_off_when_its_cpu_is_contended(make_rig: list[Rig]) -> None:
    """polling adaptive, the engine pinned to a CPU that a busy process also
    wants: the engine gets preempted while it spins, and says so (contended
    verdicts), which is what stops it spinning for a while."""
    cpu = max(os.sched_getaffinity(0))
    engine = Engine(max_queues=8, polling=Polling.ADAPTIVE, poll_us=1000, cpu=cpu)
    engine.start()
    rig = Rig(engine)
    make_rig.append(rig)
    _, fds = rig.add()
    hog = subprocess.Popen(
        [sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{cpu}}})\nwhile True: pass"]
    )
    try:
        deadline = time.monotonic() + 10.0
        while engine.polling().contended == 0 and time.monotonic() < deadline:
            ping_pong(fds, 100)
    finally:
        hog.kill()
        hog.wait()
    stats = settled(engine)
    assert stats.contended > 0, stats


def test_set_polling_changes_mode_at_run_time(make_rig: list[Rig]) -> None:
    """set_polling switches a running engine (off -> fixed -> off): fixed
    spins, off stops spinning; polling() reports the settings in force, and
    bad settings raise ValueError without changing them."""
    rig = _rig(make_rig, Polling.OFF)
    _, fds = rig.add()
    rig.engine.set_polling(Polling.FIXED, poll_us=500, cpu_budget=0.5)
    ping_pong(fds, 200)
    fixed = settled(rig.engine)
    assert (fixed.mode, fixed.poll_us, fixed.cpu_budget) == (Polling.FIXED, 500, 0.5)
    assert fixed.spin_ns > 0
    rig.engine.set_polling("off")
    ping_pong(fds, 200)
    off = settled(rig.engine)
    assert off.mode is Polling.OFF and off.spin_ns == fixed.spin_ns
    for bad in (
        {"mode": "busy"},
        {"mode": "fixed", "poll_us": -1},
        {"mode": "fixed", "cpu_budget": 2.0},
    ):
        with pytest.raises(ValueError):
            rig.engine.set_polling(**bad)  # type: ignore[arg-type]
    assert rig.engine.polling().mode is Polling.OFF


def _allowed_cpus(tid: int) -> str:
    for line in Path(f"/proc/self/task/{tid}/status").read_text().splitlines():
        if line.startswith("Cpus_allowed_list:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError("no Cpus_allowed_list in /proc status")


def test_engine_thread_pinned_to_the_cpu_asked() -> None:
    """Engine(cpu=N) pins the engine thread (only it: this thread keeps its
    affinity) to CPU N, as /proc/self/task/TID/status shows."""
    mine = os.sched_getaffinity(0)
    cpu = max(mine)
    with Engine(max_queues=1, cpu=cpu) as engine:
        assert engine.native_id is not None
        assert _allowed_cpus(engine.native_id) == str(cpu)
    assert os.sched_getaffinity(0) == mine


def test_pinning_to_a_missing_cpu_fails_to_start() -> None:
    """A CPU that does not exist: start() raises EngineStartError naming it."""
    engine = Engine(max_queues=1, cpu=4095)
    with pytest.raises(EngineStartError, match="CPU 4095"):
        engine.start()
    engine.close()
