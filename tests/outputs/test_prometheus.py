"""The Prometheus exporter (svqtui.outputs.prometheus): names, labels and types
of the exposition (parsed with prometheus_client's own parser), counter
semantics, the HTTP server, and the collector's promise never to refresh.

The end-to-end tests (marked ``prometheus``) run Debian's real Prometheus on
127.0.0.1, scraping a real ``svqtui --headless`` on the embedded demo every
second, and query it through its HTTP API.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from svqtui.config import MetricsListen, StuckConfig
from svqtui.eventlog import EventLog
from svqtui.model import (
    DeviceView,
    MaskState,
    MigrationView,
    QueueRow,
    QueueView,
    Snapshot,
    StuckRule,
    VMView,
)
from svqtui.monitor import Monitor
from svqtui.outputs import output_named
from svqtui.outputs.prometheus import (
    MIGRATION_STATUSES,
    MetricsListenError,
    MetricsServer,
    exposition,
)
from svqtui.sources.demo.source import EPISODES
from tests.support.console import FROZEN_WALL, synthetic_snapshot
from tests.support.fake_source import FakeSource
from tests.support.headless import HeadlessProcess, svqtui
from tests.support.markers import PROMETHEUS, needs
from tests.support.prometheus import PrometheusServer
from tests.support.wait import wait_until

COUNTERS = {
    "svqtui_virtqueue_kicks",
    "svqtui_virtqueue_calls",
    "svqtui_virtqueue_held",
    "svqtui_engine_relays",
}
QUEUE_GAUGES = {
    "svqtui_virtqueue_in_flight",
    "svqtui_virtqueue_avail_index",
    "svqtui_virtqueue_used_index",
    "svqtui_virtqueue_masked",
    "svqtui_virtqueue_pending",
    "svqtui_virtqueue_shadow",
}


def families(snap: Snapshot, now: float | None = None) -> dict[str, tuple[str, list[Sample]]]:
    """Family name -> (type, samples), as a Prometheus client would read them."""
    text = exposition(snap, now).decode()
    return {f.name: (f.type, f.samples) for f in text_string_to_metric_families(text)}


def samples(snap: Snapshot, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """The samples of one metric (by sample name), keyed by their sorted labels."""
    out = {}
    for _, found in families(snap).values():
        for s in found:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] = s.value
    return out


def one_queue(q: QueueView, stuck: StuckRule | None = None, **vm: object) -> Snapshot:
    """A snapshot of one VM "vm1" with one device "blk0" with queue ``q``."""
    base = synthetic_snapshot(1, 1)
    dev = DeviceView("k:blk0", "blk0", "vhost-user-blk", "vhost-user", queues=(q,))
    view = VMView("k:vm1", "vm1", "qmp", (dev,), **vm)  # type: ignore[arg-type]
    row = QueueRow(q, dev.key, "vm1", "blk0", stuck="x" if stuck else None, stuck_rule=stuck)
    return dataclasses.replace(base, vms=(view,), devices={dev.key: dev}, rows={row.key: row})


def test_every_issue_metric_is_there_with_its_type_and_labels() -> None:
    """The exposition of a counting queue has each metric the issue names, the
    counters as counters (``_total`` samples) and the rest as gauges, with the
    labels vm, device, queue (and rule on the stuck gauge)."""
    found = families(synthetic_snapshot(2, 2))
    for name in COUNTERS:
        kind, got = found[name]
        assert kind == "counter", name
        assert got and all(s.name == f"{name}_total" for s in got), name
    for name in QUEUE_GAUGES:
        kind, got = found[name]
        assert kind == "gauge", name
        assert {tuple(sorted(s.labels)) for s in got} == {("device", "queue", "vm")}, name
    kind, stuck = found["svqtui_virtqueue_stuck"]
    assert kind == "gauge"
    assert {tuple(sorted(s.labels)) for s in stuck} == {("device", "queue", "rule", "vm")}
    for name in (
        "svqtui_engine_heartbeat_age_seconds",
        "svqtui_engine_up",
        "svqtui_source_up",
        "svqtui_vm_migration_status",
        "svqtui_vm_migration_remaining_bytes",
    ):
        assert found[name][0] == "gauge", name
    assert {s.labels["source"] for s in found["svqtui_source_up"][1]} == {"syn"}


def test_series_per_queue_is_the_documented_cardinality() -> None:
    """A counting queue with ring indices and a mask state has 12 series
    (3 counters, 6 gauges, 3 stuck rules), as the README says; 1,024 queues
    export 12,288 queue series."""
    per_queue = [
        s
        for _, got in families(synthetic_snapshot(1, 1)).values()
        for s in got
        if "queue" in s.labels
    ]
    assert len(per_queue) == 12
    big = [
        s
        for _, got in families(synthetic_snapshot(64, 16)).values()
        for s in got
        if "queue" in s.labels
    ]
    assert len(big) == 12 * 1024


def test_values_follow_the_queue() -> None:
    """Totals, indices, in-flight, mask and shadow are the queue's own values."""
    q = QueueView(
        0,
        kicks=70,
        calls=60,
        held=3,
        mask=MaskState.PENDING,
        shadow=True,
        avail_idx=5,
        used_idx=65534,
    )
    snap = one_queue(q)
    labels = (("device", "blk0"), ("queue", "0"), ("vm", "vm1"))
    assert samples(snap, "svqtui_virtqueue_kicks_total") == {labels: 70}
    assert samples(snap, "svqtui_virtqueue_calls_total") == {labels: 60}
    assert samples(snap, "svqtui_virtqueue_held_total") == {labels: 3}
    assert samples(snap, "svqtui_virtqueue_in_flight") == {labels: 7}  # wraps at 65536
    assert samples(snap, "svqtui_virtqueue_avail_index") == {labels: 5}
    assert samples(snap, "svqtui_virtqueue_used_index") == {labels: 65534}
    assert samples(snap, "svqtui_virtqueue_masked") == {labels: 1}
    assert samples(snap, "svqtui_virtqueue_pending") == {labels: 1}
    assert samples(snap, "svqtui_virtqueue_shadow") == {labels: 1}


