"""The Prometheus exporter: the latest snapshot as metrics, over HTTP.

An output like the others (docs/design.md#seams): ``snapshot_metrics(snap)``
turns one ``Snapshot`` into metric families; ``SnapshotCollector`` does that
for whatever the monitor published last when Prometheus scrapes, and
``MetricsServer`` serves it with prometheus_client's WSGI app (its own
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

import contextlib
import os
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, cast

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
    """An HTTP server of ``/metrics`` for one monitor (prometheus_client's
    WSGI app, a thread per request) on a serving thread of its own.

    The listening socket can come from elsewhere (``start(sock)``: a
    takeover hands it over, docs/design.md#takeover), and serving can stop
    without closing it (``pause``: new connections wait in its backlog of
    ``BACKLOG``, never refused), resume, and ``drain`` until no request
    this process accepted is still being answered."""

    BACKLOG = 128  # scrapes queued while a takeover moves the socket

    def __init__(self, listen: MetricsListen, monitor: LatestSnapshot) -> None:
        self.listen = listen
        self.registry = registry_of(SnapshotCollector(monitor))
        self.port = listen.port
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1
        self._cond = threading.Condition()
        self._paused = False
        self._loop_paused = False  # the serving thread has seen ``_paused``
        self._in_flight = 0
        self._stopping = False

    def bind(self) -> socket.socket:
        """A listening socket on ``listen`` (MetricsListenError if it cannot)."""
        try:
            infos = socket.getaddrinfo(
                self.listen.host, self.listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
            family, _, _, _, addr = infos[0]
            return socket.create_server(addr, family=family, backlog=self.BACKLOG)
        except OSError as err:
            raise MetricsListenError(
                f"cannot serve metrics on {self.listen}: {err.strerror or err}"
            ) from None

    def start(self, sock: socket.socket | None = None, paused: bool = False) -> None:
        """Serve on ``sock`` (a listening TCP socket, now this server's) or
        on a new one bound to ``listen``; ``port`` is the bound one
        (``listen.port`` 0: any free). ``paused``: accept from ``resume()`` on."""
        from wsgiref.simple_server import WSGIRequestHandler

        from prometheus_client.exposition import ThreadingWSGIServer, make_wsgi_app

        listener = sock if sock is not None else self.bind()
        owner = self

        class Handler(WSGIRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # no line per scrape

        class Server(ThreadingWSGIServer):
            address_family = listener.family

            def process_request_thread(self, request: Any, client_address: Any) -> None:
                try:
                    super().process_request_thread(request, client_address)
                finally:
                    with owner._cond:
                        owner._in_flight -= 1
                        owner._cond.notify_all()

            def process_request(self, request: Any, client_address: Any) -> None:
                with owner._cond:
                    owner._in_flight += 1
                try:
                    super().process_request(request, client_address)
                except BaseException:
                    with owner._cond:
                        owner._in_flight -= 1
                        owner._cond.notify_all()
                    raise

        server = Server(listener.getsockname()[:2], Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = listener
        listener.setblocking(False)  # another process may accept first (a takeover)
        host, port = listener.getsockname()[:2]
        server.server_address = listener.getsockname()
        server.server_name, server.server_port = str(host), int(port)  # no DNS lookup
        server.setup_environ()
        server.set_app(make_wsgi_app(self.registry))
        server.timeout = 0
        self.port = int(port)
        self._server = server
        self._paused = paused
        self._wake_r, self._wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        self._thread = threading.Thread(target=self._serve, name="svqtui-metrics", daemon=True)
        self._thread.start()

    @property
    def listen_fd(self) -> int:
        """The listening socket's fd (a takeover sends a duplicate)."""
        return int(self._server.socket.fileno())

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"w")

    def _serve(self) -> None:
        server = self._server
        poller = select.poll()
        poller.register(self._wake_r, select.POLLIN)
        listening = False
        while True:
            with self._cond:
                if self._stopping:
                    return
                want = not self._paused
                self._loop_paused = self._paused
                self._cond.notify_all()
            if want != listening:
                if want:
                    poller.register(server.socket, select.POLLIN)
                else:
                    poller.unregister(server.socket)
                listening = want
            for fd, _ in poller.poll():
                if fd == self._wake_r:
                    with contextlib.suppress(OSError):
                        os.read(self._wake_r, 512)
                elif listening:
                    server.handle_request()  # accepts one (nonblocking), its own thread answers

    def pause(self) -> None:
        """Stop accepting (connections wait in the backlog); returns at once."""
        with self._cond:
            self._paused = True
        self._wake()

    def resume(self) -> None:
        with self._cond:
            self._paused = False
        self._wake()

    def drain(self, timeout: float) -> bool:
        """After ``pause``: wait until nothing accepted here is still being
        answered (at most ``timeout`` s); False if something still is."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (self._loop_paused or self._thread is None) and self._in_flight == 0,
                timeout,
            )

    @property
    def url(self) -> str:
        host = f"[{self.listen.host}]" if ":" in self.listen.host else self.listen.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        thread, self._thread = self._thread, None
        if thread is None:
            return
        with self._cond:
            self._stopping = True
        self._wake()
        thread.join(5.0)
        self._server.server_close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

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
