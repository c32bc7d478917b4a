"""The monitor: turns what sources report into snapshots with rates and verdicts.

Each ``refresh()`` collects every source's current view (from memory), joins
a device seen by QMP and by an interposer into one row (same vhost-user socket
path), derives rates from the previous refresh, keeps a short rate history per
queue, and applies the stuck rules from config.yaml. The console, the batch
modes and the control socket all read the resulting ``Snapshot``.
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from svqtui.config import StuckConfig
from svqtui.engine import Engine
from svqtui.eventlog import EventLog
from svqtui.model import (
    DeviceView,
    EngineStatus,
    QueueRow,
    QueueView,
    Snapshot,
    SourceKind,
    SourceStatus,
    VMView,
)
from svqtui.sources.base import Source


@dataclass(slots=True)
class _QueueTrack:
    """What the monitor remembers about one queue between refreshes."""

    kicks: int | None = None
    calls: int | None = None
    used_idx: int | None = None
    used_changed_at: float = 0.0
    calls_changed_at: float = 0.0
    kicks_at_last_call: int = 0
    history: collections.deque[float] = field(default_factory=collections.deque)


def join_views(vms: Sequence[VMView]) -> list[VMView]:
    """Merge each interposed device into the QMP view of the same device.

    The QMP device keeps its place under its VM and its vhost fields; the
    interposer's queues (counted by the engine) and key (its actions) win.
    Interposed devices that QMP does not show stay under their own VM.
    """
    interposed = {
        d.socket_path: d
        for vm in vms
        if vm.source is SourceKind.VHOST_USER
        for d in vm.devices
        if d.socket_path
    }
    joined: set[str] = set()
    out: list[VMView] = []
    for vm in vms:
        if vm.source is not SourceKind.QMP:
            continue
        devices: list[DeviceView] = []
        for dev in vm.devices:
            twin = interposed.get(dev.socket_path or "")
            if twin is None:
                devices.append(dev)
                continue
            joined.add(twin.key)
            devices.append(
                dataclasses.replace(
                    twin,
                    name=dev.name,
                    kind=dev.kind,
                    qom_path=dev.qom_path,
                    vhost_started=dev.vhost_started,
                    features=dev.features,
                    protocol_features=dev.protocol_features,
                    log_enabled=dev.log_enabled,
                    notes=twin.notes + dev.notes,
                    queues=_merge_queues(twin.queues, dev.queues),
                )
            )
        out.append(dataclasses.replace(vm, devices=tuple(devices)))
    for vm in vms:
        if vm.source is SourceKind.QMP:
            continue
        remaining = tuple(d for d in vm.devices if d.key not in joined)
        if remaining or not vm.devices:
            out.append(dataclasses.replace(vm, devices=remaining))
    return out


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
                q, avail_idx=other.avail_idx, used_idx=other.used_idx, ring_source=other.ring_source
            )
        merged.append(q)
    return tuple(merged)


class Monitor:
    """Produces snapshots; ``refresh()`` may be called from any one thread at a time."""

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
        self._tracks: dict[str, _QueueTrack] = {}
        self._last_t: float | None = None
        self._last_relays = 0
        self._last_spin_ns = 0
        self._last_cpu_ns: int | None = None
        self._failing: set[str] = set()
        self.latest: Snapshot | None = None

    def _collect(self) -> tuple[list[VMView], list[SourceStatus]]:
        vms: list[VMView] = []
        statuses: list[SourceStatus] = []
        for source in self.sources:
            try:
                vms.extend(source.collect())
                statuses.append(source.status())
                self._failing.discard(source.name)
            except Exception as err:  # a broken source must not stop the others
                if source.name not in self._failing:
                    self.log.error(f"{source.name}: cannot collect devices: {err}")
                    self._failing.add(source.name)
                statuses.append(SourceStatus(source.name, source.kind, False, str(err)))
        return join_views(vms), statuses

    def refresh(self) -> Snapshot:
        with self._lock:
            vms, statuses = self._collect()
            now_ns = self._clock_ns()
            now = now_ns / 1e9
            dt = (now - self._last_t) if self._last_t is not None else None
            rows: dict[str, QueueRow] = {}
            devices: dict[str, DeviceView] = {}
            seen: set[str] = set()
            for vm in vms:
                for dev in vm.devices:
                    devices[dev.key] = dev
                    for q in dev.queues:
                        row = self._row(vm, dev, q, now, now_ns, dt)
                        rows[row.key] = row
                        seen.add(row.key)
            for gone in set(self._tracks) - seen:
                del self._tracks[gone]
            engine = self._engine_status(dt)
            self._last_t = now
            snap = Snapshot(
                taken_at=self._wall_clock(),
                vms=tuple(vms),
                rows=rows,
                engine=engine,
                sources=tuple(statuses),
                interval_s=self.interval_s,
                devices=devices,
            )
            self.latest = snap
            return snap

    def forget_rates(self) -> None:
        """After a counter reset: restart rates and stuck timers from zero."""
        with self._lock:
            self._tracks.clear()
            self._last_t = None

    def _engine_status(self, dt: float | None) -> EngineStatus:
        if self.engine is None:
            return EngineStatus(alive=False, relays_per_s=0.0, queues=0, backlog=0)
        health = self.engine.health()
        polling = self.engine.polling()
        rate = (health.relays - self._last_relays) / dt if dt else 0.0
        spin = (polling.spin_ns - self._last_spin_ns) / 1e9 / dt if dt else 0.0
        cpu_ns, last_cpu_ns = polling.thread_cpu_ns, self._last_cpu_ns
        cpu = (cpu_ns - last_cpu_ns) / 1e9 / dt if dt and cpu_ns and last_cpu_ns else None
        self._last_relays = health.relays
        self._last_spin_ns, self._last_cpu_ns = polling.spin_ns, cpu_ns
        return EngineStatus(
            alive=health.alive,
            relays_per_s=max(rate, 0.0),
            queues=self.engine.queue_count,
            backlog=health.backlog,
            polling=polling.mode.value,
            spinning=polling.spinning,
            spin_share=max(spin, 0.0),
            cpu_share=None if cpu is None else max(cpu, 0.0),
        )

    def _row(
        self,
        vm: VMView,
        dev: DeviceView,
        q: QueueView,
        now: float,
        now_ns: int,
        dt: float | None,
    ) -> QueueRow:
        key = f"{dev.key}#{q.index}"
        track = self._tracks.get(key)
        if track is None:
            track = _QueueTrack(used_changed_at=now, calls_changed_at=now)
            track.history = collections.deque(maxlen=self.history)
            track.kicks_at_last_call = q.kicks or 0
            self._tracks[key] = track
        kick_rate = _rate(track.kicks, q.kicks, dt)
        call_rate = _rate(track.calls, q.calls, dt)
        if q.calls != track.calls:
            track.calls_changed_at = now
            track.kicks_at_last_call = q.kicks or 0
        if q.used_idx != track.used_idx:
            track.used_changed_at = now
        track.kicks, track.calls, track.used_idx = q.kicks, q.calls, q.used_idx
        if dt is not None:
            track.history.append(kick_rate + call_rate)
        return QueueRow(
            view=q,
            device_key=dev.key,
            vm_name=vm.name,
            device_name=dev.name,
            kick_rate=kick_rate,
            call_rate=call_rate,
            history=tuple(track.history),
            last_kick_age_s=(now_ns - q.last_kick_ns) / 1e9 if q.last_kick_ns else None,
            last_call_age_s=(now_ns - q.last_call_ns) / 1e9 if q.last_call_ns else None,
            stuck=self._stuck_reason(q, track, now) if dev.connected else None,
        )

    def _stuck_reason(self, q: QueueView, track: _QueueTrack, now: float) -> str | None:
        after = self.stuck.after_s
        in_flight = q.in_flight
        if self.stuck.in_flight and in_flight and now - track.used_changed_at >= after:
            return (
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
            return f"{unanswered} kick(s) and no call for {now - track.calls_changed_at:.0f}s"
        return q.stuck_hint


def _rate(before: int | None, after: int | None, dt: float | None) -> float:
    if before is None or after is None or not dt or after < before:
        return 0.0
    return (after - before) / dt
