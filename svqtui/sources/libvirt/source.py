"""The libvirt source: every domain of one libvirt URI (config ``libvirt:``).

``LibvirtSource`` owns one connection (read-only unless ``libvirt.qmp`` is
on: libvirt refuses monitor commands on a read-only connection), the poll
thread ``svqtui-libvirt`` that reads every domain each ``poll`` seconds (or
at once after an event), and the domain event callbacks (svqtui.sources.
libvirt.events; they run on libvirt's event thread and only log and wake the
poll thread). ``collect()`` returns the last published views from memory.

Per domain and poll: ``state()``, ``jobStats()`` while it runs, the pid file
(``/run/libvirt/qemu/NAME.pid``), psutil's CPU/RSS of that pid, and the
domain XML only when it may have changed (first sight, a new domain id, a
lifecycle or device event). With ``libvirt.qmp`` on, a ``DomainMonitor`` per
running domain polls QEMU's virtio state through the monitor pass-through,
which taints the domain; the taint is read back (``dom.messages``) and shown.

Faults are status lines, not errors: bindings missing, daemon down or
permission denied is the source's one status line while it retries; a
connection libvirt closes (libvirtd restarting: the close callback) is a
reconnect, with the last rows kept and marked until it is back.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psutil

from svqtui.engine import EngineSnapshot
from svqtui.model import DeviceView, MigrationView, SourceStatus, VMView
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.errors import ActionUnsupported
from svqtui.sources.libvirt import views
from svqtui.sources.libvirt.domxml import DomainXML, parse_domain
from svqtui.sources.libvirt.errors import DomainXMLError, LibvirtUnavailable
from svqtui.sources.libvirt.events import (
    DomainEvent,
    DomainEvents,
    bindings,
    is_migration,
    qemu_bindings,
)
from svqtui.sources.libvirt.passthrough import DomainMonitor
from svqtui.sources.libvirt.settings import LibvirtConfig

PID_DIR = "/run/libvirt/qemu"
TAINT_EVERY_S = 5.0  # re-read a domain's taint messages this often (qmp on)
BACKOFF_FIRST_S = 0.5
BACKOFF_CAP_S = 5.0
XML_EVENTS = ("lifecycle", "device-added", "device-removed")


@dataclass
class _Domain:
    """What the poll thread keeps about one domain between polls."""

    uuid: str
    dom: Any
    xml: DomainXML | None = None
    xml_id: int = -2  # the domain id the XML was read at (-1: inactive)
    xml_due: bool = True
    monitor: DomainMonitor | None = None
    taints: tuple[str, ...] = ()
    taint_read_at: float = float("-inf")
    proc: psutil.Process | None = None
    completed: MigrationView | None = None  # the last migration job's result
    devices: tuple[DeviceView, ...] = field(default_factory=tuple)


class LibvirtSource(Source):
    """Domains, their virtio/vhost devices and events, from libvirt."""

    kind = views.KIND
    name = "libvirt"

    def __init__(self, config: LibvirtConfig, *, pid_dir: str = PID_DIR) -> None:
        self.config = config
        self._pid_dir = pid_dir
        self._ctx: SourceContext | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()  # guards _pending
        self._pending: dict[str, set[str]] = {}  # uuid -> event kinds since the last poll
        self._closed_reason: str | None = None  # set by the close callback
        self._poll_error: str | None = None  # the last poll's failure, logged once
        self._views: list[VMView] = []
        self._status = SourceStatus(
            self.name, self.kind, False, "libvirt: starting", answered=False
        )
        self._domains: dict[str, _Domain] = {}
        self.events: collections.deque[DomainEvent] = collections.deque(maxlen=200)
        # figures (read by tests and the report): seconds from start() to the
        # first published listing, and the last poll's cost
        self.started_at: float | None = None
        self.first_listed_s: float | None = None
        self.poll_ms: float = 0.0
        self.polls = 0
        self.poll_costs: collections.deque[float] = collections.deque(maxlen=100)  # ms, recent
        self.polled_domains = 0
        self.connects = 0

    # -- Source ---------------------------------------------------------------

    def start(self, ctx: SourceContext) -> None:
        self._ctx = ctx
        self.started_at = time.monotonic()
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="svqtui-libvirt", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=15.0)

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        return self._views

    def status(self) -> SourceStatus:
        return self._status

    def owns(self, device_key: str) -> bool:
        return any(d.key == device_key for vm in self._views for d in vm.devices)

    def set_shadow(self, device_key: str, on: bool) -> None:
        raise ActionUnsupported(
            f"{device_key}: libvirt cannot switch shadow mode; put svqtui's interposer on"
            " the device's vhost-user socket (config: devices) and the row joins it"
        )

    def reset(self, device_key: str | None = None) -> None:
        """Nothing to zero: libvirt devices have no counters."""

    # -- the poll thread ---------------------------------------------------------

    def _run(self) -> None:
        backoff = BACKOFF_FIRST_S
        while not self._stopping.is_set():
            try:
                lv = bindings()
            except LibvirtUnavailable as err:
                self._set_status(False, str(err))
                return  # nothing will change while svqtui runs
            conn, events = self._connect(lv)
            if conn is None:
                self._wait(backoff)
                backoff = min(backoff * 2, BACKOFF_CAP_S)
                continue
            backoff = BACKOFF_FIRST_S
            try:
                self._serve(lv, conn)
            finally:
                if events is not None:
                    events.close()
                with contextlib.suppress(lv.libvirtError):
                    conn.unregisterCloseCallback()
                with contextlib.suppress(lv.libvirtError):
                    conn.close()
        self._domains.clear()

    def _connect(self, lv: Any) -> tuple[Any, DomainEvents | None]:
        uri = self.config.uri
        try:
            conn = lv.open(uri) if self.config.qmp else lv.openReadOnly(uri)
        except lv.libvirtError as err:
            self._set_status(False, connect_failure(lv, uri, err))
            self._mark_stale(self._status.message)
            return None, None
        self._closed_reason = None
        conn.registerCloseCallback(self._on_close, None)
        try:
            events = DomainEvents(lv, conn, self._on_event)
        except lv.libvirtError as err:
            self._log("warning", f"libvirt: no domain events ({err.get_error_message()})")
            events = None
        self.connects += 1
        if self.connects > 1:
            self._log("info", f"libvirt: reconnected to {uri}")
        return conn, events

    def _serve(self, lv: Any, conn: Any) -> None:
        """Poll until stopped or the connection is lost."""
        while not self._stopping.is_set():
            if self._closed_reason is not None:
                self._lost(f"libvirt closed the connection ({self._closed_reason})")
                return
            try:
                self._poll(lv, conn)
            except lv.libvirtError as err:
                alive = False
                with contextlib.suppress(lv.libvirtError):
                    alive = conn.isAlive() == 1
                if not alive:
                    self._lost(str(err.get_error_message()))
                    return
                text = f"libvirt: poll failed: {err.get_error_message()}"
                if text != self._poll_error:  # a lasting fault is one line, not one a poll
                    self._log("warning", text)
                self._poll_error = text
            except Exception as err:  # a bug must not end the poll thread silently
                text = f"libvirt: poll failed: {type(err).__name__}: {err}"
                if text != self._poll_error:
                    self._log("warning", text)
                self._poll_error = text
            else:
                self._poll_error = None
            self._wait(self.config.poll_s)

    def _wait(self, seconds: float) -> None:
        self._wake.wait(seconds)
        self._wake.clear()

    def _lost(self, why: str) -> None:
        message = f"libvirt: reconnecting to {self.config.uri}: {why}"
        self._log("warning", message)
        self._set_status(False, message)
        self._mark_stale(message)
        for d in self._domains.values():
            d.monitor = None  # a new connection gets new domain objects
        self._domains.clear()

    def _mark_stale(self, message: str) -> None:
        self._views = [
            dataclasses.replace(vm, connected=False, status=f"{message} (last seen: {vm.status})")
            if not vm.status.startswith("libvirt: ")
            else vm
            for vm in self._views
        ]

    # -- one poll -------------------------------------------------------------

    def _poll(self, lv: Any, conn: Any) -> None:
        t0 = time.perf_counter()
        with self._lock:
            pending, self._pending = self._pending, {}
        domains: dict[str, _Domain] = {}
        out: list[VMView] = []
        for dom in conn.listAllDomains(0):
            uuid = dom.UUIDString()
            d = self._domains.get(uuid) or _Domain(uuid, dom)
            d.dom = dom
            kinds = pending.get(uuid, set())
            if kinds & set(XML_EVENTS):
                d.xml_due = True
            try:
                out.append(self._domain_view(lv, d, kinds))
            except lv.libvirtError as err:
                if err.get_error_code() == lv.VIR_ERR_NO_DOMAIN:
                    continue  # gone between the listing and now
                raise
            domains[uuid] = d
        self._domains = domains
        self._views = out
        self.poll_ms = (time.perf_counter() - t0) * 1000
        self.polls += 1
        self.poll_costs.append(self.poll_ms)
        self.polled_domains = len(out)
        if self.first_listed_s is None and self.started_at is not None:
            self.first_listed_s = time.monotonic() - self.started_at
        running = sum(1 for vm in out if vm.connected)
        mode = "qmp on (taints domains)" if self.config.qmp else "read-only, qmp off"
        self._set_status(
            True,
            f"{self.config.uri}: {len(out)} domains ({running} running), {mode},"
            f" poll {self.poll_ms:.1f} ms",
        )

    def _domain_view(self, lv: Any, d: _Domain, kinds: set[str]) -> VMView:
        dom = d.dom
        state, _reason = dom.state()
        active = state in views.ACTIVE_STATES
        dom_id = dom.ID()
        if d.xml is None or d.xml_due or d.xml_id != dom_id:
            try:
                d.xml = parse_domain(dom.XMLDesc(0))
            except DomainXMLError as err:
                self._log("warning", f"libvirt: {dom.name()}: {err}")
                d.xml = DomainXML(dom.name(), d.uuid, 1, (), False)
            if d.xml_id != dom_id:
                d.monitor = None
                d.proc = None
                d.taint_read_at = float("-inf")
            d.xml_id = dom_id
            d.xml_due = False
        xml = d.xml
        pid = self._pid(xml.name) if active else None
        cpu, rss = self._process(d, pid)
        migration = self._job(lv, d) if active else None
        qmp_error: str | None = None
        if self.config.qmp and active:
            if d.monitor is None:
                d.monitor = DomainMonitor(lv, qemu_bindings(), dom)
            if kinds & {"device-added", "device-removed"}:
                d.monitor.topology_due = True
            d.monitor.dom = dom
            d.monitor.poll(xml.devices)
            qmp_error = d.monitor.error
        elif not active:
            d.monitor = None
        now = time.monotonic()
        if d.taint_read_at == float("-inf") or (
            self.config.qmp and active and now - d.taint_read_at >= TAINT_EVERY_S
        ):
            d.taints = self._taints(lv, dom)
            d.taint_read_at = now
        devices = tuple(
            views.device_view(
                xml,
                dev,
                active=active,
                qmp=self.config.qmp,
                state=d.monitor.state_of(dev.alias) if d.monitor and dev.alias else None,
                qmp_error=qmp_error,
            )
            for dev in xml.devices
        )
        status = views.state_text(state, d.taints, self.config.qmp)
        if qmp_error:
            status += f"; monitor: {qmp_error}"
        return views.vm_view(
            xml,
            devices,
            state=state,
            status=status,
            pid=pid,
            cpu=cpu,
            rss=rss,
            migration=migration,
        )

    def _pid(self, name: str) -> int | None:
        try:
            with open(os.path.join(self._pid_dir, f"{name}.pid")) as f:
                return int(f.read().strip())
        except (OSError, ValueError):
            return None

    @staticmethod
    def _process(d: _Domain, pid: int | None) -> tuple[float | None, int | None]:
        if pid is None:
            d.proc = None
            return None, None
        try:
            if d.proc is None or d.proc.pid != pid:
                d.proc = psutil.Process(pid)
                d.proc.cpu_percent(None)
                return None, d.proc.memory_info().rss
            return d.proc.cpu_percent(None), d.proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            d.proc = None
            return None, None

    def _job(self, lv: Any, d: _Domain) -> MigrationView | None:
        try:
            stats = d.dom.jobStats(0)
        except lv.libvirtError:
            return d.completed
        if stats.get("type", 0) in (1, 2) and is_migration(stats):  # a migration job runs
            return views.migration_view(stats, "active")
        return d.completed

    @staticmethod
    def _taints(lv: Any, dom: Any) -> tuple[str, ...]:
        try:
            messages = dom.messages(lv.VIR_DOMAIN_MESSAGE_TAINTING)
        except (lv.libvirtError, AttributeError):
            return ()
        return tuple(str(m).removeprefix("tainted: ").strip() for m in messages)

    # -- callbacks (libvirt's event thread) ----------------------------------------

    def _on_event(self, event: DomainEvent) -> None:
        self.events.append(event)
        level = "warning" if event.text.startswith("crashed") else "info"
        self._log(level, f"libvirt {event.domain}: {event.text}")
        if event.kind == "job" and event.stats is not None and is_migration(event.stats):
            d = self._domains.get(event.uuid)
            if d is not None:
                d.completed = views.migration_view(event.stats, "completed")
        with self._lock:
            self._pending.setdefault(event.uuid, set()).add(event.kind)
        self._wake.set()

    def _on_close(self, _conn: Any, reason: int, _opaque: Any) -> None:
        self._closed_reason = {0: "error", 1: "end of file", 2: "keepalive", 3: "client"}.get(
            reason, f"reason {reason}"
        )
        self._wake.set()

    # -- status and log ----------------------------------------------------------

    def _set_status(self, connected: bool, message: str) -> None:
        """The status line (shown after the source's name, so without the
        "libvirt: " the log line has); a new fault is logged once, as info."""
        text = message.removeprefix("libvirt: ")
        old = self._status
        self._status = SourceStatus(self.name, self.kind, connected, text)
        if not connected and old.message != text and not text.startswith("reconnecting"):
            self._log("info", message)

    def _log(self, level: str, text: str) -> None:
        ctx = self._ctx
        if ctx is None:
            return
        if level == "warning":
            ctx.log.warning(text)
        else:
            ctx.log.info(text)


def connect_failure(lv: Any, uri: str, err: Any) -> str:
    """libvirt's refusal to connect as one status line."""
    msg = str(err.get_error_message() or err)
    code = err.get_error_code()
    denied_codes = {
        getattr(lv, n, -1) for n in ("VIR_ERR_AUTH_FAILED", "VIR_ERR_AUTH_CANCELLED")
    } | {getattr(lv, "VIR_ERR_ACCESS_DENIED", -1)}
    if "Permission denied" in msg or code in denied_codes:
        return (
            f"libvirt: permission denied on {uri} (run svqtui as root or in the libvirt"
            f" group); retrying"
        )
    if "No such file" in msg or "Connection refused" in msg:
        return f"libvirt: no daemon answers at {uri} (is libvirtd running?); retrying"
    return f"libvirt: cannot connect to {uri}: {msg}; retrying"
