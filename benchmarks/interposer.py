"""Interposer benchmark: guest-side I/O through svqtui's vhost-user interposer.

Owns the measurement plan and the report. One run drives a real
qemu-storage-daemon (vhost-user-blk, 2 queues, 16 MiB raw image in the page
cache) with the test front-end (tests/support/vhost_user_frontend.py: a
QEMU-like front-end whose "guest" is this process) doing random 4 KiB reads at
queue depth 1 and 32, in five modes:

* ``direct``: the front-end connects to qemu-storage-daemon's socket;
* ``pass``: through the interposer, shadow mode off (the back-end has QEMU's
  own eventfds, svqtui forwards only control messages; engine polling is the
  default, adaptive, and the engine has nothing to relay);
* ``shadow-off``: through the interposer, shadow mode on (every kick and call
  is relayed by the engine thread), engine polling off: the engine sleeps in
  epoll_wait between notifications;
* ``shadow-adaptive``: the same with adaptive polling (the default): the
  engine spins briefly while notifications come densely, within a CPU budget;
* ``shadow-fixed``: the same with a blind 200 us spin after every batch.

Modes are measured in interleaved rounds (the order rotates every round) and
each mode's ratio to direct is the median of its per-round ratios, so drift
and neighbours on a shared machine hit every mode alike. The front-end
negotiates VIRTIO_RING_F_EVENT_IDX like a Linux guest (``--no-event-idx``: one
kick and one call per request) and waits for completions on the call
eventfd, as a guest does.

Besides IOPS and latency it reports notifications per I/O and CPU time per
I/O (this process, which holds the front-end, the interposer and the engine,
plus qemu-storage-daemon; and the engine thread alone), and the share of a
core the engine spent spinning: on a shared machine CPU per I/O is far
steadier than throughput. At the end, the engine's CPU share with no traffic
at all is measured for 5 s (adaptive polling, the interposer idle).

Goals: pass >= 0.98x direct (both depths); shadow with the default polling
(adaptive) >= 1.0x direct at depth 1 and >= 0.95x at depth 32; an idle engine
< 1% of a core.

Usage: python benchmarks/interposer.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from svqtui.engine import Engine, Polling  # noqa: E402
from tests.support.qsd import vhost_user_blk_daemon  # noqa: E402
from tests.support.vhost_user_frontend import (  # noqa: E402
    BLOCK,
    SECTOR,
    VIRTIO_BLK_T_IN,
    VhostUserFrontend,
)
from tests.support.vhost_user_rig import Context, InterposerRig  # noqa: E402

MODES = ("direct", "pass", "shadow-off", "shadow-adaptive", "shadow-fixed")
POLLING = {  # mode -> engine polling during its cells (mode, poll_us)
    "direct": (Polling.ADAPTIVE, 200),
    "pass": (Polling.ADAPTIVE, 200),
    "shadow-off": (Polling.OFF, 200),
    "shadow-adaptive": (Polling.ADAPTIVE, 200),
    "shadow-fixed": (Polling.FIXED, 200),
}
DEPTHS = (1, 32)
IMAGE_BLOCKS = (16 << 20) // BLOCK
GOALS = {  # (mode, depth) -> minimum IOPS ratio to direct
    ("pass", 1): 0.98,
    ("pass", 32): 0.98,
    ("shadow-adaptive", 1): 1.0,
    ("shadow-adaptive", 32): 0.95,
}
IDLE_S = 5.0
IDLE_GOAL = 0.01  # an idle engine: under 1% of a core


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    seconds: float  # per mode, depth and round
    warmup_s: float


QUICK = Plan(rounds=8, seconds=0.4, warmup_s=0.1)
FULL = Plan(rounds=15, seconds=1.5, warmup_s=0.2)


@dataclass(slots=True)
class Cell:
    """One measurement: a mode at a depth for one round."""

    mode: str
    depth: int
    ios: int
    seconds: float
    latencies_us: list[float]
    kicks: int
    calls: int
    cpu_s: float  # this process: front-end, interposer, engine
    engine_cpu_s: float
    qsd_cpu_s: float
    spin_s: float  # wall time the engine spent in spin windows
    round: int = 0

    @property
    def iops(self) -> float:
        return self.ios / self.seconds


TICK_S = 1 / os.sysconf("SC_CLK_TCK")


def cpu_seconds(stat_path: str) -> float:
    """utime + stime of a process or thread (/proc/.../stat), in seconds."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_S


