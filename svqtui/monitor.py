"""The monitor: the one refresh owner, turning what sources report into
snapshots with rates and verdicts (docs/design.md#data-flow).

Each refresh reads the engine once and hands that copy to every source's
``collect()`` (from memory), joins the views of a device seen by two sources
(as the views declare: same socket path, one describing, one counting),
derives rates from the last rate window, keeps a short rate history per queue,
and applies the stuck rules from config.yaml. The console, the batch modes,
the control socket and every other output read the resulting ``Snapshot``.
"""

from __future__ import annotations

import collections
import dataclasses
import math
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from svqtui.config import StuckConfig
from svqtui.diagnosis import Timing, verdict
from svqtui.engine import Engine, EngineSnapshot
from svqtui.eventlog import EventLog
from svqtui.model import (
    DeviceRole,
    DeviceView,
    EngineStatus,
    History,
    MaskState,
    QueueRow,
    QueueView,
    Snapshot,
    SourceStatus,
    StuckRule,
    VMRole,
    VMView,
)
from svqtui.sources.base import Source
from svqtui.subscribers import Subscribers
from svqtui.thread_priority import lower_thread_priority

AVAIL_SEEN_MAX = 4096  # avail index movements remembered per queue (oldest-request age)
FIRST_RATES_S = 0.25  # the second refresh comes this soon, so rates show at once
STOP_TIMEOUT_S = 5.0
_MASKED = (MaskState.MASKED, MaskState.PENDING)


@dataclass(slots=True)
class _QueueTrack:
    """What the monitor remembers about one queue between refreshes."""

    key: str = ""  # the row's key: "device key#queue index"
    kicks: int | None = None
    calls: int | None = None
    used_idx: int | None = None
    used_changed_at: float = 0.0
    calls_changed_at: float = 0.0
    kicks_at_last_call: int = 0
    kicks_changed_at: float = 0.0
    dropped_kicks: int = 0
    last_kick_dropped: bool = False  # the kick counter's last move included a dropped kick
    avail_idx: int | None = None
    avail_changed_at: float = 0.0
    masked_at: float | None = None  # when MASKED/PENDING was first seen (None: unmasked)
    no_interrupt_at: float | None = None  # when NO_INTERRUPT was first seen set (None: clear)
    used_at_no_interrupt: int | None = None
    # The avail index each time it moved, and when, oldest first, flat (index,
    # time, index, time, ...): the oldest in-flight request was first seen at
    # the first entry past used.idx
    avail_seen: collections.deque[Any] = field(default_factory=collections.deque)  # int, float, ...
    kick_rate: float = 0.0  # over the last rate window
    call_rate: float = 0.0
    # The rate history: appended to ``buffer`` (never rewritten: published
    # windows read it), shown as a History window on its last ``span`` values
    # (docs/design.md#incremental-rows)
    buffer: array[float] = field(default_factory=lambda: array("d"))
    written: int = 0  # values in ``buffer``
    span: int = 0  # the history length ``shown`` is cut to (the monitor's)
    count: int = 0  # len(shown)
    shown: Sequence[float] = ()  # the history, a new object only when it changed
    same_run: int = 0  # how many appends in a row brought the history's last value
    # What the last row was made of, to hand out the same row object when
    # nothing it shows changed:
    view: QueueView | None = None  # the view the row was made from
    row: QueueRow | None = None