@pytest.mark.parametrize(
    ("mask", "masked", "pending"),
    [(MaskState.UNMASKED, 0, 0), (MaskState.MASKED, 1, 0), (MaskState.PENDING, 1, 1)],
)
def test_masked_is_one_while_masked_or_pending(mask: MaskState, masked: int, pending: int) -> None:
    """``masked`` is 1 for MASKED and PENDING, ``pending`` only for PENDING."""
    snap = one_queue(QueueView(0, kicks=1, calls=1, mask=mask))
    assert list(samples(snap, "svqtui_virtqueue_masked").values()) == [masked]
    assert list(samples(snap, "svqtui_virtqueue_pending").values()) == [pending]


def test_a_queue_svqtui_cannot_count_has_no_counters() -> None:
    """A queue seen only through QMP (no kicks/calls, no mask, no indices) has
    no counter, index or mask series rather than zeros that would look like a
    reset, and still its shadow and stuck gauges."""
    snap = one_queue(QueueView(0))
    found = families(snap)
    for name in (*COUNTERS - {"svqtui_engine_relays"}, *QUEUE_GAUGES - {"svqtui_virtqueue_shadow"}):
        assert found[name][1] == [], name
    assert len(found["svqtui_virtqueue_shadow"][1]) == 1
    assert len(found["svqtui_virtqueue_stuck"][1]) == 3


def test_stuck_names_the_rule_that_flagged_the_queue() -> None:
    """Each queue has one stuck series per rule, 1 for the rule that flagged it."""
    snap = one_queue(QueueView(0, kicks=5, calls=0), stuck=StuckRule.KICKS_WITHOUT_CALLS)
    got = {dict(k)["rule"]: v for k, v in samples(snap, "svqtui_virtqueue_stuck").items()}
    assert got == {"in_flight": 0, "kicks_without_calls": 1, "source": 0}