@dataclass(frozen=True, slots=True)
class CpuMeters:
    """Where CPU time goes: this process (front-end, interposer, engine),
    the engine thread alone, qemu-storage-daemon, and the engine's spinning."""

    qsd_pid: int
    engine: Engine

    def read(self) -> tuple[float, float, float, float]:
        t = os.times()
        return (
            t.user + t.system,
            (self.engine.thread_cpu_ns() or 0) / 1e9,
            cpu_seconds(f"/proc/{self.qsd_pid}/stat"),
            self.engine.polling().spin_ns / 1e9,
        )


def run_reads(
    fe: VhostUserFrontend, qi: int, depth: int, seconds: float, meters: CpuMeters
) -> Cell:
    """Random 4 KiB reads, ``depth`` in flight, for ``seconds``; latencies per
    request and CPU time per request."""
    rng = random.Random(depth)
    sent: dict[int, float] = {}
    latencies: list[float] = []

    def submit() -> None:
        req = fe.submit(qi, VIRTIO_BLK_T_IN, rng.randrange(IMAGE_BLOCKS) * (BLOCK // SECTOR))
        sent[req.slot] = time.perf_counter()

    q = fe.queues[qi]
    kicks, calls = q.kicks_sent, q.calls_received
    for _ in range(depth):
        submit()
    fe.kick(qi)
    cpu_before = meters.read()
    start = time.perf_counter()
    end = start + seconds
    ios = 0
    while True:
        if fe.arm_call(qi):
            fe.wait_call(qi)
        done = fe.reap(qi)
        now = time.perf_counter()
        for req, _ in done:
            latencies.append((now - sent.pop(req.slot)) * 1e6)
        ios += len(done)
        if now >= end:
            break
        for _ in done:
            submit()
        if done:
            fe.kick(qi)
    elapsed = time.perf_counter() - start
    cpu = [b - a for a, b in zip(cpu_before, meters.read(), strict=True)]
    kicks, calls = q.kicks_sent - kicks, q.calls_received - calls
    while q.inflight:  # drain what is still in flight
        if fe.arm_call(qi):
            fe.wait_call(qi)
        fe.reap(qi)
    return Cell("", depth, ios, elapsed, latencies, kicks, calls, cpu[0], cpu[1], cpu[2], cpu[3])


def connect(path: str, event_idx: bool) -> VhostUserFrontend:
    """A started front-end (retrying while the daemon winds down the last client)."""
    deadline = time.monotonic() + 10
    while True:
        fe = VhostUserFrontend(path, queues=2, event_idx=event_idx).connect()
        try:
            return fe.init().start()
        except OSError:
            fe.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def measure(plan: Plan, event_idx: bool, progress: bool) -> dict[str, Any]:
    load = [os.getloadavg()[0]]
    workdir = Path(tempfile.mkdtemp(prefix="svq-bench-", dir="/tmp"))
    context = Context()
    cells: list[Cell] = []
    try:
        with vhost_user_blk_daemon(workdir, exports=1) as qsd:
            rig = InterposerRig(context, workdir, qsd.sockets)
            assert qsd.proc is not None
            meters = CpuMeters(qsd.pid, context.engine)
            try:
                for rnd in range(plan.rounds):
                    rot = rnd % len(MODES)
                    for mode in MODES[rot:] + MODES[:rot]:
                        path = str(qsd.sockets[0]) if mode == "direct" else rig.devices[0].listen
                        polling, poll_us = POLLING[mode]
                        context.engine.set_polling(polling, poll_us)
                        fe = connect(path, event_idx)
                        try:
                            if mode != "direct":
                                rig.source.set_shadow(rig.key(), mode.startswith("shadow"))
                            for depth in DEPTHS:
                                run_reads(fe, 0, depth, plan.warmup_s, meters)
                                cell = run_reads(fe, 0, depth, plan.seconds, meters)
                                cell.mode, cell.round = mode, rnd
                                cells.append(cell)
                                if progress:
                                    print(
                                        f"round {rnd + 1}/{plan.rounds} {mode:15} qd{depth:<2} "
                                        f"{cell.iops:9.0f} IOPS",
                                        file=sys.stderr,
                                    )
                        finally:
                            fe.close()
                        if mode != "direct":
                            rig.wait_connected(connected=False)
                idle = idle_share(context.engine, progress)
            finally:
                rig.close()
    finally:
        context.close()
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()
    load.append(os.getloadavg()[0])
    return report(cells, plan, event_idx, idle, load)


def idle_share(engine: Engine, progress: bool) -> dict[str, float]:
    """The engine thread's CPU share, and its spin share, over IDLE_S seconds
    with no traffic (default polling, the interposer idle)."""
    engine.set_polling(Polling.ADAPTIVE)
    time.sleep(0.2)  # the last spin window, if any, runs out
    cpu0, spin0, t0 = engine.thread_cpu_ns() or 0, engine.polling().spin_ns, time.monotonic_ns()
    time.sleep(IDLE_S)
    cpu1, spin1, t1 = engine.thread_cpu_ns() or 0, engine.polling().spin_ns, time.monotonic_ns()
    share = {
        "seconds": round((t1 - t0) / 1e9, 2),
        "cpu_share": round((cpu1 - cpu0) / (t1 - t0), 5),
        "spin_share": round((spin1 - spin0) / (t1 - t0), 5),
    }
    if progress:
        print(f"idle engine: {100 * share['cpu_share']:.3f}% of a core", file=sys.stderr)
    return share


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(
    cells: list[Cell], plan: Plan, event_idx: bool, idle: dict[str, float], load: list[float]
) -> dict[str, Any]:
    results = []
    median_iops: dict[tuple[str, int], float] = {}
    for mode in MODES:
        for depth in DEPTHS:
            mine = [c for c in cells if c.mode == mode and c.depth == depth]
            iops = statistics.median(c.iops for c in mine)
            median_iops[(mode, depth)] = iops
            lat = [x for c in mine for x in c.latencies_us]
            results.append(
                {
                    "mode": mode,
                    "depth": depth,
                    "iops": round(iops),
                    "iops_rounds": [round(c.iops) for c in mine],
                    "lat_us_mean": round(statistics.fmean(lat), 1),
                    "lat_us_p50": round(_pct(lat, 0.50), 1),
                    "lat_us_p99": round(_pct(lat, 0.99), 1),
                    "kicks_per_io": round(sum(c.kicks for c in mine) / sum(c.ios for c in mine), 3),
                    "calls_per_io": round(sum(c.calls for c in mine) / sum(c.ios for c in mine), 3),
                    "cpu_us_per_io": round(
                        1e6 * sum(c.cpu_s + c.qsd_cpu_s for c in mine) / sum(c.ios for c in mine), 1
                    ),
                    "engine_cpu_us_per_io": round(
                        1e6 * sum(c.engine_cpu_s for c in mine) / sum(c.ios for c in mine), 2
                    ),
                    "engine_cpu_share": round(
                        sum(c.engine_cpu_s for c in mine) / sum(c.seconds for c in mine), 4
                    ),
                    "spin_share": round(
                        sum(c.spin_s for c in mine) / sum(c.seconds for c in mine), 4
                    ),
                    "polling": f"{POLLING[mode][0].value} {POLLING[mode][1]} us"
                    if POLLING[mode][0] is Polling.FIXED
                    else POLLING[mode][0].value,
                }
            )
    by_round = {(c.mode, c.depth, c.round): c.iops for c in cells}
    vs_direct = {
        (mode, depth): statistics.median(
            by_round[(mode, depth, r)] / by_round[("direct", depth, r)] for r in range(plan.rounds)
        )
        for mode in MODES
        for depth in DEPTHS
    }
    for row in results:
        row["vs_direct"] = round(vs_direct[(row["mode"], row["depth"])], 3)
    goals = [
        {
            "mode": mode,
            "depth": depth,
            "min_vs_direct": bound,
            "vs_direct": round(vs_direct[(mode, depth)], 3),
            "met": vs_direct[(mode, depth)] >= bound,
        }
        for (mode, depth), bound in GOALS.items()
    ]
    idle_goal = {"max_cpu_share": IDLE_GOAL, "met": idle["cpu_share"] < IDLE_GOAL}
    return {
        "benchmark": "interposer",
        "plan": asdict(plan),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
            "loadavg_1min_start_end": [round(x, 2) for x in load],
        },
        "io": "random 4 KiB reads, qemu-storage-daemon vhost-user-blk, 16 MiB raw image",
        "event_idx": event_idx,
        "results": results,
        "goals": goals,
        "idle_engine": idle | idle_goal,
    }


def print_table(data: dict[str, Any]) -> None:
    print(f"interposer benchmark: {data['io']}")
    print(
        f"{data['plan']['rounds']} interleaved rounds x {data['plan']['seconds']} s per cell; "
        f"IOPS: median round; vs direct: median of per-round ratios; "
        f"EVENT_IDX {'on' if data['event_idx'] else 'off'}; {data['machine']['cpus']} CPUs"
    )
    print()
    print(
        "CPU us/IO: this process + qemu-storage-daemon; engine: the engine thread's "
        "CPU us/IO and share of a core; spin: share of a core spent spinning"
    )
    print()
    print(
        f"{'mode':16}{'depth':>6}{'IOPS':>8}{'vs direct':>10}{'mean us':>9}{'p50 us':>8}"
        f"{'p99 us':>8}{'kicks/IO':>9}{'calls/IO':>9}{'CPU us/IO':>10}{'engine':>8}"
        f"{'eng %':>7}{'spin %':>7}"
    )
    for r in data["results"]:
        print(
            f"{r['mode']:16}{r['depth']:>6}{r['iops']:>8}{r['vs_direct']:>10.3f}"
            f"{r['lat_us_mean']:>9.1f}{r['lat_us_p50']:>8.1f}{r['lat_us_p99']:>8.1f}"
            f"{r['kicks_per_io']:>9.3f}{r['calls_per_io']:>9.3f}"
            f"{r['cpu_us_per_io']:>10.1f}{r['engine_cpu_us_per_io']:>8.2f}"
            f"{100 * r['engine_cpu_share']:>7.1f}{100 * r['spin_share']:>7.1f}"
        )
    print()
    for g in data["goals"]:
        verdict = "met" if g["met"] else "MISSED"
        print(
            f"goal {g['mode']} qd{g['depth']} >= {g['min_vs_direct']:.2f}x direct: "
            f"{g['vs_direct']:.3f}x {verdict}"
        )
    idle = data["idle_engine"]
    print(
        f"goal idle engine < {100 * idle['max_cpu_share']:.0f}% of a core: "
        f"{100 * idle['cpu_share']:.3f}% over {idle['seconds']} s "
        f"(spinning {100 * idle['spin_share']:.3f}%) {'met' if idle['met'] else 'MISSED'}"
    )
    start, end = data["machine"]["loadavg_1min_start_end"]
    print(f"load average (1 min) {start:.2f} -> {end:.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds (< 60 s)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument(
        "--no-event-idx",
        action="store_true",
        help="do not negotiate VIRTIO_RING_F_EVENT_IDX (one kick and one call per request)",
    )
    args = parser.parse_args()
    data = measure(QUICK if args.quick else FULL, not args.no_event_idx, progress=True)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print_table(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
