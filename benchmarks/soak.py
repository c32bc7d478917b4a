"""Soak: a real ``svqtui --headless`` under steady churn, watched for leaks.

Owns the soak plan and its report. It starts qemu-storage-daemon (two
vhost-user-blk exports), a scripted QMP peer (tests/support/fake_qmp.py)
sending STOP/RESUME events in bursts, and ``python -m svqtui --headless``
with the demo on, the QMP peer configured and both exports interposed (blk0
shadowed from connect, blk1 in pass mode). Then, for ``--minutes``, at once:

* shadow toggles: blk0 and a demo device, on and off, over the control socket;
* control clients connecting, saying hello and leaving;
* vhost-user front-end cycles on blk1: connect, negotiate, start, one
  verified write and read, disconnect (and a front-end that stays on blk0
  doing verified I/O the whole time, shadowed);
* the QMP peer's events (about ``--events-per-s``).

Every ``--sample-s`` it samples svqtui's RSS and open fds; at the end it
prints them as a table, the slope per hour of each (least squares over the
samples after the first minute's warm-up, or all when shorter), the worst
control round trip, the work done and any failure, then the same as JSON
(``--json PATH`` writes it to a file as well).

``--cycles N`` first runs N front-end connect/disconnect cycles on blk1 as
fast as they go and reports svqtui's fds before and after.

Usage: python benchmarks/soak.py --minutes 10 [--cycles 1000] [--json out.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from svqtui.errors import SvqtuiError  # noqa: E402
from tests.support.fake_qmp import FakeQMP  # noqa: E402
from tests.support.headless import HeadlessProcess  # noqa: E402
from tests.support.qsd import vhost_user_blk_daemon  # noqa: E402
from tests.support.vhost_user_frontend import VhostUserFrontend, pattern  # noqa: E402

WARMUP_S = 60.0
EVENT_BURST = 64 * 2  # FakeQMP sends its two events 64 times per burst


@dataclass(slots=True)
class Sample:
    t_s: float
    rss_mb: float
    fds: int


@dataclass(slots=True)
class Stats:
    """What the workers did; each list of round trips is in seconds."""

    toggles: int = 0
    clients: int = 0
    cycles: int = 0
    guest_ios: int = 0
    round_trips: list[float] = field(default_factory=list)
    worst_round_trip: tuple[float, str] = (0.0, "")
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def timed(self, what: str, start: float) -> None:
        took = time.perf_counter() - start
        with self.lock:
            self.round_trips.append(took)
            if took > self.worst_round_trip[0]:
                self.worst_round_trip = (took, what)

    def fail(self, what: str, err: BaseException) -> None:
        with self.lock:
            if len(self.failures) < 50:
                self.failures.append(f"{what}: {type(err).__name__}: {err}")


def proc_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def proc_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (seconds, value), per hour."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


def write_config(work: Path, qsd_sockets: list[Path], qmp: Path) -> Path:
    cfg = work / "config.yaml"
    cfg.write_text(
        "\n".join(
            [
                "refresh: 0.5",
                "demo: {enabled: true, seed: 7}",
                f"qmp: {{discover: false, sockets: [{{path: {qmp}, name: soakvm}}]}}",
                f"control: {{socket: {work / 'c.sock'}}}",
                "devices:",
                f"  - {{name: blk0, listen: {work / 'vu0.sock'}, backend: {qsd_sockets[0]},"
                " shadow: on}",
                f"  - {{name: blk1, listen: {work / 'vu1.sock'}, backend: {qsd_sockets[1]}}}",
            ]
        )
        + "\n"
    )
    return cfg


class Soak:
    def __init__(self, work: Path, args: argparse.Namespace) -> None:
        self.work = work
        self.args = args
        self.stats = Stats()
        self.stop = threading.Event()
        self.qsd = vhost_user_blk_daemon(work, exports=2)
        pause = EVENT_BURST / max(args.events_per_s, 1)
        self.qmp = FakeQMP(
            work / "qmp.sock",
            flood=[
                {"event": "STOP", "data": {}, "timestamp": {"seconds": 0, "microseconds": 0}},
                {"event": "RESUME", "data": {}, "timestamp": {"seconds": 0, "microseconds": 0}},
            ],
            flood_pause_s=pause,
        )
        self.headless: HeadlessProcess | None = None
        self.demo_device = ""

    # -- set-up ------------------------------------------------------------------

    def start(self) -> int:
        self.qsd.start()
        cfg = write_config(self.work, [Path(s) for s in self.qsd.sockets], self.work / "qmp.sock")
        self.headless = HeadlessProcess(self.work, config=cfg).start()
        assert self.headless.proc is not None
        with self.headless.client() as c:
            snap = c.snapshot()
        self.demo_device = next(
            d.key for vm in snap.vms for d in vm.devices if d.key.startswith("demo")
        )
        return self.headless.proc.pid

    def close(self) -> None:
        self.stop.set()
        if self.headless is not None:
            self.headless.stop()
        self.qmp.close()
        self.qsd.stop()

    # -- workers -----------------------------------------------------------------

    def _loop(self, name: str, every_s: float, step: Any) -> threading.Thread:
        def run() -> None:
            while not self.stop.is_set():
                try:
                    step()
                except (SvqtuiError, OSError, AssertionError, TimeoutError) as err:
                    self.stats.fail(name, err)
                    self.stop.wait(0.5)
                self.stop.wait(every_s)

        thread = threading.Thread(target=run, name=name, daemon=True)
        thread.start()
        return thread

    def toggle(self) -> None:
        assert self.headless is not None
        with self.headless.client() as c:
            for device in ("vu:blk0", self.demo_device):
                for on in (False, True):
                    start = time.perf_counter()
                    c.shadow(device, on)
                    self.stats.timed(f"shadow {'on' if on else 'off'} {device}", start)
                    self.stats.toggles += 1

    def client(self) -> None:
        assert self.headless is not None
        start = time.perf_counter()
        with self.headless.client() as c:
            c.hello()
        self.stats.timed("connect + hello", start)
        self.stats.clients += 1

    def cycle(self, io: bool = True) -> None:
        fe = VhostUserFrontend(self.work / "vu1.sock")
        try:
            fe.connect().init()
            if io:
                fe.start()
                block = self.stats.cycles % 16
                fe.write_block(0, block, pattern(block, self.stats.cycles))
                assert fe.read_block(0, block) == pattern(block, self.stats.cycles)
            self.stats.cycles += 1
        finally:
            fe.close()

    def guest(self) -> None:
        """A front-end on blk0 (shadowed) doing verified I/O until the end."""
        fe = VhostUserFrontend(self.work / "vu0.sock")
        try:
            fe.connect().init().start()
            n = 0
            while not self.stop.is_set():
                block = n % 16
                fe.write_block(0, block, pattern(block, n))
                assert fe.read_block(0, block) == pattern(block, n)
                n += 1
                self.stats.guest_ios += 1
                self.stop.wait(0.01)
        finally:
            fe.close()

    # -- phases --------------------------------------------------------------------

    def cycles_phase(self, pid: int, count: int) -> dict[str, Any]:
        time.sleep(1.0)
        before = proc_fds(pid)
        started = time.perf_counter()
        failures = 0
        for _ in range(count):
            try:
                self.cycle(io=False)
            except (OSError, AssertionError, TimeoutError):
                failures += 1
                time.sleep(0.05)
        took = time.perf_counter() - started
        time.sleep(2.0)  # let svqtui and the back-end wind the last one down
        after = proc_fds(pid)
        return {
            "cycles": count,
            "failed": failures,
            "seconds": round(took, 1),
            "fds_before": before,
            "fds_after": after,
        }

    def soak_phase(self, pid: int, minutes: float) -> dict[str, Any]:
        threads = [
            self._loop("toggles", 0.5, self.toggle),
            self._loop("clients", 0.1, self.client),
            self._loop("cycles", 0.2, self.cycle),
            self._loop("guest", 0.0, self.guest),
        ]
        samples: list[Sample] = []
        t0 = time.monotonic()
        end = t0 + minutes * 60
        print(f"{'t (s)':>7} {'RSS (MB)':>9} {'fds':>5}", file=sys.stderr)
        while True:
            now = time.monotonic()
            s = Sample(round(now - t0, 1), round(proc_rss_mb(pid), 2), proc_fds(pid))
            samples.append(s)
            print(f"{s.t_s:7.1f} {s.rss_mb:9.2f} {s.fds:5d}", file=sys.stderr)
            if now >= end:
                break
            time.sleep(min(self.args.sample_s, max(end - now, 0.1)))
        self.stop.set()
        for thread in threads:
            thread.join(15)
        warm = [s for s in samples if s.t_s >= WARMUP_S]
        fit = warm if len(warm) >= 3 else samples
        rts = sorted(self.stats.round_trips)
        return {
            "minutes": minutes,
            "samples": [asdict(s) for s in samples],
            "rss_mb_first": samples[0].rss_mb,
            "rss_mb_last": samples[-1].rss_mb,
            "rss_mb_slope_per_hour": round(slope_per_hour([(s.t_s, s.rss_mb) for s in fit]), 2),
            "fds_first": samples[0].fds,
            "fds_last": samples[-1].fds,
            "fds_slope_per_hour": round(slope_per_hour([(s.t_s, s.fds) for s in fit]), 2),
            "fit_from_s": fit[0].t_s,
            "worst_round_trip_ms": round(self.stats.worst_round_trip[0] * 1000, 1),
            "worst_round_trip_what": self.stats.worst_round_trip[1],
            "p99_round_trip_ms": round(rts[int(len(rts) * 0.99)] * 1000, 1) if rts else None,
            "shadow_toggles": self.stats.toggles,
            "control_clients": self.stats.clients,
            "frontend_cycles": self.stats.cycles,
            "guest_ios": self.stats.guest_ios,
            "qmp_events_sent": self.qmp.events_sent,
            "failures": self.stats.failures,
            "alive": self.headless is not None
            and self.headless.proc is not None
            and self.headless.proc.poll() is None,
        }


def render(report: dict[str, Any]) -> str:
    lines = []
    cyc = report.get("cycles")
    if cyc:
        lines.append(
            f"{cyc['cycles']:,} front-end connect/disconnect cycles in {cyc['seconds']} s"
            f" ({cyc['failed']} failed): svqtui fds {cyc['fds_before']} before,"
            f" {cyc['fds_after']} after"
        )
    soak = report.get("soak")
    if soak:
        lines += [
            f"soak of {soak['minutes']:g} min against svqtui --headless"
            f" (alive at the end: {soak['alive']})",
            f"  {'':24} {'first':>9} {'last':>9} {'slope/hour':>11}",
            f"  {'RSS (MB)':24} {soak['rss_mb_first']:9.2f} {soak['rss_mb_last']:9.2f}"
            f" {soak['rss_mb_slope_per_hour']:11.2f}",
            f"  {'open fds':24} {soak['fds_first']:9d} {soak['fds_last']:9d}"
            f" {soak['fds_slope_per_hour']:11.2f}",
            f"  (slopes fitted from t = {soak['fit_from_s']} s)",
            f"  worst control round trip: {soak['worst_round_trip_ms']} ms"
            f" ({soak['worst_round_trip_what']}); p99 {soak['p99_round_trip_ms']} ms",
            f"  work: {soak['shadow_toggles']:,} shadow toggles,"
            f" {soak['control_clients']:,} control clients,"
            f" {soak['frontend_cycles']:,} front-end cycles with verified I/O,"
            f" {soak['guest_ios']:,} verified guest I/Os on a shadowed device,"
            f" {soak['qmp_events_sent']:,} QMP events",
            f"  failures: {len(soak['failures'])}",
            *(f"    {f}" for f in soak["failures"][:10]),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="soak length (default 10)")
    parser.add_argument(
        "--cycles",
        type=int,
        default=0,
        help="first, N connect/disconnect cycles (fds before/after)",
    )
    parser.add_argument("--events-per-s", type=float, default=1000.0, help="QMP events a second")
    parser.add_argument("--sample-s", type=float, default=10.0, help="RSS/fd sampling interval")
    parser.add_argument("--json", metavar="PATH", help="also write the JSON report here")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="svq-soak-", dir="/tmp"))
    soak = Soak(work, args)
    report: dict[str, Any] = {}
    try:
        pid = soak.start()
        if args.cycles:
            report["cycles"] = soak.cycles_phase(pid, args.cycles)
        if args.minutes > 0:
            report["soak"] = soak.soak_phase(pid, args.minutes)
    finally:
        soak.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(work)
    print(render(report))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    failed = bool(report.get("soak", {}).get("failures")) or not report.get("soak", {}).get(
        "alive", True
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