def join_views(vms: Sequence[VMView]) -> list[VMView]:
    """Join the views of one device seen by two sources, as the views declare.

    First, VMs: views that FOUND a QEMU process (QMP discovery) fold into the
    view that MANAGES the same pid (libvirt), see ``fold_vms``. Then devices:
    a device view with ``role=DESCRIBES`` (QMP, libvirt: names, placement
    under its VM, QEMU's fields) and one with ``role=COUNTS`` (the interposer:
    notifications and actions) that name the same ``socket_path`` become one
    row: placed and named as described, counted and keyed as counted. A
    counting device that nothing describes stays under its own VM; a VM whose
    devices all moved elsewhere is dropped (a VM that never had any stays).
    """
    vms = fold_vms(vms)
    counted = {
        d.socket_path: d
        for vm in vms
        for d in vm.devices
        if d.role is DeviceRole.COUNTS and d.socket_path
    }
    twins: dict[str, DeviceView] = {}  # describing device key -> its counting twin
    moved: set[str] = set()  # counting devices joined into a describing one
    for vm in vms:
        for dev in vm.devices:
            twin = counted.get(dev.socket_path or "") if dev.role is DeviceRole.DESCRIBES else None
            if twin is not None and twin.key not in moved:
                twins[dev.key] = twin
                moved.add(twin.key)
    out: list[VMView] = []
    for vm in vms:
        devices = tuple(
            _joined(dev, twins[dev.key]) if dev.key in twins else dev
            for dev in vm.devices
            if not (dev.role is DeviceRole.COUNTS and dev.key in moved)
        )
        if devices == vm.devices:
            out.append(vm)
        elif devices:
            out.append(dataclasses.replace(vm, devices=devices))
    return out


def fold_vms(vms: Sequence[VMView]) -> list[VMView]:
    """One row per QEMU process, as the views declare: a view with
    ``role=FOUND`` whose pid a ``role=MANAGES`` view reports is dropped, its
    devices appended to the managing view's and its CPU/RSS figures filling
    the managing view's blanks; everything else passes unchanged."""
    managers = {vm.pid: vm for vm in vms if vm.role is VMRole.MANAGES and vm.pid is not None}
    if not managers:
        return list(vms)
    folded: dict[int, list[VMView]] = {}
    for vm in vms:
        if vm.role is VMRole.FOUND and vm.pid in managers:
            folded.setdefault(vm.pid, []).append(vm)
    if not folded:
        return list(vms)
    out: list[VMView] = []
    for vm in vms:
        if vm.role is VMRole.FOUND and vm.pid in managers:
            continue
        found = folded.get(vm.pid, []) if vm.role is VMRole.MANAGES and vm.pid is not None else []
        for other in found:
            vm = dataclasses.replace(
                vm,
                devices=vm.devices + other.devices,
                cpu_percent=vm.cpu_percent if vm.cpu_percent is not None else other.cpu_percent,
                rss_bytes=vm.rss_bytes if vm.rss_bytes is not None else other.rss_bytes,
            )
        out.append(vm)
    return out


def _joined(described: DeviceView, counted: DeviceView) -> DeviceView:
    """One row from both views: the counting view's key, queues and actions,
    the describing view's names and QEMU fields."""
    return dataclasses.replace(
        counted,
        name=described.name,
        kind=described.kind,
        qom_path=described.qom_path,
        vhost_started=described.vhost_started,
        features=described.features,
        protocol_features=described.protocol_features,
        log_enabled=described.log_enabled,
        notes=counted.notes + described.notes,
        queues=_merge_queues(counted.queues, described.queues),
    )


def _merge_queues(
    counted: tuple[QueueView, ...], qmp: tuple[QueueView, ...]
) -> tuple[QueueView, ...]:
    """Interposer queues, with QMP ring indices where the interposer has none."""
    by_index = {q.index: q for q in qmp}
    merged = []
    for q in counted:
        other = by_index.get(q.index)
        if q.avail_idx is None and other is not None and other.avail_idx is not None:
            q = dataclasses.replace(
                q,
                avail_idx=other.avail_idx,
                used_idx=other.used_idx,
                ring_source=other.ring_source,
                ring=q.ring or other.ring,
            )
        merged.append(q)
    return tuple(merged)


