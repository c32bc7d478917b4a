"""Remote console benchmark: the console side of ``--attach`` with several
hosts over SSH, and an action's round trip over SSH.

Each "host" is a child process serving a Runtime with the synthetic
many-queue source of benchmarks/ui.py (every counter moves every refresh) on
its control socket, behind a real sshd on 127.0.0.1 (tests.support.sshd: one
sshd, one SSH session per host, as svqtui opens them). The parent is the
console's back-end without a screen: a ``MultiRemoteRuntime`` whose
``MultiMonitor`` runs its clocks (one feed thread per host) for the given
time. Rendering is not included: benchmarks/ui.py measures the console
rendering 1,024 queues, which is what 4 hosts of 256 make after the merge.

Per run it reports: merged snapshots per second; per host, a fetch's time
(snapshot + events request, decode, p50/max); the prefix-and-merge cost
(``MultiMonitor.merge_ms``, p50/max); CPU shares of the console process and
of its ssh clients; and, on one host, a shadow toggle's round trip over SSH
next to the same on the local socket.

Usage: python benchmarks/remote.py [--hosts 4] [--queues 256] [--seconds 10]
                                   [--refresh 1.0] [--json]
The children and the sshd share the machine with the parent: on a small
box their cost is in the parent's numbers' noise, not in its CPU figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def serve_child(queues: int, socket: str) -> int:
    """Serve a synthetic ``queues``-queue runtime on ``socket`` until SIGTERM."""
    from ui import _synthetic_source

    from svqtui.config import Config, EngineConfig
    from svqtui.runtime import Runtime
    from tests.support.control import serve

    config = Config(
        refresh_s=1.0, max_queues=64, control_socket=socket, engine=EngineConfig(polling="off")
    )
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    with serve(Runtime(config, sources=[_synthetic_source(queues)])):
        while not stop:
            time.sleep(0.2)
    return 0


def pct(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"p50": 0.0, "max": 0.0}
    return {"p50": statistics.median(samples), "max": max(samples)}


def wait_socket(path: str, timeout: float = 60.0) -> None:
    from svqtui.control.sockfile import probe

    deadline = time.monotonic() + timeout
    while not probe(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"no control socket at {path}")
        time.sleep(0.1)


def round_trip(target: str, n: int = 30) -> dict[str, float]:
    from svqtui.control.endpoint import Endpoint

    endpoint = Endpoint(target)
    client = endpoint.client()
    try:
        client.hello()
        key = next(iter(client.snapshot().devices))
        times = []
        for _ in range(n):
            t0 = time.perf_counter()
            client.reset(key)  # an action the synthetic source takes
            times.append((time.perf_counter() - t0) * 1000)
        return pct(times)
    finally:
        client.close()
        endpoint.close()


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from svqtui.config import Config
    from svqtui.control.multi import MultiRemoteRuntime
    from tests.support.sshd import Sshd

    work = Path(tempfile.mkdtemp(prefix="svqtui-bench-"))
    children = []
    sockets = [str(work / f"h{i}.sock") for i in range(args.hosts)]
    for sock in sockets:
        children.append(
            subprocess.Popen(
                [sys.executable, __file__, "--serve", str(args.queues), sock],
                stdin=subprocess.DEVNULL,
            )
        )
    result: dict[str, Any] = {"hosts": args.hosts, "queues_per_host": args.queues}
    try:
        with Sshd(work / "sshd") as sshd:
            os.environ["SVQTUI_SSH_OPTS"] = shlex.join(sshd.client_options())
            for sock in sockets:
                wait_socket(sock)
            urls = [sshd.url(s) for s in sockets]
            result["round_trip_ms"] = {"local": round_trip(sockets[0]), "ssh": round_trip(urls[0])}
            multi = MultiRemoteRuntime(Config(refresh_s=args.refresh), urls)
            fetch: dict[str, list[float]] = {h: [] for h in multi.hosts}
            for host, runtime in multi.hosts.items():
                monitor = runtime.monitor
                inner = monitor.refresh

                def timed(inner: Any = inner, host: str = host) -> Any:
                    t0 = time.perf_counter()
                    snap = inner()
                    fetch[host].append((time.perf_counter() - t0) * 1000)
                    return snap

                monitor._feed._refresh = timed  # measure the feed's refresh
            merges: list[float] = []
            published = [0]

            def on_snapshot(_: object) -> None:
                merges.append(multi.monitor.merge_ms)
                published[0] += 1

            multi.check()
            multi.monitor.subscribe(on_snapshot)
            multi.monitor.start()
            time.sleep(3.0)  # warm-up: every tunnel up, rates flowing
            for samples in fetch.values():
                samples.clear()
            merges.clear()
            published[0] = 0
            me = psutil.Process()
            sshs = [p for p in me.children() if p.name() == "ssh"]
            cpu0 = me.cpu_times()
            ssh0 = [p.cpu_times() for p in sshs]
            t0 = time.monotonic()
            time.sleep(args.seconds)
            wall = time.monotonic() - t0
            cpu1 = me.cpu_times()
            ssh1 = [p.cpu_times() for p in sshs]
            snap = multi.monitor.latest
            multi.close()
            result.update(
                {
                    "refresh_s": args.refresh,
                    "seconds": round(wall, 2),
                    "rows": len(snap.rows) if snap else 0,
                    "merged_per_s": round(published[0] / wall, 2),
                    "fetch_ms": {h: pct(s) for h, s in fetch.items()},
                    "merge_ms": pct(merges),
                    "console_cpu_share": (
                        (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
                    ),
                    "ssh_cpu_share": sum(
                        b.user + b.system - a.user - a.system
                        for a, b in zip(ssh0, ssh1, strict=True)
                    )
                    / wall,
                    "load_avg": os.getloadavg()[0],
                }
            )
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.wait(15)
    return result


def print_report(r: dict[str, Any]) -> None:
    print(
        f"{r['hosts']} hosts x {r['queues_per_host']} queues = {r['rows']} rows, "
        f"refresh {r['refresh_s']} s, {r['seconds']} s measured (load avg {r['load_avg']:.1f})"
    )
    print(f"  merged snapshots/s   {r['merged_per_s']}")
    for host, f in r["fetch_ms"].items():
        print(f"  fetch {host:<28} p50 {f['p50']:.1f} ms  max {f['max']:.1f} ms")
    merge = r["merge_ms"]
    print(f"  prefix+merge         p50 {merge['p50']:.2f} ms  max {merge['max']:.2f} ms")
    print(f"  console CPU          {r['console_cpu_share']:.1%} of a core (no rendering)")
    print(f"  its ssh clients CPU  {r['ssh_cpu_share']:.1%} of a core")
    for name, rt in r["round_trip_ms"].items():
        print(f"  action round trip {name:<5} p50 {rt['p50']:.1f} ms  max {rt['max']:.1f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve", nargs=2, metavar=("QUEUES", "SOCKET"), help=argparse.SUPPRESS)
    parser.add_argument("--hosts", type=int, default=4)
    parser.add_argument("--queues", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--refresh", type=float, default=1.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.serve:
        return serve_child(int(args.serve[0]), args.serve[1])
    result = measure(args)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print_report(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
