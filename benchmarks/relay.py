"""Relay benchmark: svqtui's engine against plain C, pure Python and asyncio.

Owns the measurement plan, CPU pinning, the busy "UI" thread and the report.
One run measures every implementation (see impls.py) with the same pinning
and the same C drivers (c_driver.c):

* 2-hop round trip (driver writes A, relay A -> B, relay B -> C, driver reads
  C) p50/p99/p99.9, idle and while a Python thread formats table rows nonstop;
* relays/s and notifications/s with 64 and 1,024 queues in closed-loop rounds;
* lost notifications: kick writes minus the relay's own count, after settling;
* for the engine, in each polling mode (adaptive, off, fixed 200 us): the
  engine thread's CPU share and the share of a core it spent spinning over
  the measurements, and its CPU share over 1 s with no traffic at all.

Usage: python benchmarks/relay.py [--quick] [--json] [--cpu N] [--busy-cpu N|same|other]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import resource
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cbuild
from impls import QueueFds, Relay, factories

Figures = dict[str, Any]
IMPLS = ("engine", "engine_off", "engine_fixed", "c", "python_epoll", "asyncio")
QUEUE_COUNTS = (64, 1024)
DRIVER_TIMEOUT_MS = 2000
SETTLE_TIMEOUT_S = 2.0
BUSY_WARMUP = 20
IDLE_S = 1.0  # per pass: an engine with one quiet queue, nothing written
BUSY_NOTE = (
    "default: busy thread on another CPU, so it runs (and holds the GIL) 100% of the time "
    "and only the GIL couples it to a relay; on the relay's CPU, time-slicing adds "
    "multi-ms p99.9 to every implementation, plain C included (see README)"
)


@dataclass(frozen=True, slots=True)
class Plan:
    """How much to measure per pass; --quick and the default differ only here."""

    passes: int
    rtt_samples: int
    rtt_warmup: int
    rtt_max_s: float
    busy_samples: int
    busy_max_s: float
    rounds_s: float
    rounds_warmup_s: float
    burst_queues: int = 64
    burst_rounds: int = 16


QUICK = Plan(3, 7_000, 300, 1.5, 7_000, 1.0, 0.5, 0.1)
FULL = Plan(6, 50_000, 1_000, 4.0, 25_000, 2.5, 1.5, 0.2)


@dataclass(frozen=True, slots=True)
class Target:
    """A goal for engine/c; None means the figure is reported without one."""

    key: str
    label: str
    unit: str
    op: str | None = None  # "<=" or ">=" on the ratio, "==0" on the value
    bound: float = 0.0


METRICS = (
    Target("rtt_p50_us", "2-hop RTT p50", "us", "<=", 1.10),
    Target("rtt_p99_us", "2-hop RTT p99", "us", "<=", 1.15),
    Target("rtt_p999_us", "2-hop RTT p99.9", "us"),
    Target("busy_rtt_p50_us", "busy RTT p50", "us"),
    Target("busy_rtt_p99_us", "busy RTT p99", "us", "<=", 1.25),
    Target("busy_rtt_p999_us", "busy RTT p99.9", "us"),
    Target("relays_per_s_64", "relays/s, 64 queues", "/s", ">=", 0.90),
    Target("relays_per_s_1024", "relays/s, 1024 queues", "/s", ">=", 0.90),
    Target("notifications_per_s_64", "notifications/s, 64 q", "/s"),
    Target("notifications_per_s_1024", "notifications/s, 1024 q", "/s"),
    Target("lost", "lost notifications", "", "==0"),
    Target("engine_cpu_share", "engine thread CPU", "%"),
    Target("spin_share", "engine spinning", "%"),
    Target("idle_cpu_share", "idle engine CPU, no traffic", "%"),
)


# -- fds and the C drivers -------------------------------------------------


class DriverError(RuntimeError):
    """A driver call failed, typically a relay that never answered."""


class Queues:
    """n benchmark queues of three fresh eventfds each, plus cffi fd arrays."""

    def __init__(self, ffi: Any, n: int) -> None:
        self.fds: list[QueueFds] = []
        try:
            for _ in range(n):
                self.fds.append(QueueFds(_eventfd(), _eventfd(), _eventfd()))
        except OSError:
            self.close()
            raise
        self.a = ffi.new("int[]", [q.a for q in self.fds])
        self.c = ffi.new("int[]", [q.c for q in self.fds])

    def __len__(self) -> int:
        return len(self.fds)

    def close(self) -> None:
        for q in self.fds:
            for fd in (q.a, q.b, q.c):
                os.close(fd)
        self.fds = []


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


@dataclass(slots=True)
class Session:
    """One relay instance over fresh queues; `written` counts kicks sent."""

    relay: Relay
    queues: Queues
    written: int = 0


class Driver:
    """Python face of c_driver.c; every call releases the GIL while it runs."""

    def __init__(self, ffi: Any, lib: Any) -> None:
        self.ffi = ffi
        self.lib = lib

    def _check(self, rc: int, what: str) -> None:
        if rc < 0:
            raise DriverError(f"{what}: {os.strerror(-rc)}")

    def rtt(self, s: Session, n: int, warmup: int, max_s: float) -> list[float]:
        out = self.ffi.new("double[]", n)
        samples = self.ffi.new("int *")
        writes = self.ffi.new("uint64_t *")
        q = s.queues.fds[0]
        rc = self.lib.bench_rtt(q.a, q.c, n, warmup, max_s, DRIVER_TIMEOUT_MS, out, samples, writes)
        s.written += writes[0]
        self._check(rc, "round trip")
        return list(self.ffi.unpack(out, samples[0]))

    def rounds(self, s: Session, seconds: float) -> tuple[int, float]:
        """Closed-loop rounds over every queue; (completed rounds, elapsed s)."""
        rounds = self.ffi.new("uint64_t *")
        writes = self.ffi.new("uint64_t *")
        elapsed = self.ffi.new("double *")
        n = len(s.queues)
        rc = self.lib.bench_rounds(
            s.queues.a, s.queues.c, n, seconds, DRIVER_TIMEOUT_MS, rounds, writes, elapsed
        )
        s.written += writes[0]
        self._check(rc, f"rounds over {n} queues")
        return rounds[0], elapsed[0]

    def burst(self, s: Session, k: int) -> None:
        writes = self.ffi.new("uint64_t *")
        rc = self.lib.bench_burst(s.queues.a, len(s.queues), k, writes)
        s.written += writes[0]
        self._check(rc, "burst")

    def drain(self, queues: Queues) -> int:
        return int(self.lib.bench_drain(queues.c, len(queues)))


def settled_count(relay: Relay, written: int) -> int:
    """The relay's kick count once it caught up with `written` (or timed out)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    counted = relay.kick_notifications()
    while counted < written and time.monotonic() < deadline:
        time.sleep(0.001)
        counted = relay.kick_notifications()
    return counted