class Monitor:
    """The one refresh owner: samples every source on its own clock.

    ``start()`` runs the refresh clock (a thread, "svqtui-monitor"): the first
    snapshot at once, the second ``FIRST_RATES_S`` later (rates at once), then
    one every ``interval_s``, evenly spaced whatever consumers do. Consumers
    read ``latest`` or ``subscribe()``; an action calls ``refresh_soon()``,
    which publishes an early snapshot with fresh device state but the last
    rate window (rates, history and stuck timers advance only on the clock).
    Tests drive ``refresh()`` directly with frozen clocks and no thread.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        engine: Engine | None,
        log: EventLog,
        stuck: StuckConfig,
        history: int = 60,
        interval_s: float = 1.0,
        clock_ns: Callable[[], int] = time.monotonic_ns,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = list(sources)
        self.engine = engine
        self.log = log
        self.stuck = stuck
        self.history = history
        self.interval_s = interval_s
        self._clock_ns = clock_ns  # tests freeze these for exact rates and ages
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._tracks: dict[str, dict[int, _QueueTrack]] = {}  # device key -> queue index -> track
        self._last_t: float | None = None
        self._last_relays = 0
        self._relays_per_s = 0.0
        self._last_spin_ns = 0
        self._last_cpu_ns: int | None = None
        self._spin_share = 0.0
        self._cpu_share: float | None = None
        self._failing: set[str] = set()
        self._owners: dict[str, Source] = {}
        self._subscribers = Subscribers(self._consumer_failed)
        self._published = threading.Condition()
        self._seq = 0
        self._early = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latest: Snapshot | None = None
        self.refresh_ms = 0.0  # how long the last refresh took (benchmarks, status)
        self.refresh_cpu_ms = 0.0  # the CPU time of this thread it took (benchmarks)

    # -- the refresh clock ---------------------------------------------------------

    def start(self) -> None:
        """Run the refresh clock (idempotent)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="svqtui-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_S)
        with self._published:
            self._published.notify_all()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def set_sources(self, sources: Sequence[Source]) -> None:
        """Refresh these sources from the next refresh on (a reload)."""
        with self._lock:
            self.sources = list(sources)

    def set_interval(self, seconds: float) -> None:
        """A new refresh interval, from the next tick on."""
        self.interval_s = seconds
        self._wake.set()

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        """Call ``callback(snapshot)`` from the refresh thread after every
        refresh (it must not block); returns the unsubscribe function."""
        return self._subscribers.add(callback)

    def _consumer_failed(self, err: Exception) -> None:
        self.log.error(f"monitor: a consumer failed: {type(err).__name__}: {err}")

    def refresh_soon(self, wait: bool = False, timeout: float = 5.0) -> Snapshot | None:
        """Ask for an early snapshot (after an action); with ``wait``, return
        it once published. Without a running clock the caller is the clock
        (tests, tools): a full refresh here and now."""
        if self._thread is None:
            return self.refresh()
        with self._published:
            seq = self._seq
            self._early = True
            self._wake.set()
            if not wait:
                return None
            self._published.wait_for(lambda: self._seq > seq or self._stop.is_set(), timeout)
            return self.latest

    def wait_newer(self, than: int, timeout: float) -> Snapshot | None:
        """The first snapshot published after sequence number ``than`` (None on timeout)."""
        with self._published:
            self._published.wait_for(lambda: self._seq > than or self._stop.is_set(), timeout)
            return self.latest if self._seq > than else None

    @property
    def seq(self) -> int:
        """How many snapshots have been published."""
        return self._seq

    def _run(self) -> None:
        lower_thread_priority()  # a refresh must never delay a relayed notification
        next_t = time.monotonic()
        first = True
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_t:
                self._publish_guarded(advance=True)
                step = min(FIRST_RATES_S, self.interval_s) if first else self.interval_s
                first = False
                next_t = max(next_t + step, time.monotonic() + 0.001)
            elif self._early:
                self._publish_guarded(advance=False)
            self._wake.wait(max(0.0, next_t - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                break
            next_t = min(next_t, time.monotonic() + self.interval_s)  # a shorter new interval

    def _publish_guarded(self, advance: bool) -> None:
        with self._published:
            self._early = False
        try:
            self.refresh(advance=advance)
        except Exception as err:  # the clock must outlive a monitor bug
            if "monitor" not in self._failing:
                self.log.error(f"monitor: refresh failed: {type(err).__name__}: {err}")
                self._failing.add("monitor")
        else:
            self._failing.discard("monitor")

    # -- one refresh -------------------------------------------------------------

    def _collect(self, engine: EngineSnapshot) -> tuple[list[VMView], list[SourceStatus]]:
        vms: list[VMView] = []
        statuses: list[SourceStatus] = []
        owners: dict[str, Source] = {}
        for source in self.sources:
            try:
                views = source.collect(engine)
                statuses.append(source.status())
                self._failing.discard(source.name)
            except Exception as err:  # a broken source must not stop the others
                if source.name not in self._failing:
                    self.log.error(f"{source.name}: cannot collect devices: {err}")
                    self._failing.add(source.name)
                statuses.append(SourceStatus(source.name, source.kind, False, str(err)))
                continue
            vms.extend(views)
            for vm in views:
                for dev in vm.devices:
                    owners.setdefault(dev.key, source)
        self._owners = owners
        return join_views(vms), statuses

    def owner(self, device_key: str) -> Source | None:
        """The source that reported ``device_key`` at the last refresh."""
        return self._owners.get(device_key)

    def refresh(self, advance: bool = True) -> Snapshot:
        """Sample every source once and publish the snapshot. Only the refresh
        clock calls this (and tests without one): ``advance=False`` keeps the
        rate window, history and stuck timers of the last advancing refresh."""
        started, started_cpu = time.perf_counter(), time.thread_time()
        self.log.flush()  # rate-limited lines whose window ended: their summary now
        with self._lock:
            engine = self.engine.snapshot() if self.engine is not None else EngineSnapshot.empty()
            vms, statuses = self._collect(engine)
            now_ns = self._clock_ns()
            now = now_ns / 1e9
            dt = (now - self._last_t) if self._last_t is not None else None
            advance = advance or self._last_t is None
            rows: dict[str, QueueRow] = {}
            devices: dict[str, DeviceView] = {}
            device_rows = self._device_rows
            for vm in vms:
                for dev in vm.devices:
                    devices[dev.key] = dev
                    device_rows(rows, vm, dev, now, now_ns, dt, advance)
            if advance:
                self._forget_gone(devices)
                self._last_t = now
            snap = Snapshot(
                taken_at=self._wall_clock(),
                vms=tuple(vms),
                rows=rows,
                engine=self._engine_status(engine, dt, advance),
                sources=tuple(statuses),
                interval_s=self.interval_s,
                devices=devices,
            )
            self.refresh_ms = (time.perf_counter() - started) * 1e3
            self.refresh_cpu_ms = (time.thread_time() - started_cpu) * 1e3
        with self._published:
            self.latest = snap
            self._seq += 1
            self._published.notify_all()
        self._subscribers.publish(snap)
        return snap

    def forget_rates(self) -> None:
        """After a counter reset: restart rates and stuck timers from zero."""
        with self._lock:
            self._tracks.clear()
            self._last_t = None

    def _engine_status(
        self, engine: EngineSnapshot, dt: float | None, advance: bool
    ) -> EngineStatus:
        if self.engine is None:
            return EngineStatus(alive=False, relays_per_s=0.0, queues=0, backlog=0)
        health, polling = engine.health, engine.polling
        if advance:
            rate = (health.relays - self._last_relays) / dt if dt else 0.0
            self._last_relays = health.relays
            self._relays_per_s = max(rate, 0.0)
            if polling is not None:
                spin = (polling.spin_ns - self._last_spin_ns) / 1e9 / dt if dt else 0.0
                cpu_ns, last_cpu_ns = polling.thread_cpu_ns, self._last_cpu_ns
                cpu = (cpu_ns - last_cpu_ns) / 1e9 / dt if dt and cpu_ns and last_cpu_ns else None
                self._last_spin_ns, self._last_cpu_ns = polling.spin_ns, cpu_ns
                self._spin_share = max(spin, 0.0)
                self._cpu_share = None if cpu is None else max(cpu, 0.0)
        age = health.heartbeat_age_s
        return EngineStatus(
            alive=health.alive,
            relays_per_s=self._relays_per_s,
            queues=len(engine.queues),
            backlog=health.backlog,
            polling=polling.mode.value if polling is not None else None,
            spinning=polling.spinning if polling is not None else False,
            spin_share=self._spin_share,
            cpu_share=self._cpu_share,
            heartbeat_age_s=age if math.isfinite(age) else None,
            relays=health.relays,
        )

    def _forget_gone(self, devices: dict[str, DeviceView]) -> None:
        """Drop the tracks of devices and queues the last refresh did not see."""
        tracks = self._tracks
        for gone in [k for k in tracks if k not in devices]:
            del tracks[gone]
        for key, queue_tracks in tracks.items():
            queues = devices[key].queues
            if len(queue_tracks) != len(queues):
                seen = {q.index for q in queues}
                for index in [i for i in queue_tracks if i not in seen]:
                    del queue_tracks[index]

    def _new_track(self, dev: DeviceView, q: QueueView, now: float) -> _QueueTrack:
        track = _QueueTrack(
            key=f"{dev.key}#{q.index}",
            used_changed_at=now,
            calls_changed_at=now,
            kicks_changed_at=now,
            avail_changed_at=now,
        )
        track.span = self.history
        track.avail_seen = collections.deque(maxlen=2 * AVAIL_SEEN_MAX)
        track.kicks_at_last_call = q.kicks or 0
        return track

    def _device_rows(
        self,
        rows: dict[str, QueueRow],
        vm: VMView,
        dev: DeviceView,
        now: float,
        now_ns: int,
        dt: float | None,
        advance: bool,
    ) -> None:
        """Each of the device's queues: advance its track, then its row into
        ``rows``. The hot path of a refresh (1,024 queues at 1,024 queues), so
        the per-device values are read once, the rules' common case (a queue
        that moved within stuck.after) is decided inline, and the last row
        object is handed out again when nothing it shows changed (a quiet
        queue with no ages, rates steady): consumers compare rows by identity
        to skip work (the console's table). docs/design.md#incremental-rows."""
        queue_tracks = self._tracks.get(dev.key)
        if queue_tracks is None:
            queue_tracks = self._tracks[dev.key] = {}
        history = self.history
        after = self.stuck.after_s
        connected = dev.connected
        vm_name, dev_name, dev_key = vm.name, dev.name, dev.key
        for q in dev.queues:
            track = queue_tracks.get(q.index)
            if track is None:
                track = queue_tracks[q.index] = self._new_track(dev, q, now)
            elif track.span != history:  # a reload changed history: keep the last values
                _resize_history(track, history)
            kicks, calls = q.kicks, q.calls
            ring = q.ring
            avail: int | None
            used: int | None
            if ring is not None and ring.avail_idx is not None and ring.used_idx is not None:
                avail, used = ring.avail_idx, ring.used_idx  # from the ring state when read
            else:
                avail, used = q.avail_idx, q.used_idx
            if advance:
                kick_rate = call_rate = 0.0
                before_kicks, before_calls = track.kicks, track.calls
                if dt:
                    if before_kicks is not None and kicks is not None and kicks >= before_kicks:
                        kick_rate = (kicks - before_kicks) / dt
                    if before_calls is not None and calls is not None and calls >= before_calls:
                        call_rate = (calls - before_calls) / dt
                track.kick_rate, track.call_rate = kick_rate, call_rate
                if calls != before_calls:
                    track.calls_changed_at = now
                    track.kicks_at_last_call = kicks or 0
                    track.calls = calls
                if kicks != before_kicks:
                    track.kicks_changed_at = now
                    track.last_kick_dropped = q.dropped_kicks != track.dropped_kicks
                    track.kicks = kicks
                track.dropped_kicks = q.dropped_kicks
                if used != track.used_idx:
                    track.used_changed_at = now
                    track.used_idx = used
                if avail != track.avail_idx:
                    track.avail_changed_at = now
                    track.avail_idx = avail
                if q.mask not in _MASKED:
                    track.masked_at = None
                elif track.masked_at is None:
                    track.masked_at = now
                if ring is None or not ring.no_interrupt:
                    track.no_interrupt_at = track.used_at_no_interrupt = None
                elif track.no_interrupt_at is None:
                    track.no_interrupt_at, track.used_at_no_interrupt = now, used
                if dt is not None:
                    _append_history(track, kick_rate + call_rate)
            # The rules: each needs some quiet time of at least stuck.after (or
            # the operator's hold, or the source's own verdict); most queues have
            # none, which the earliest of the change times below tells at once.
            stuck: tuple[StuckRule, str] | None = None
            diagnosis: str | None = None
            if connected:
                since = track.used_changed_at
                if calls is not None and track.calls_changed_at < since:
                    since = track.calls_changed_at
                if kicks is not None and track.kicks_changed_at < since:
                    since = track.kicks_changed_at
                if track.masked_at is not None and track.masked_at < since:
                    since = track.masked_at
                if track.no_interrupt_at is not None and track.no_interrupt_at < since:
                    since = track.no_interrupt_at
                if q.hold or now - since >= after:
                    found = self._diagnosis(q, track, now)
                    stuck = self._stuck_reason(q, track, now, found)
                    diagnosis = found[1] if found is not None else None
                elif q.stuck_hint:
                    stuck = StuckRule.SOURCE, q.stuck_hint
            if avail is None or used is None or not (avail - used) & 0xFFFF:
                oldest_age = None  # nothing in flight: no oldest request
                if track.avail_seen:
                    track.avail_seen.clear()
            else:
                oldest_age = _oldest_age(track, avail, used, now)
            last_kick_ns, last_call_ns = q.last_kick_ns, q.last_call_ns
            row = track.row
            if (
                row is not None
                and q is track.view
                and not last_kick_ns
                and not last_call_ns
                and stuck is None
                and diagnosis is None
                and oldest_age is None
                and row.stuck is None
                and row.diagnosis is None
                and row.oldest_age_s is None
                and row.kick_rate == track.kick_rate
                and row.call_rate == track.call_rate
                and row.history is track.shown
                and row.vm_name == vm_name
                and row.device_name == dev_name
            ):
                rows[track.key] = row  # nothing it shows changed
                continue
            row = QueueRow(
                q,
                dev_key,
                vm_name,
                dev_name,
                track.kick_rate,
                track.call_rate,
                track.shown,
                (now_ns - last_kick_ns) / 1e9 if last_kick_ns else None,
                (now_ns - last_call_ns) / 1e9 if last_call_ns else None,
                stuck[1] if stuck else None,
                stuck[0] if stuck else None,
                diagnosis,
                oldest_age,
            )
            track.view, track.row = q, row
            rows[track.key] = row

    def _diagnosis(self, q: QueueView, track: _QueueTrack, now: float) -> tuple[str, str] | None:
        """svqtui.diagnosis's verdict (rule, sentence). Every rule but the operator's hold needs
        some quiet time of at least stuck.after (no call, no kick, used index
        still, masked, calls suppressed): a busy queue skips the rules (the
        common case, and the monitor's cost at 1,024 queues)."""
        after = self.stuck.after_s
        used_still = now - track.used_changed_at
        no_call = now - track.calls_changed_at if q.calls is not None else None
        no_kick = now - track.kicks_changed_at if q.kicks is not None else None
        masked = now - track.masked_at if track.masked_at is not None else None
        no_interrupt = now - track.no_interrupt_at if track.no_interrupt_at is not None else None
        quiet = [d for d in (used_still, no_call, no_kick, masked, no_interrupt) if d is not None]
        if not q.hold and max(quiet, default=0.0) < after:
            return None
        timing = Timing(
            after_s=after,
            used_still_s=used_still,
            no_call_s=no_call,
            no_kick_s=no_kick,
            avail_still_s=now - track.avail_changed_at,
            masked_s=masked,
            no_interrupt_s=no_interrupt,
            used_at_no_interrupt=track.used_at_no_interrupt,
            last_kick_dropped=track.last_kick_dropped,
        )
        return verdict(q, timing)

    def _stuck_reason(
        self, q: QueueView, track: _QueueTrack, now: float, found: tuple[str, str] | None
    ) -> tuple[StuckRule, str] | None:
        """(rule, reason in words) when the queue is stuck; ``found`` is the
        diagnosis (a call owed is stuck by itself: the guest waits for it, and
        a dropped call was counted, so no kick looks unanswered)."""
        after = self.stuck.after_s
        in_flight = q.in_flight
        if self.stuck.in_flight and in_flight and now - track.used_changed_at >= after:
            return StuckRule.IN_FLIGHT, (
                f"{in_flight} request(s) in flight, used index stuck at {q.used_idx} "
                f"for {now - track.used_changed_at:.0f}s"
            )
        unanswered = (q.kicks or 0) - track.kicks_at_last_call
        if (
            self.stuck.kicks_without_calls
            and q.calls is not None
            and unanswered > 0
            and now - track.calls_changed_at >= after
        ):
            return StuckRule.KICKS_WITHOUT_CALLS, (
                f"{unanswered} kick(s) and no call for {now - track.calls_changed_at:.0f}s"
            )
        if self.stuck.kicks_without_calls and found is not None and found[0] == "call_owed":
            ring = q.ring
            used = ring.used_idx if ring is not None and ring.used_idx is not None else q.used_idx
            return StuckRule.KICKS_WITHOUT_CALLS, (
                f"a call owed: used index at {used}, "
                f"no call for {now - track.calls_changed_at:.0f}s"
            )
        return (StuckRule.SOURCE, q.stuck_hint) if q.stuck_hint else None


HISTORY_SLACK = 4  # a history buffer holds this many histories' worth of values


def _append_history(track: _QueueTrack, value: float) -> None:
    """Append to the track's history; a new window only if its values changed
    (not when a full history of one value gets that value again)."""
    span, count, buf, n = track.span, track.count, track.buffer, track.written
    if count and buf[n - 1] == value:
        track.same_run += 1
    else:
        track.same_run = 1
    if count == span and track.same_run > span:
        return  # the same values: keep the window (and the row)
    if n == len(buf):  # full: a new buffer with the window's last values
        keep = min(count, span - 1) if span else 0
        fresh = array("d", [0.0]) * max(HISTORY_SLACK * span, keep + 1)
        fresh[:keep] = buf[n - keep : n]
        buf, n = fresh, keep
        track.buffer = buf
    buf[n] = value
    n += 1
    track.written = n
    if count < span:
        count += 1
        track.count = count
    track.shown = History.window(buf, n - count, n)


def _resize_history(track: _QueueTrack, span: int) -> None:
    """A new history length (a reload): keep the last ``span`` values."""
    kept = array("d", track.shown[-span:] if span else ())
    track.buffer, track.written = kept, len(kept)
    track.span, track.shown, track.same_run = span, History(kept), 0
    track.count = len(kept)


def _oldest_age(track: _QueueTrack, avail: int, used: int, now: float) -> float | None:
    """How long ago svqtui first saw the oldest in-flight request (avail
    position used.idx) made available: the time of the first avail index
    movement past that position. Movements at or behind used.idx are dropped.
    ``avail`` and ``used`` come from the ring state when the source read it,
    and at least one request is in flight (the caller clears the movements
    otherwise). The movements are one deque of (index, time) pairs laid out
    flat, index then time: one deque object and no tuple per movement."""
    seen = track.avail_seen
    in_flight = (avail - used) & 0xFFFF
    if not seen or seen[-2] != avail:
        seen.append(avail)  # a full deque drops its oldest pair, one value each
        seen.append(now)
    while seen and not 0 < (seen[0] - used) & 0xFFFF <= in_flight:
        seen.popleft()  # completed (or the indices went back: a reset ring)
        seen.popleft()
    return now - seen[1] if seen else None
