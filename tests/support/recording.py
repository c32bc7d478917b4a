"""Helpers for recorder and replay tests: the lock-step demo recorded with
clocks that step exactly one second per refresh (monotonic and wall), so a
recording and the live run it came from can be compared frame by frame.

Nothing is mocked: the demo drives real eventfds through the real engine,
and the recorder writes real files through its own threads.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from svqtui.config import Config
from svqtui.model import Snapshot
from svqtui.monitor import Monitor
from svqtui.recording.settings import RecordSettings
from svqtui.runtime import Runtime
from svqtui.sources.demo import STALL_EVERY_TICKS, STALL_TICKS
from tests.support.console import FROZEN_WALL, FrozenAgeDemo, StepClock
from tests.support.wait import wait_until

TICKS_PER_REFRESH = 20  # the demo ticks 50 ms: 20 ticks are one recorded second
STALL_STARTS = STALL_EVERY_TICKS - STALL_TICKS


@dataclasses.dataclass
class Recorded:
    path: Path
    live: list[Snapshot]  # what the monitor published, in order
    runtime: Runtime


def stepped_runtime(settings: RecordSettings, seed: int = 7) -> tuple[Runtime, FrozenAgeDemo]:
    """A runtime over the lock-step demo whose monitor reads a StepClock and a
    wall clock that moves with it (one second per refresh); no refresh clock."""
    clock = StepClock()
    start_ns = clock.now_ns
    demo = FrozenAgeDemo(clock, seed)
    config = Config(refresh_s=1.0, max_queues=64, record=settings)
    runtime = Runtime(config, sources=[demo], clock=False)
    runtime.engine.set_polling("off")  # spin time is real time: "poll off" is stable
    runtime.monitor = Monitor(
        runtime.sources,
        runtime.engine,
        runtime.log,
        config.stuck,
        history=config.history,
        interval_s=config.refresh_s,
        clock_ns=clock,
        wall_clock=lambda: FROZEN_WALL + (clock.now_ns - start_ns) / 1e9,
    )
    return runtime, demo


def record_demo(
    tmp_path: Path, refreshes: int, skip_ticks: int = STALL_STARTS - 200, *, relative: bool = False
) -> Recorded:
    """Record ``refreshes`` refreshes of the demo continuously to a file,
    starting ``skip_ticks`` demo ticks in (by default 10 s before its stall).
    ``relative``: name the files relative to ``tmp_path``, the current
    directory (the recorder's log lines then hold no temporary path)."""
    path = tmp_path / "demo.svqrec"
    base = Path() if relative else tmp_path
    settings = RecordSettings(
        enabled=True, dir=str(base / "incidents"), continuous=str(base / "demo.svqrec")
    )
    runtime, demo = stepped_runtime(settings)
    live: list[Snapshot] = []
    runtime.start()
    try:
        demo.advance(skip_ticks)
        recorder = runtime.recorder
        assert recorder is not None
        for _ in range(refreshes):
            live.append(runtime.monitor.refresh())
            demo.advance(TICKS_PER_REFRESH)
            # lock-step: never let the recorder fall behind (it would drop, by design)
            wait_until(lambda: recorder.frames == len(live), 10, what="the recorder")
    finally:
        runtime.stop()
    return Recorded(path, live, runtime)


def stuck_transitions(snaps: list[Snapshot]) -> list[tuple[float, frozenset[str]]]:
    """(time, stuck row keys) at each frame where the stuck set changes."""
    out: list[tuple[float, frozenset[str]]] = []
    before: frozenset[str] = frozenset()
    for snap in snaps:
        now = frozenset(k for k, r in snap.rows.items() if r.stuck)
        if now != before:
            out.append((snap.taken_at, now))
        before = now
    return out