Usage = tuple[float, float, float]  # engine thread CPU s, spin s, wall s


@contextmanager
def session(
    factory: Callable[[], Relay],
    n: int,
    drv: Driver,
    lost: list[int],
    usage: list[Usage] | None = None,
) -> Iterator[Session]:
    """Open a relay over n queues, drain the add-time signals, and on the way
    out (error or not) append written-minus-counted to `lost` and, for the
    engine, its CPU and spin time to `usage`."""
    queues = Queues(drv.ffi, n)
    relay = factory()
    s = Session(relay, queues)
    try:
        relay.open(queues.fds)
        drv.drain(queues)
        yield s
    finally:
        try:
            lost.append(s.written - settled_count(relay, s.written))
            meter = getattr(relay, "usage", None)
            if usage is not None and meter is not None:
                usage.append(meter())
        finally:
            relay.close()
            queues.close()


# -- the busy "UI" thread --------------------------------------------------


def format_table(rows: int = 64) -> int:
    """One refresh of a queue table, as text: the UI's typical Python work."""
    lines = [
        f"{slot:>5} vq{slot % 8:<3} {slot * 7919:>12,} {slot * 104729:>14,} "
        f"{slot * 1.37:>9.1f}/s {'masked' if slot % 7 == 0 else 'live':<7}|"
        for slot in range(rows)
    ]
    "\n".join(lines)
    return rows


