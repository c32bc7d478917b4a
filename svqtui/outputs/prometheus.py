"""The Prometheus exporter: the latest snapshot as metrics, over HTTP.

An output like the others (docs/design.md#seams): ``snapshot_metrics(snap)``
turns one ``Snapshot`` into metric families; ``SnapshotCollector`` does that
for whatever the monitor published last when Prometheus scrapes, and
``MetricsServer`` serves it with prometheus_client's HTTP server (its own
thread) on ``metrics.listen`` / ``--metrics ADDR``. A scrape reads
``monitor.latest`` and nothing else: it never triggers a refresh and never
waits on a source, so scraping costs the relay engine nothing but CPU time
on the server thread. ``--once --output prometheus`` prints the same text
(for node_exporter's textfile collector).

Counters (``*_total``) are the sources' own totals. They only ever go down
when the count really restarts (``svqtui ctl reset``, a device that
reconnects): Prometheus takes any decrease as a counter reset, so ``rate()``
never goes negative. Values that may go down for other reasons (ring
indices, which wrap at 65536) are gauges. Each (vm, device, queue) is
exported once: a second device with the same VM and device names gets its
device key appended to its name, so two counters never interleave in one
series. There is no authentication: keep ``listen`` on loopback unless the
network in front of it is trusted (a non-loopback address is never a default).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Protocol, cast

from svqtui.config import MetricsListen
from svqtui.errors import SvqtuiError
from svqtui.model import MaskState, QueueRow, QueueView, Snapshot, StuckRule, VMView
from svqtui.outputs.base import SnapshotOutput, register

if TYPE_CHECKING:  # prometheus_client is imported when first used: every svqtui
    # command loads the output registry, and its HTTP stack costs ~0.4 s to import
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector, CollectorRegistry

QUEUE_LABELS = ("vm", "device", "queue")
DEVICE_LABELS = ("vm", "device")

#: QEMU's MigrationStatus values: each VM with migration state exports one
#: ``svqtui_vm_migration_status`` series per value (1 for the current one).
MIGRATION_STATUSES = (
    "none",
    "setup",
    "cancelling",
    "cancelled",
    "active",
    "postcopy-active",
    "postcopy-paused",
    "postcopy-recover-setup",
    "postcopy-recover",
    "completed",
    "failed",
    "colo",
    "pre-switchover",
    "device",
    "wait-unplug",
)


class MetricsListenError(SvqtuiError):
    """The metrics HTTP server cannot listen on the configured address."""


class LatestSnapshot(Protocol):
    """What the exporter reads: a monitor's last published snapshot."""

    @property
    def latest(self) -> Snapshot | None: ...

    @property
    def refresh_ms(self) -> float: ...


class _Queues:
    """The per-queue families, filled device by device."""

    def __init__(self) -> None:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        def counter(name: str, doc: str) -> CounterMetricFamily:
            return CounterMetricFamily(f"svqtui_virtqueue_{name}", doc, labels=QUEUE_LABELS)

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(
                f"svqtui_virtqueue_{name}", doc, labels=(*QUEUE_LABELS, *extra)
            )

        self.kicks = counter("kicks", "Kicks (guest -> device notifications) counted by svqtui.")
        self.calls = counter("calls", "Calls (device -> guest notifications) counted by svqtui.")
        self.held = counter("held", "Calls held back while the queue's guest notifier was masked.")
        self.in_flight = gauge("in_flight", "Requests in flight: avail index - used index.")
        self.avail = gauge("avail_index", "The ring's avail index (wraps at 65536).")
        self.used = gauge("used_index", "The ring's used index (wraps at 65536).")
        self.masked = gauge("masked", "1 while the guest notifier is masked (MASKED or PENDING).")
        self.pending = gauge("pending", "1 while a call is latched behind the mask (PENDING).")
        self.shadow = gauge("shadow", "1 while the queue is in shadow mode (svqtui relays it).")
        self.stuck = gauge("stuck", "1 while the stuck rule `rule` flags the queue.", ("rule",))

    def add(self, labels: list[str], q: QueueView, row: QueueRow | None, shadow: bool) -> None:
        if q.kicks is not None:
            self.kicks.add_metric(labels, q.kicks)
        if q.calls is not None:
            self.calls.add_metric(labels, q.calls)
            self.held.add_metric(labels, q.held)
        if q.in_flight is not None:
            self.in_flight.add_metric(labels, q.in_flight)
        if q.avail_idx is not None:
            self.avail.add_metric(labels, q.avail_idx)
        if q.used_idx is not None:
            self.used.add_metric(labels, q.used_idx)
        if q.mask is not None:
            self.masked.add_metric(labels, float(q.mask is not MaskState.UNMASKED))
            self.pending.add_metric(labels, float(q.mask is MaskState.PENDING))
        self.shadow.add_metric(labels, float(q.shadow or shadow))
        rule = row.stuck_rule if row is not None else None
        for name in StuckRule:
            self.stuck.add_metric([*labels, name.value], float(rule is name))

    def families(self) -> tuple[Metric, ...]:
        return (
            self.kicks,
            self.calls,
            self.held,
            self.in_flight,
            self.avail,
            self.used,
            self.masked,
            self.pending,
            self.shadow,
            self.stuck,
        )


