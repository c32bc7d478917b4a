"""A real Prometheus server (Debian's ``prometheus``) for tests, on loopback.

``PrometheusServer`` writes a config that scrapes the given targets every
second, starts ``prometheus`` on 127.0.0.1 with a free port and a temporary
data directory (a ``ManagedProcess``: its own process group, stopped by PID,
never left behind), waits for ``/-/ready``, and queries its HTTP API.
Fixtures that start one are tagged ``@needs(PROMETHEUS)``.
"""

from __future__ import annotations

import json
import shutil
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from svqtui.lab.process import ManagedProcess, StartStop

READY_TIMEOUT_S = 60.0
PROMTOOL = shutil.which("promtool")
PROMETHEUS = shutil.which("prometheus")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for a program that cannot take 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrometheusError(AssertionError):
    """A query failed or Prometheus did not come up (a test failure)."""


class PrometheusServer(StartStop):
    """``prometheus`` scraping ``targets`` (HOST:PORT) every ``interval``."""

    def __init__(self, directory: Path, targets: list[str], interval: str = "1s") -> None:
        if PROMETHEUS is None:
            raise PrometheusError("prometheus not found: apt-get install prometheus")
        self.directory = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = directory / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {interval}\n"
            f"  evaluation_interval: {interval}\n"
            "scrape_configs:\n"
            "  - job_name: svqtui\n"
            f"    scrape_timeout: {interval}\n"
            f"    static_configs: [{{targets: {json.dumps(targets)}}}]\n"
        )
        self.process = ManagedProcess(
            "prometheus",
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--log.level=warn",
            ],
            directory / "prometheus.stderr",
        )

    def start(self) -> None:
        self.process.start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if not self.process.running:
                raise PrometheusError(f"prometheus exited:\n{self.process.stderr_tail(20)}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as reply:
                    if reply.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"prometheus not ready in {READY_TIMEOUT_S} s:\n{self.process.stderr_tail(20)}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.stop()

    def api(self, path: str, **params: str) -> Any:
        """GET /api/v1/PATH?params; the ``data`` of a successful answer."""
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as reply:
                body = json.load(reply)
        except urllib.error.HTTPError as err:
            raise PrometheusError(f"{path} {params}: {err.read().decode()}") from None
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """An instant vector: [{"metric": {...}, "value": [t, "v"]}, ...]."""
        params = {"query": expr} if at is None else {"query": expr, "time": f"{at:.3f}"}
        data = self.api("query", **params)
        return list(data["result"])

    def query_range(
        self, expr: str, start: float, end: float, step: float = 1.0
    ) -> list[dict[str, Any]]:
        """A range result: [{"metric": {...}, "values": [[t, "v"], ...]}, ...]."""
        data = self.api(
            "query_range", query=expr, start=f"{start:.3f}", end=f"{end:.3f}", step=f"{step}"
        )
        return list(data["result"])

    def targets_up(self) -> list[dict[str, Any]]:
        return [t for t in self.api("targets")["activeTargets"] if t.get("health") == "up"]