def test_migration_status_is_one_hot_with_the_bytes() -> None:
    """A VM with migration state: 1 for its status, 0 for every other QEMU
    status, and the byte counts; an unknown status is added, not dropped."""
    mig = MigrationView("active", passes=2, transferred=10, remaining=90, total=100)
    snap = one_queue(QueueView(0), migration=mig)
    status = {dict(k)["status"]: v for k, v in samples(snap, "svqtui_vm_migration_status").items()}
    assert set(status) == set(MIGRATION_STATUSES)
    assert [s for s, v in status.items() if v == 1] == ["active"]
    assert list(samples(snap, "svqtui_vm_migration_remaining_bytes").values()) == [90]
    assert list(samples(snap, "svqtui_vm_migration_transferred_bytes").values()) == [10]
    odd = one_queue(QueueView(0), migration=MigrationView("x-new-state"))
    status = {dict(k)["status"]: v for k, v in samples(odd, "svqtui_vm_migration_status").items()}
    assert status["x-new-state"] == 1 and sum(status.values()) == 1


def test_two_devices_with_one_name_never_share_a_series() -> None:
    """Two devices named alike under one VM (different sources) get distinct
    label sets, the same at every scrape, so their counters never interleave."""
    base = synthetic_snapshot(2, 1)
    vm = base.vms[0]
    twin = dataclasses.replace(vm.devices[1], name=vm.devices[0].name)
    snap = dataclasses.replace(base, vms=(dataclasses.replace(vm, devices=(vm.devices[0], twin)),))
    names = [dict(k)["device"] for k in samples(snap, "svqtui_virtqueue_kicks_total")]
    assert len(names) == len(set(names)) == 2
    assert names == [dict(k)["device"] for k in samples(snap, "svqtui_virtqueue_kicks_total")]


def test_engine_and_snapshot_age() -> None:
    """Engine relays (a counter), heartbeat age, and the snapshot's age at scrape time."""
    base = synthetic_snapshot(1, 1)
    snap = dataclasses.replace(
        base, engine=dataclasses.replace(base.engine, relays=1234, heartbeat_age_s=0.25)
    )
    assert samples(snap, "svqtui_engine_relays_total") == {(): 1234}
    assert samples(snap, "svqtui_engine_heartbeat_age_seconds") == {(): 0.25}
    age = {
        s.name: s.value for s in families(snap, FROZEN_WALL + 7)["svqtui_snapshot_age_seconds"][1]
    }
    assert age == {"svqtui_snapshot_age_seconds": 7}


def test_the_prometheus_output_prints_the_exposition() -> None:
    """``--once --output prometheus`` renders the same text (textfile collector)."""
    snap = synthetic_snapshot(1, 2)

    def timeless(text: str) -> list[str]:  # the snapshot's age moves with the clock
        return [line for line in text.splitlines() if "age_seconds " not in line]

    rendered = output_named("prometheus").render(snap)
    assert timeless(rendered) == timeless(exposition(snap).decode())
    assert "svqtui_virtqueue_kicks_total{" in rendered


def _monitor_with_fake() -> tuple[Monitor, FakeSource]:
    source = FakeSource()
    return Monitor([source], None, EventLog(), stuck=StuckConfig()), source


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def test_the_server_serves_the_latest_snapshot_and_never_refreshes() -> None:
    """Over real HTTP: a scrape shows what the monitor published last (counts
    that changed in the source since then do not show), and scraping does not
    make the monitor take a snapshot."""
    monitor, source = _monitor_with_fake()
    source.queue = QueueView(0, kicks=5, calls=4)
    monitor.refresh()
    source.queue = QueueView(0, kicks=500, calls=400)  # not yet refreshed
    with MetricsServer(MetricsListen("127.0.0.1", 0), monitor) as server:
        assert server.port != 0
        seq = monitor.seq
        for _ in range(3):
            text = _get(server.url)
        assert monitor.seq == seq
        assert 'svqtui_virtqueue_kicks_total{device="dev",queue="0",vm="vm"} 5.0' in text
        monitor.refresh()
        assert 'svqtui_virtqueue_kicks_total{device="dev",queue="0",vm="vm"} 500.0' in _get(
            server.url
        )