def _device_names(vms: Iterable[VMView]) -> Iterator[tuple[VMView, str, str]]:
    """(vm, device key, device label) with every (vm, device label) unique:
    a clash takes the device key in its label, the same way every scrape."""
    seen: set[tuple[str, str]] = set()
    for vm in vms:
        for dev in sorted(vm.devices, key=lambda d: d.key):
            name = dev.name
            if (vm.name, name) in seen:
                name = f"{dev.name} ({dev.key})"
            seen.add((vm.name, name))
            yield vm, dev.key, name


def _vm_families(vms: Iterable[VMView]) -> Iterator[Metric]:
    from prometheus_client.core import GaugeMetricFamily

    status = GaugeMetricFamily(
        "svqtui_vm_migration_status",
        "1 for the VM's current migration status (QEMU's query-migrate), 0 for the others.",
        labels=("vm", "status"),
    )
    numbers = {
        "remaining": GaugeMetricFamily(
            "svqtui_vm_migration_remaining_bytes",
            "RAM still to transfer",
            labels=("vm",),
        ),
        "transferred": GaugeMetricFamily(
            "svqtui_vm_migration_transferred_bytes", "RAM transferred so far", labels=("vm",)
        ),
        "total": GaugeMetricFamily(
            "svqtui_vm_migration_ram_bytes", "RAM to migrate in all", labels=("vm",)
        ),
        "passes": GaugeMetricFamily(
            "svqtui_vm_migration_passes", "Dirty-page sync passes so far", labels=("vm",)
        ),
    }
    vms_with_state = set()
    for vm in vms:
        mig = vm.migration
        if mig is None or vm.name in vms_with_state:
            continue
        vms_with_state.add(vm.name)
        statuses: tuple[str, ...] = MIGRATION_STATUSES
        if mig.status not in statuses:
            statuses = (*statuses, mig.status)
        for value in statuses:
            status.add_metric([vm.name, value], float(value == mig.status))
        for field, family in numbers.items():
            number = getattr(mig, field)
            if number is not None:
                family.add_metric([vm.name], number)
    yield status
    yield from numbers.values()


