"""Exporter benchmark: scrape time, exposition size and CPU per scrape.

Serves a synthetic snapshot (tests.support.console.synthetic_snapshot: 16
queues per device, every family filled) with the real ``MetricsServer`` on
127.0.0.1 and scrapes it with ``curl`` in a child process, so the CPU time of
this process is the exporter's alone (the collector, the text format, the
HTTP server thread). Per queue count it reports:

* the exposition size, plain and gzip (what Prometheus asks for);
* scrape wall time p50 / max as curl measures it (connect to last byte);
* the exporter's CPU time per scrape, and what that costs at a 15 s scrape
  interval as a share of one core.

Usage: python benchmarks/prometheus.py [--queues 16,256,1024,4096] [--scrapes 20] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # svqtui and tests.support

from svqtui.config import MetricsListen
from svqtui.model import Snapshot
from svqtui.outputs.prometheus import MetricsServer, exposition
from tests.support.console import synthetic_snapshot

QUEUES_PER_DEVICE = 16
SCRAPE_INTERVAL_S = 15.0


@dataclasses.dataclass
class Published:
    latest: Snapshot | None
    refresh_ms: float = 0.0


def curl(url: str, gzipped: bool) -> float:
    """One scrape by curl; its total time in seconds."""
    args = ["curl", "-sS", "-o", "/dev/null", "-w", "%{time_total}"]
    if gzipped:
        args += ["-H", "Accept-Encoding: gzip"]
    out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    return float(out)


def measure(queues: int, scrapes: int) -> dict[str, float]:
    snap = synthetic_snapshot(max(1, queues // QUEUES_PER_DEVICE), min(queues, QUEUES_PER_DEVICE))
    text = exposition(snap)
    series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    result: dict[str, float] = {
        "queues": queues,
        "series": series,
        "bytes": len(text),
        "gzip_bytes": len(gzip.compress(text)),
    }
    with MetricsServer(MetricsListen("127.0.0.1", 0), Published(snap)) as server:
        curl(server.url, True)  # warm up
        for gzipped in (False, True):
            key = "gzip" if gzipped else "plain"
            cpu0 = time.process_time()
            walls = [curl(server.url, gzipped) for _ in range(scrapes)]
            cpu = (time.process_time() - cpu0) / scrapes
            result[f"{key}_p50_ms"] = statistics.median(walls) * 1e3
            result[f"{key}_max_ms"] = max(walls) * 1e3
            result[f"{key}_cpu_ms"] = cpu * 1e3
            result[f"{key}_core_pct_at_15s"] = cpu / SCRAPE_INTERVAL_S * 100
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queues", default="16,256,1024,4096")
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    rows = [measure(int(q), args.scrapes) for q in args.queues.split(",")]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(
        f"{'queues':>6} {'series':>7} {'bytes':>9} {'gzip':>7} "
        f"{'p50 ms':>7} {'max ms':>7} {'cpu ms':>7} {'gz p50':>7} {'gz cpu':>7} {'core% @15s':>10}"
    )
    for r in rows:
        print(
            f"{r['queues']:>6.0f} {r['series']:>7.0f} {r['bytes']:>9.0f} {r['gzip_bytes']:>7.0f} "
            f"{r['plain_p50_ms']:>7.1f} {r['plain_max_ms']:>7.1f} {r['plain_cpu_ms']:>7.1f} "
            f"{r['gzip_p50_ms']:>7.1f} {r['gzip_cpu_ms']:>7.1f} {r['gzip_core_pct_at_15s']:>10.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