def test_before_the_first_snapshot_only_the_monitor_gauge() -> None:
    """A scrape before the first refresh answers at once, without queue metrics."""
    monitor, _ = _monitor_with_fake()
    with MetricsServer(MetricsListen("127.0.0.1", 0), monitor) as server:
        text = _get(server.url)
    assert "svqtui_monitor_refresh_seconds" in text
    assert "svqtui_virtqueue_kicks_total{" not in text


def test_a_busy_port_is_a_metrics_listen_error() -> None:
    """Listening where something already listens raises MetricsListenError naming the address."""
    monitor, _ = _monitor_with_fake()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MetricsListenError, match=f"127.0.0.1:{port}"):
            MetricsServer(MetricsListen("127.0.0.1", port), monitor).start()


# -- a real Prometheus scraping a real svqtui --headless ----------------------------

RATE = "rate(svqtui_virtqueue_kicks_total[10s])"
QueueId = tuple[str, str, str]


@dataclasses.dataclass
class Scraped:
    headless: HeadlessProcess
    prometheus: PrometheusServer
    since: float = 0.0  # from when Prometheus has a rate for every queue

    def ctl(self, *args: str) -> str:
        result = svqtui("ctl", "-c", str(self.headless.config), *args, home=self.headless.directory)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.ctl("status", "--json"))
        return doc

    def settle(self) -> None:
        """Let Prometheus scrape what svqtui published until now (two scrapes)."""
        time.sleep(2.5)


def kicks_of(doc: dict[str, Any]) -> dict[QueueId, int]:
    return {
        (vm["name"], dev["name"], str(q["index"])): q["kicks"]
        for vm in doc["vms"]
        for dev in vm["devices"]
        for q in dev["queues"]
        if q["kicks"] is not None
    }


def by_queue(result: list[dict[str, Any]]) -> dict[QueueId, float]:
    return {
        (r["metric"]["vm"], r["metric"]["device"], r["metric"]["queue"]): float(r["value"][1])
        for r in result
    }


@pytest.fixture(scope="module")
@needs(PROMETHEUS)
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    """A headless svqtui (demo, seed 7) serving metrics on a free loopback
    port, and a real Prometheus scraping it every second."""
    directory = tmp_path_factory.mktemp("prom")
    config = directory / "config.yaml"
    config.write_text(
        "refresh: 0.2\n"
        "demo: {enabled: true, seed: 7}\n"
        "qmp: {discover: false}\n"
        f"control: {{socket: {directory / 'run' / 'c.sock'}}}\n"
        'metrics: {listen: "127.0.0.1:0"}\n'
    )
    with HeadlessProcess(directory, config=config) as headless:
        found = wait_until(
            lambda: re.search(r"metrics: serving http://([0-9.:]+)/metrics", headless.stderr),
            what="svqtui to say where it serves metrics",
            describe=lambda: headless.stderr,
        )
        prom_dir = directory / "prometheus"
        prom_dir.mkdir()
        with PrometheusServer(prom_dir, [found.group(1)]) as prometheus:
            wait_until(
                lambda: len(prometheus.query(RATE)) == 10,
                timeout=60,
                what="a rate series per demo queue",
                describe=lambda: prometheus.query(RATE),
            )
            yield Scraped(headless, prometheus, since=time.time())


