"""The Prometheus exporter across ``svqtui --headless --takeover``
(docs/design.md#takeover): the metrics listening socket is handed over like
the control socket, so a scraper never sees a refused connection and the
counters never go down; a new ``metrics.listen`` is bound by N instead."""

from __future__ import annotations

import http.client
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.prometheus import free_port
from tests.support.wait import wait_until
from tests.takeover.rig import TakeoverRig, write_config


class Scraper:
    """GET /metrics every 50 ms from a thread; records failures and, per
    counter series, every value in order (with which svqtui answered)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.errors: list[str] = []
        self.scrapes = 0
        self.series: dict[str, list[float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Scraper:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            try:
                conn.request("GET", "/metrics")
                reply = conn.getresponse()
                body = reply.read().decode()
                if reply.status != 200:
                    self.errors.append(f"HTTP {reply.status}")
                    continue
            except OSError as err:
                self.errors.append(f"{type(err).__name__}: {err}")
                continue
            finally:
                conn.close()
            self.scrapes += 1
            for family in text_string_to_metric_families(body):
                if family.type != "counter":
                    continue
                for sample in family.samples:
                    if not sample.name.endswith("_total"):
                        continue
                    key = sample.name + repr(sorted(sample.labels.items()))
                    self.series.setdefault(key, []).append(sample.value)

    def decreases(self) -> list[str]:
        found = []
        for key, values in self.series.items():
            for a, b in itertools.pairwise(values):
                if b < a:
                    found.append(f"{key}: {a} -> {b}")
        return found


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[TakeoverRig]:
    made = TakeoverRig(tmp_path, shadow=True, metrics=f"127.0.0.1:{free_port()}")
    yield made
    made.close()


def _port(rig: TakeoverRig) -> int:
    text = rig.config.read_text()
    return int(text.split("metrics: {listen: '127.0.0.1:")[1].split("'")[0])


def test_scrapes_across_takeovers_are_never_refused(rig: TakeoverRig) -> None:
    """A scrape every 50 ms through 5 takeovers (shadow on, traffic): every
    scrape is answered (no refused or reset connection), no counter ever
    goes down, and N serves the same socket (the port stays the same)."""
    rig.start_traffic()
    scraper = Scraper(_port(rig)).start()
    try:
        wait_until(lambda: scraper.scrapes > 5, what="scrapes before the takeovers")
        for _ in range(5):
            before = scraper.scrapes
            assert rig.take_over() == 0
            wait_until(lambda b=before: scraper.scrapes > b + 5, what="scrapes after")  # type: ignore[misc]
    finally:
        scraper.stop()
    assert not scraper.errors, scraper.errors[:5]
    assert not scraper.decreases(), scraper.decreases()[:5]
    kicks = [k for k in scraper.series if k.startswith("svqtui_virtqueue_kicks_total")]
    assert kicks and any(len(scraper.series[k]) > 30 for k in kicks)
    for old in rig.retired:
        assert "Traceback" not in old.stderr
    assert "metrics: serving" in rig.current.stderr
    assert "taken over from the old svqtui" in rig.current.stderr


def test_a_new_metrics_address_is_bound_by_the_new_svqtui(rig: TakeoverRig) -> None:
    """N's configuration moves metrics.listen: N binds the new address
    before it says "have", says so in one line, serves there, and the old
    address is closed once O has exited."""
    rig.start_traffic(probe=False)
    old_port, new_port = _port(rig), free_port()
    write_config(rig.dir, rig.shadow, f"127.0.0.1:{new_port}")
    assert rig.take_over() == 0
    lines = [line for line in rig.current.stderr.splitlines() if "metrics: serving" in line]
    assert len(lines) == 1 and f":{new_port}/metrics" in lines[0]
    assert f"the old svqtui's 127.0.0.1:{old_port} is closed" in lines[0]
    scraper = Scraper(new_port).start()
    wait_until(lambda: scraper.scrapes > 2, what="scrapes at the new address")
    scraper.stop()
    with pytest.raises(ConnectionRefusedError):
        conn = http.client.HTTPConnection("127.0.0.1", old_port, timeout=5)
        try:
            conn.request("GET", "/metrics")
        finally:
            conn.close()


def test_a_busy_new_metrics_address_refuses_the_takeover(rig: TakeoverRig) -> None:
    """N's new metrics.listen is taken by someone else: N refuses with one
    line before "have" and exits 1; O goes on serving, metrics included."""
    rig.start_traffic(probe=False)
    old_port = _port(rig)
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        write_config(rig.dir, rig.shadow, f"127.0.0.1:{squatter.getsockname()[1]}")
        n = rig.successor()
        assert n.proc is not None
        assert n.proc.wait(30) == 1
        time.sleep(0.2)
    assert "cannot serve metrics on" in n.stderr and "Traceback" not in n.stderr
    rig.retired.append(n)
    old = rig.current
    assert old.proc is not None and old.proc.poll() is None
    wait_until(lambda: "takeover failed" in old.stderr, what="O resumes")
    scraper = Scraper(old_port).start()
    wait_until(lambda: scraper.scrapes > 2, what="O still serves metrics")
    scraper.stop()
    assert not scraper.errors