class BusyThread:
    """A Python thread pinned to `cpu`, 100% busy formatting table rows."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.rows = 0
        self._stop = threading.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="busy-ui", daemon=True)
        self._t0 = self._t1 = 0.0

    def _run(self) -> None:
        os.sched_setaffinity(0, {self.cpu})
        self._started.set()
        while not self._stop.is_set():
            self.rows += format_table()

    def __enter__(self) -> BusyThread:
        self._thread.start()
        self._started.wait()
        time.sleep(0.05)  # let it reach full speed
        self._t0 = time.monotonic()
        return self

    def __exit__(self, *exc: object) -> None:
        self._t1 = time.monotonic()
        self._stop.set()
        self._thread.join()

    @property
    def rows_per_s(self) -> float:
        return self.rows / max(self._t1 - self._t0, 1e-9)


# -- measurements ----------------------------------------------------------


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples."""
    rank = max(1, math.ceil(p / 100 * len(sorted_samples)))
    return sorted_samples[rank - 1]


def rtt_figures(prefix: str, samples: list[float]) -> Figures:
    ordered = sorted(samples)
    figures: Figures = {f"{prefix}_samples": len(ordered)}
    for label, p in (("p50", 50.0), ("p99", 99.0), ("p999", 99.9)):
        figures[f"{prefix}_{label}_us"] = round(percentile(ordered, p), 2) if ordered else None
    return figures


@dataclass(slots=True)
class Raw:
    """One implementation's measurements, accumulated over every pass."""

    rtt: list[float] = field(default_factory=list)
    busy_rtt: list[float] = field(default_factory=list)
    busy_rows_per_s: list[float] = field(default_factory=list)
    notifications_per_s: dict[int, list[float]] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)
    usage: list[Usage] = field(default_factory=list)  # engine only, per session
    idle: list[Usage] = field(default_factory=list)  # engine only, per pass
    error: str | None = None
    elapsed_s: float = 0.0


def measure_rtt(
    factory: Callable[[], Relay], drv: Driver, plan: Plan, busy_cpu: int, raw: Raw
) -> None:
    with session(factory, 1, drv, raw.lost, raw.usage) as s:
        raw.rtt += drv.rtt(s, plan.rtt_samples, plan.rtt_warmup, plan.rtt_max_s)
        with BusyThread(busy_cpu) as busy:
            raw.busy_rtt += drv.rtt(s, plan.busy_samples, BUSY_WARMUP, plan.busy_max_s)
        raw.busy_rows_per_s.append(busy.rows_per_s)


def measure_throughput(
    factory: Callable[[], Relay], drv: Driver, plan: Plan, n: int, raw: Raw
) -> None:
    with session(factory, n, drv, raw.lost, raw.usage) as s:
        drv.rounds(s, plan.rounds_warmup_s)
        rounds, elapsed = drv.rounds(s, plan.rounds_s)
        if n == plan.burst_queues:
            drv.burst(s, plan.burst_rounds)
    raw.notifications_per_s.setdefault(n, []).append(rounds * n / elapsed)


def measure_idle(factory: Callable[[], Relay], drv: Driver, raw: Raw) -> None:
    """An engine with one queue and no traffic for IDLE_S: its CPU and spin time."""
    with session(factory, 1, drv, raw.lost) as s:
        meter = getattr(s.relay, "usage", None)
        assert meter is not None, "an engine relay has usage()"
        time.sleep(0.05)  # a spin window left from the add-time signals runs out
        before = meter()
        time.sleep(IDLE_S)
        after = meter()
    raw.idle.append((after[0] - before[0], after[1] - before[1], after[2] - before[2]))


def measure_pass(
    name: str, factory: Callable[[], Relay], drv: Driver, plan: Plan, busy_cpu: int, raw: Raw
) -> None:
    """One pass over every figure; an error is recorded and ends the
    implementation's measurements, it is not raised."""
    t0 = time.monotonic()
    try:
        measure_rtt(factory, drv, plan, busy_cpu, raw)
        for n in QUEUE_COUNTS:
            measure_throughput(factory, drv, plan, n, raw)
        if name.startswith("engine"):
            measure_idle(factory, drv, raw)
    except (DriverError, OSError, TimeoutError) as e:
        raw.error = str(e)
        log(f"{name}: ERROR {e}")
    raw.elapsed_s += time.monotonic() - t0