def test_prometheus_rates_are_the_demo_rates(scraped: Scraped) -> None:
    """Through the HTTP API, rate(svqtui_virtqueue_kicks_total[10s]) has one
    series per demo queue, each near the rate svqtui's own ``ctl status --json``
    totals give over the same ten seconds."""
    prom = scraped.prometheus
    queues = kicks_of(scraped.status())
    assert len(queues) == 10  # net0: 4 queue pairs, blk0: 2 queues
    wait_until(
        lambda: set(by_queue(prom.query(RATE))) == set(queues),
        timeout=60,
        what="a rate series per demo queue",
        describe=lambda: prom.query(RATE),
    )
    time.sleep(10)  # a full window of scrapes
    first = scraped.status()
    time.sleep(10)
    last = scraped.status()
    scraped.settle()
    rates = by_queue(prom.query(RATE, at=last["time"]))
    span = last["time"] - first["time"]
    ours = {q: (n - kicks_of(first)[q]) / span for q, n in kicks_of(last).items()}
    assert set(rates) == set(ours)
    # a queue with a demo episode (a masked vector, a stall...) changes its
    # rate by design somewhere in the cycle; two 10 s windows a scrape apart
    # can then differ by any amount: compare the steady queues
    episodic = {(key.split(":")[1].split("/")[1], str(index)) for key, index in EPISODES}
    steady = {q: r for q, r in ours.items() if (q[1], q[2]) not in episodic}
    assert len(steady) >= 4
    for queue, expected in steady.items():
        assert expected > 0, queue
        assert abs(rates[queue] - expected) <= 0.25 * expected + 2, (queue, rates[queue], expected)


def test_shadow_toggle_and_reset_never_make_a_rate_negative(scraped: Scraped) -> None:
    """Shadow off and on again (the demo stops counting, then counts on from
    its carried totals) is no counter reset; ``svqtui ctl reset`` is one, seen
    by Prometheus' resets(); no kick or call rate is ever negative, and none
    jumps after the reset (nothing went down without starting again from 0)."""
    prom = scraped.prometheus
    net = next(d for vm in scraped.status()["vms"] for d in vm["devices"] if d["name"] == "net0")
    assert all(q["shadow"] for q in net["queues"])
    time.sleep(max(0.0, scraped.since + 8 - time.time()))  # rates before the toggle
    started = time.time()
    scraped.ctl("shadow", "web01/net0", "off")
    scraped.settle()
    off_at = time.time()
    scraped.ctl("shadow", "web01/net0", "on")
    scraped.settle()
    before_reset = time.time()
    scraped.ctl("reset")
    scraped.settle()
    scraped.settle()
    ended = time.time()

    assert by_queue(prom.query('svqtui_virtqueue_kicks_total{device="net0"}', at=off_at)) == {}
    assert set(
        by_queue(prom.query('svqtui_virtqueue_shadow{device="net0"}', at=off_at)).values()
    ) == {0.0}
    toggled = (
        f'resets(svqtui_virtqueue_kicks_total{{device="net0"}}[{before_reset - started + 3:.0f}s])'
    )
    assert set(by_queue(prom.query(toggled, at=before_reset)).values()) == {0.0}
    # the window reaches 2 s before the reset's command (the toggle check above
    # saw no reset there), so a scrape before the reset is in it however slowly
    # the ctl process started on a loaded machine
    after = f"resets(svqtui_virtqueue_kicks_total[{ended - before_reset + 2:.0f}s])"
    assert all(v >= 1 for v in by_queue(prom.query(after, at=ended)).values())
    assert len(by_queue(prom.query(after, at=ended))) == 10

    for counter in ("svqtui_virtqueue_kicks_total", "svqtui_virtqueue_calls_total"):
        window = max(started - 20, scraped.since)
        series = prom.query_range(f"rate({counter}[3s])", window, ended, 0.5)
        assert len(series) == 10
        for s in series:
            values = [(float(t), float(v)) for t, v in s["values"]]
            assert min(v for _, v in values) >= 0, s["metric"]
            usual = max(v for t, v in values if t < started)
            assert max(v for t, v in values if t > before_reset) <= 3 * usual + 20, s["metric"]


def test_svqtui_starts_without_importing_prometheus_client() -> None:
    """Loading the command line (and so the output registry) does not import
    prometheus_client: ``svqtui ctl`` and the batch modes do not pay for its
    HTTP stack; rendering a snapshot does import it."""
    code = (
        "import sys, svqtui.cli; before = 'prometheus_client' in sys.modules; "
        "from svqtui.outputs import output_named; "
        "from tests.support.console import synthetic_snapshot; "
        "output_named('prometheus').render(synthetic_snapshot(1, 1)); "
        "print(before, 'prometheus_client' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.split() == ["False", "True"]
