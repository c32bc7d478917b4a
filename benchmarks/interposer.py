"""Interposer benchmark: guest-side I/O through svqtui's vhost-user interposer.

Owns the measurement plan and the report. One run drives a real
qemu-storage-daemon (vhost-user-blk, 2 queues, 16 MiB raw image in the page
cache) with the test front-end (tests/support/vhost_user_frontend.py: a
QEMU-like front-end whose "guest" is this process) doing random 4 KiB reads at
queue depth 1 and 32, in three modes:

* ``direct``: the front-end connects to qemu-storage-daemon's socket;
* ``pass``: through the interposer, shadow mode off (the back-end has QEMU's
  own eventfds, svqtui forwards only control messages);
* ``shadow``: through the interposer, shadow mode on (every kick and call is
  relayed by the engine thread).

Modes are measured in interleaved rounds (the order rotates every round) and
each mode's ratio to direct is the median of its per-round ratios, so drift
and neighbours on a shared machine hit every mode alike. The front-end
negotiates VIRTIO_RING_F_EVENT_IDX like a Linux guest (``--no-event-idx``: one
kick and one call per request) and waits for completions on the call
eventfd, as a guest does.

Besides IOPS and latency it reports notifications per I/O and CPU time per
I/O (this process, which holds the front-end, the interposer and the engine,
plus qemu-storage-daemon; and the engine thread alone): on a shared machine
CPU per I/O is far steadier than throughput.

Goals: pass >= 0.98x direct (both depths); shadow >= 0.95x direct at depth 32.

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
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.qsd import vhost_user_blk_daemon  # noqa: E402
from tests.support.vhost_user_frontend import (  # noqa: E402
    BLOCK,
    SECTOR,
    VIRTIO_BLK_T_IN,
    VhostUserFrontend,
)
from tests.support.vhost_user_rig import Context, InterposerRig  # noqa: E402

MODES = ("direct", "pass", "shadow")
DEPTHS = (1, 32)
IMAGE_BLOCKS = (16 << 20) // BLOCK
GOALS = {  # (mode, depth) -> minimum IOPS ratio to direct
    ("pass", 1): 0.98,
    ("pass", 32): 0.98,
    ("shadow", 32): 0.95,
}


@dataclass(frozen=True, slots=True)
class Plan:
    rounds: int
    seconds: float  # per mode, depth and round
    warmup_s: float


QUICK = Plan(rounds=8, seconds=0.5, warmup_s=0.1)
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
    the engine thread alone, and qemu-storage-daemon."""

    qsd_pid: int
    engine_tid: int

    def read(self) -> tuple[float, float, float]:
        t = os.times()
        return (
            t.user + t.system,
            cpu_seconds(f"/proc/self/task/{self.engine_tid}/stat"),
            cpu_seconds(f"/proc/{self.qsd_pid}/stat"),
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
    return Cell("", depth, ios, elapsed, latencies, kicks, calls, cpu[0], cpu[1], cpu[2])


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
    workdir = Path(tempfile.mkdtemp(prefix="svq-bench-", dir="/tmp"))
    context = Context()
    cells: list[Cell] = []
    try:
        with vhost_user_blk_daemon(workdir, exports=1) as qsd:
            rig = InterposerRig(context, workdir, qsd.sockets)
            assert qsd.pid is not None
            engine_thread = next(t for t in threading.enumerate() if t.name == "svqtui-engine")
            assert engine_thread.native_id is not None
            meters = CpuMeters(qsd.pid, engine_thread.native_id)
            try:
                for rnd in range(plan.rounds):
                    for mode in MODES[rnd % 3 :] + MODES[: rnd % 3]:
                        path = str(qsd.sockets[0]) if mode == "direct" else rig.devices[0].listen
                        fe = connect(path, event_idx)
                        try:
                            if mode != "direct":
                                rig.source.set_shadow(rig.key(), mode == "shadow")
                            for depth in DEPTHS:
                                run_reads(fe, 0, depth, plan.warmup_s, meters)
                                cell = run_reads(fe, 0, depth, plan.seconds, meters)
                                cell.mode, cell.round = mode, rnd
                                cells.append(cell)
                                if progress:
                                    print(
                                        f"round {rnd + 1}/{plan.rounds} {mode:6} qd{depth:<2} "
                                        f"{cell.iops:9.0f} IOPS",
                                        file=sys.stderr,
                                    )
                        finally:
                            fe.close()
                        if mode != "direct":
                            rig.wait_connected(connected=False)
            finally:
                rig.close()
    finally:
        context.close()
        for leftover in workdir.iterdir():
            leftover.unlink()
        workdir.rmdir()
    return report(cells, plan, event_idx)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def report(cells: list[Cell], plan: Plan, event_idx: bool) -> dict[str, Any]:
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
    return {
        "benchmark": "interposer",
        "plan": asdict(plan),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "kernel": platform.release(),
        },
        "io": "random 4 KiB reads, qemu-storage-daemon vhost-user-blk, 16 MiB raw image",
        "event_idx": event_idx,
        "results": results,
        "goals": goals,
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
        f"{'mode':8}{'depth':>6}{'IOPS':>10}{'vs direct':>11}{'mean us':>9}{'p50 us':>9}"
        f"{'p99 us':>9}{'kicks/IO':>10}{'calls/IO':>10}{'CPU us/IO':>11}{'engine':>8}"
    )
    for r in data["results"]:
        print(
            f"{r['mode']:8}{r['depth']:>6}{r['iops']:>10}{r['vs_direct']:>11.3f}"
            f"{r['lat_us_mean']:>9.1f}{r['lat_us_p50']:>9.1f}{r['lat_us_p99']:>9.1f}"
            f"{r['kicks_per_io']:>10.3f}{r['calls_per_io']:>10.3f}"
            f"{r['cpu_us_per_io']:>11.1f}{r['engine_cpu_us_per_io']:>8.2f}"
        )
    print()
    for g in data["goals"]:
        verdict = "met" if g["met"] else "MISSED"
        print(
            f"goal {g['mode']} qd{g['depth']} >= {g['min_vs_direct']:.2f}x direct: "
            f"{g['vs_direct']:.3f}x {verdict}"
        )


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