def median(values: Sequence[float]) -> float | None:
    ordered = sorted(values)
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def summarise(raw: Raw) -> Figures:
    """Percentiles over the pooled samples, medians of per-pass rates."""
    figures: Figures = rtt_figures("rtt", raw.rtt) | rtt_figures("busy_rtt", raw.busy_rtt)
    busy_rows = median(raw.busy_rows_per_s)
    figures["busy_rows_per_s"] = None if busy_rows is None else round(busy_rows)
    for n in QUEUE_COUNTS:
        rate = median(raw.notifications_per_s.get(n, []))
        figures[f"relays_per_s_{n}"] = None if rate is None else round(2 * rate)
        figures[f"notifications_per_s_{n}"] = None if rate is None else round(rate)
        figures[f"relays_per_s_{n}_passes"] = [
            round(2 * r) for r in raw.notifications_per_s.get(n, [])
        ]
    figures["lost"] = sum(raw.lost)
    for key, usages, index in (
        ("engine_cpu_share", raw.usage, 0),
        ("spin_share", raw.usage, 1),
        ("idle_cpu_share", raw.idle, 0),
    ):
        wall = sum(u[2] for u in usages)
        figures[key] = round(sum(u[index] for u in usages) / wall, 5) if wall else None
    figures["elapsed_s"] = round(raw.elapsed_s, 1)
    if raw.error:
        figures["error"] = raw.error
    return figures


def run_all(
    names: Sequence[str],
    makers: dict[str, Callable[[], Relay]],
    drv: Driver,
    plan: Plan,
    busy_cpu: int,
) -> dict[str, Figures]:
    """plan.passes passes, each measuring every implementation in turn, so a
    transient disturbance of the machine is spread over all of them."""
    raws = {name: Raw() for name in names}
    for p in range(plan.passes):
        for name in names:
            if raws[name].error is None:
                log(f"pass {p + 1}/{plan.passes}: {name}")
                measure_pass(name, makers[name], drv, plan, busy_cpu, raws[name])
    return {name: summarise(raw) for name, raw in raws.items()}


# -- targets and report ----------------------------------------------------


def judge(target: Target, engine: Figures, c: Figures) -> tuple[float | None, str]:
    """(engine/c ratio, PASS/MISS/'') for one metric."""
    value, ref = engine.get(target.key), c.get(target.key)
    ratio = value / ref if isinstance(value, int | float) and ref else None
    if target.op == "==0":
        return ratio, "" if value is None else ("PASS" if value == 0 else "MISS")
    if target.op is None or ratio is None:
        return ratio, ""
    ok = ratio <= target.bound if target.op == "<=" else ratio >= target.bound
    return ratio, "PASS" if ok else "MISS"


def targets(results: dict[str, Figures]) -> dict[str, Figures]:
    out: dict[str, Figures] = {}
    engine, c = results.get("engine", {}), results.get("c", {})
    for t in METRICS:
        if t.op is None:
            continue
        ratio, verdict = judge(t, engine, c)
        bound = "== 0" if t.op == "==0" else f"{t.op} {t.bound:.2f}x"
        out[t.key] = {
            "engine_vs_c": None if ratio is None else round(ratio, 3),
            "target": bound,
            "result": verdict or None,
        }
    return out


