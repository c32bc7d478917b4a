"""Refresh micro-benchmark: what one ``Monitor.refresh()`` costs, in CPU.

Builds the UI benchmark's synthetic source (benchmarks/ui.py: every queue's
counters move at every refresh, the worst case), a ``Monitor`` over it with
no engine, and times ``refresh()`` with ``time.thread_time()`` (CPU of this
thread only, so other work on the machine does not count). The source's own
``collect()`` is timed the same way on its own, so the monitor's share is
the difference. Per queue count it reports CPU ms per refresh, p50 and max,
for the whole refresh and for the source alone.

A simulated clock advances 100 ms per refresh (10 Hz), so the rate windows,
the history and the stuck timers see what they see in the console. The
collector runs with svqtui's policy (svqtui.gc_policy, as in the console and
headless), or Python's defaults with ``--default-gc``.

Usage: python benchmarks/refresh.py [--queues 64,256,1024] [--refreshes 50]
                                    [--json] [--profile] [--default-gc]
Goal at 1,024 queues: a refresh in at most 5 ms of CPU.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # svqtui
sys.path.insert(0, str(Path(__file__).resolve().parent))  # ui.py

from ui import _synthetic_source

from svqtui.config import StuckConfig
from svqtui.eventlog import EventLog
from svqtui.gc_policy import settle_after_start
from svqtui.monitor import Monitor

GOAL_MS = 5.0
STEP_NS = 100_000_000  # 10 Hz
WARMUP = 5


def _ms(samples: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(statistics.median(samples) * 1e3, 3),
        "max_ms": round(max(samples) * 1e3, 3),
    }


def measure(
    queues: int, refreshes: int, profile: bool = False, default_gc: bool = False
) -> dict[str, Any]:
    source = _synthetic_source(queues)
    clock = [time.monotonic_ns()]

    def clock_ns() -> int:
        clock[0] += STEP_NS
        return clock[0]

    monitor = Monitor([source], None, EventLog(), StuckConfig(), interval_s=0.1, clock_ns=clock_ns)
    for _ in range(WARMUP):
        monitor.refresh()
    if not default_gc:
        settle_after_start()
    collect, refresh = [], []
    for _ in range(refreshes):
        t0 = time.thread_time()
        source.collect(None)
        collect.append(time.thread_time() - t0)
    profiler = cProfile.Profile() if profile else None
    for _ in range(refreshes):
        t0 = time.thread_time()
        if profiler is not None:
            profiler.enable()
        snap = monitor.refresh()
        if profiler is not None:
            profiler.disable()
        refresh.append(time.thread_time() - t0)
    if profiler is not None:
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    whole, src = _ms(refresh), _ms(collect)
    return {
        "queues": queues,
        "rows": len(snap.rows),
        "refreshes": refreshes,
        "refresh_cpu_ms_p50": whole["p50_ms"],
        "refresh_cpu_ms_max": whole["max_ms"],
        "source_cpu_ms_p50": src["p50_ms"],
        "source_cpu_ms_max": src["max_ms"],
        "monitor_cpu_ms_p50": round(whole["p50_ms"] - src["p50_ms"], 3),
        "goal_met": whole["p50_ms"] <= GOAL_MS,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", default="64,256,1024", help="queue counts, comma-separated")
    parser.add_argument("--refreshes", type=int, default=50, help="timed refreshes per count")
    parser.add_argument("--json", action="store_true", help="JSON on stdout instead of a table")
    parser.add_argument("--profile", action="store_true", help="cProfile the refreshes (stderr)")
    parser.add_argument("--default-gc", action="store_true", help="Python's collector defaults")
    args = parser.parse_args()
    runs = [
        measure(int(q), args.refreshes, args.profile, args.default_gc)
        for q in args.queues.split(",")
    ]
    if args.json:
        print(json.dumps({"goal_ms": GOAL_MS, "runs": runs}, indent=2))
        return 0
    gc_policy = "Python's defaults" if args.default_gc else "svqtui.gc_policy"
    print(
        f"Monitor.refresh CPU per call (time.thread_time), {args.refreshes} refreshes, "
        f"collector: {gc_policy}"
    )
    head = (
        f"{'queues':>6} {'refresh p50':>11} {'max':>7} {'source p50':>10} {'max':>7} "
        f"{'monitor p50':>11} {'goal':>5}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        print(
            f"{r['queues']:>6} {r['refresh_cpu_ms_p50']:>11.2f} {r['refresh_cpu_ms_max']:>7.2f} "
            f"{r['source_cpu_ms_p50']:>10.2f} {r['source_cpu_ms_max']:>7.2f} "
            f"{r['monitor_cpu_ms_p50']:>11.2f} {'met' if r['goal_met'] else 'MISS':>5}"
        )
    print(f"goal: <= {GOAL_MS:g} ms at 1,024 queues")
    return 0


if __name__ == "__main__":
    sys.exit(main())