def snapshot_metrics(snap: Snapshot, now: float | None = None) -> list[Metric]:
    """Every metric family of one snapshot (``now``: wall time, for the age)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    queues = _Queues()
    connected = GaugeMetricFamily(
        "svqtui_device_connected", "1 while the device is connected.", labels=DEVICE_LABELS
    )
    info = GaugeMetricFamily(
        "svqtui_device_info",
        "Always 1: the device's svqtui key, kind and reporting source.",
        labels=(*DEVICE_LABELS, "key", "kind", "source"),
    )
    for vm, key, name in _device_names(snap.vms):
        dev = snap.devices.get(key) or next(d for d in vm.devices if d.key == key)
        labels = [vm.name, name]
        connected.add_metric(labels, float(dev.connected))
        info.add_metric([*labels, dev.key, dev.kind, str(dev.source)], 1.0)
        for q in dev.queues:
            queues.add([*labels, str(q.index)], q, snap.rows.get(f"{key}#{q.index}"), dev.shadow)

    engine = snap.engine
    engine_up = GaugeMetricFamily("svqtui_engine_up", "1 while the relay engine's thread runs.")
    engine_up.add_metric([], float(engine.alive))
    relays = CounterMetricFamily(
        "svqtui_engine_relays", "Notifications the relay engine has relayed since it started."
    )
    relays.add_metric([], engine.relays)
    heartbeat = GaugeMetricFamily(
        "svqtui_engine_heartbeat_age_seconds", "Seconds since the engine loop last ran."
    )
    if engine.heartbeat_age_s is not None:
        heartbeat.add_metric([], engine.heartbeat_age_s)
    engine_queues = GaugeMetricFamily("svqtui_engine_queues", "Queues the engine relays.")
    engine_queues.add_metric([], engine.queues)
    backlog = GaugeMetricFamily(
        "svqtui_engine_backlog", "Commands submitted to the engine and not yet applied."
    )
    backlog.add_metric([], engine.backlog)

    source_up = GaugeMetricFamily(
        "svqtui_source_up", "1 while the source is connected and collecting.", labels=("source",)
    )
    for source in {s.name: s for s in snap.sources}.values():
        source_up.add_metric([source.name], float(source.connected))

    age = GaugeMetricFamily(
        "svqtui_snapshot_age_seconds", "Seconds since the exported snapshot was taken."
    )
    age.add_metric([], max(0.0, (time.time() if now is None else now) - snap.taken_at))
    return [
        *queues.families(),
        connected,
        info,
        *_vm_families(snap.vms),
        engine_up,
        relays,
        heartbeat,
        engine_queues,
        backlog,
        source_up,
        age,
    ]


class SnapshotCollector:
    """A prometheus_client collector (``collect``, ``describe``) over a
    monitor's latest snapshot."""

    def __init__(self, monitor: LatestSnapshot, wall_clock: Callable[[], float] = time.time):
        self._monitor = monitor
        self._wall_clock = wall_clock

    def describe(self) -> Iterable[Metric]:
        return ()  # registering must not read a snapshot

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        refresh = GaugeMetricFamily(
            "svqtui_monitor_refresh_seconds", "How long the monitor's last refresh took."
        )
        refresh.add_metric([], self._monitor.refresh_ms / 1e3)
        yield refresh
        snap = self._monitor.latest  # one attribute read: no refresh, no lock, no source
        if snap is not None:
            yield from snapshot_metrics(snap, self._wall_clock())


def registry_of(*collectors: object) -> CollectorRegistry:
    """A prometheus_client registry of our own (never the global one) holding
    ``collectors`` (objects with ``collect()`` and ``describe()``)."""
    from prometheus_client.registry import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(cast("Collector", collector))
    return registry


class _Fixed:
    """A collector of one given snapshot."""

    def __init__(self, snap: Snapshot, now: float | None) -> None:
        self._snap, self._now = snap, now

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        return snapshot_metrics(self._snap, self._now)


def exposition(snap: Snapshot, now: float | None = None) -> bytes:
    """``snap`` in Prometheus' text format (version 0.0.4)."""
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry_of(_Fixed(snap, now)))


class MetricsServer:
    """prometheus_client's HTTP server for one monitor, on its own thread."""

    def __init__(self, listen: MetricsListen, monitor: LatestSnapshot) -> None:
        self.listen = listen
        self.registry = registry_of(SnapshotCollector(monitor))
        self._stop: Callable[[], None] | None = None
        self.port = listen.port

    def start(self) -> None:
        """Listen and serve; ``port`` is the bound one (``listen.port`` 0: any free)."""
        from prometheus_client.exposition import start_http_server

        try:
            server, thread = start_http_server(
                self.listen.port, self.listen.host, registry=self.registry
            )
        except OSError as err:
            raise MetricsListenError(
                f"cannot serve metrics on {self.listen}: {err.strerror or err}"
            ) from None
        self.port = int(server.server_address[1])

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(5.0)

        self._stop = stop

    @property
    def url(self) -> str:
        host = f"[{self.listen.host}]" if ":" in self.listen.host else self.listen.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        stop, self._stop = self._stop, None
        if stop is not None:
            stop()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_metrics(listen: MetricsListen, monitor: LatestSnapshot) -> MetricsServer:
    """A started ``MetricsServer`` (MetricsListenError if it cannot listen)."""
    server = MetricsServer(listen, monitor)
    server.start()
    return server


@register("prometheus")
class PrometheusOutput(SnapshotOutput):
    summary = "Prometheus text format (for node_exporter's textfile collector)"

    def render(self, snap: Snapshot) -> str:
        return exposition(snap).decode().rstrip("\n")