def fmt_value(value: Any, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "/s":
        return f"{value / 1e6:.3f}M" if value >= 1e6 else f"{value / 1e3:.1f}k"
    if unit == "us":
        return f"{value:,.1f}"
    if unit == "%":
        return f"{100 * value:.2f}%"
    return str(value)


def render_table(results: dict[str, Figures], meta: Figures) -> str:
    names = [n for n in IMPLS if n in results]
    header = ["metric", *names, "engine/c", "target", "result"]
    rows = [header]
    for t in METRICS:
        ratio, verdict = judge(t, results.get("engine", {}), results.get("c", {}))
        target = {"<=": f"<= {t.bound:.2f}x", ">=": f">= {t.bound:.2f}x", "==0": "0"}
        label = f"{t.label} ({t.unit})" if t.unit == "us" else t.label
        rows.append(
            [
                label,
                *(fmt_value(results[n].get(t.key), t.unit) for n in names),
                "-" if ratio is None or t.op == "==0" else f"{ratio:.2f}x",
                target.get(t.op or "", ""),
                verdict,
            ]
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    for n in names:
        if "error" in results[n]:
            lines.append(f"{n}: ERROR {results[n]['error']}")
    lines.append(
        f"pinning: driver + relay on CPU {meta['relay_cpu']}, busy thread on CPU "
        f"{meta['busy_cpu']} ({meta['busy_placement']}); samples: "
        + ", ".join(
            f"{n} {results[n].get('rtt_samples', 0)}/{results[n].get('busy_rtt_samples', 0)}"
            for n in names
        )
        + " (idle/busy)"
    )
    load = f"{meta['loadavg_start'][0]:.2f} -> {meta['loadavg_end'][0]:.2f}"
    lines.append(f"load average (1 min) {load}; {meta['elapsed_s']} s")
    return "\n".join(lines)


# -- environment -----------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def raise_fd_limit(wanted: int = 16_384) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        soft = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def choose_cpus(cpu: int | None, busy: str) -> tuple[int, int]:
    allowed = sorted(os.sched_getaffinity(0))
    relay_cpu = allowed[0] if cpu is None else cpu
    if busy == "same":
        return relay_cpu, relay_cpu
    if busy == "other":
        others = [c for c in allowed if c != relay_cpu]
        return relay_cpu, others[0] if others else relay_cpu
    return relay_cpu, int(busy)


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return "?"


def cpu_model() -> str:
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "?"


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "?"


def engine_identity() -> Figures:
    """Which engine was measured: svqtui/engine is edited concurrently."""
    import svqtui.engine._relay as built

    module = Path(built.__file__)
    return {
        "module": str(module),
        "module_sha256": _sha256(module),
        "relay_c_sha256": _sha256(module.parent / "relay.c"),
    }


@dataclass(slots=True)
class Meta:
    quick: bool
    relay_cpu: int
    driver_cpu: int
    busy_cpu: int
    busy_placement: str
    busy_note: str
    cpus_online: list[int]
    cpu_model: str = field(default_factory=cpu_model)
    kernel: str = field(default_factory=platform.release)
    python: str = field(default_factory=platform.python_version)
    clocksource: str = field(
        default_factory=lambda: _read(
            "/sys/devices/system/clocksource/clocksource0/current_clocksource"
        )
    )
    gil_switch_interval_s: float = field(default_factory=sys.getswitchinterval)
    engine_build: Figures = field(default_factory=engine_identity)
    nofile_limit: int = 0
    plan: Figures = field(default_factory=dict)
    loadavg_start: list[float] = field(default_factory=lambda: list(os.getloadavg()))
    loadavg_end: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller run, under 60 s")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--cpu", type=int, help="CPU for driver and relay (default: first allowed)")
    p.add_argument(
        "--busy-cpu",
        default="other",
        help="CPU for the busy thread: a number, 'same' or 'other' (default)",
    )
    p.add_argument("--impl", default=",".join(IMPLS), help="comma-separated subset to run")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    names = args.impl.split(",")
    if unknown := set(names) - set(IMPLS):
        log(f"unknown implementation(s): {', '.join(sorted(unknown))}; known: {', '.join(IMPLS)}")
        return 2
    t0 = time.monotonic()
    ffi, lib = cbuild.load()  # before pinning: the compiler may use every CPU
    online = sorted(os.sched_getaffinity(0))
    relay_cpu, busy_cpu = choose_cpus(args.cpu, args.busy_cpu)
    os.sched_setaffinity(0, {relay_cpu})  # inherited by every relay thread
    plan = QUICK if args.quick else FULL
    meta = Meta(
        quick=args.quick,
        relay_cpu=relay_cpu,
        driver_cpu=relay_cpu,
        busy_cpu=busy_cpu,
        busy_placement="same CPU" if busy_cpu == relay_cpu else "other CPU",
        busy_note=BUSY_NOTE,
        cpus_online=online,
        nofile_limit=raise_fd_limit(),
        plan=asdict(plan),
    )
    drv = Driver(ffi, lib)
    log(f"driver and relays on CPU {relay_cpu}, busy thread on CPU {busy_cpu}")
    results = run_all(names, factories(lib), drv, plan, busy_cpu)
    meta.elapsed_s = round(time.monotonic() - t0, 1)
    meta.loadavg_end = list(os.getloadavg())
    report: Figures = {"meta": asdict(meta) | {"targets": targets(results)}, **results}
    print(json.dumps(report, indent=2) if args.json else render_table(results, asdict(meta)))
    return 1 if any("error" in r for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
