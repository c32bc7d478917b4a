"""Plain data the console, the batch modes and the control socket render.

Sources report what they see as ``VMView``/``DeviceView``/``QueueView`` with raw
totals; the monitor (svqtui.monitor) turns successive views into a ``Snapshot``
with rates, sparkline history and stuck verdicts. Everything here is immutable
and free of I/O, so a snapshot can be handed across threads as it is.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any


class MaskState(enum.StrEnum):
    """Guest-notifier masking of a queue's call path (QEMU's tri-state)."""

    UNMASKED = "UNMASKED"
    MASKED = "MASKED"
    PENDING = "PENDING"  # masked, and a call is latched for delivery on unmask


class SourceKind(enum.StrEnum):
    DEMO = "demo"
    VHOST_USER = "vhost-user"
    QMP = "qmp"
    REMOTE = "remote"  # a headless svqtui this console is attached to


class ShadowVia(enum.StrEnum):
    """What can put a device into shadow mode."""

    ENGINE = "engine"  # svqtui's relay engine (demo, vhost-user interposer)
    QMP = "qmp"  # QEMU's x-vhost-enable-shadow-vq
    NONE = "none"


# -- what a source reports -------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueView:
    """One virtqueue as a source sees it: totals, not rates."""

    index: int
    kicks: int | None = None  # None: this source cannot count notifications
    calls: int | None = None
    mask: MaskState | None = None
    shadow: bool = False
    avail_idx: int | None = None
    used_idx: int | None = None
    last_kick_ns: int = 0  # CLOCK_MONOTONIC ns, 0 = never
    last_call_ns: int = 0
    held: int = 0  # calls held while masked
    injected_kicks: int = 0
    injected_calls: int = 0
    kick_fd: str | None = None  # fd identities, e.g. "fd 12 (eventfd-id 4711)"
    call_fd: str | None = None
    error: str | None = None
    ring_source: str | None = None  # where avail/used come from ("ring", "qmp")
    stuck_hint: str | None = None  # a source's own stuck verdict (e.g. demo "device stalled")

    @property
    def in_flight(self) -> int | None:
        if self.avail_idx is None or self.used_idx is None:
            return None
        return (self.avail_idx - self.used_idx) & 0xFFFF


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One virtio/vhost device as a source sees it."""

    key: str  # stable, unique across sources: "demo:vm1/net0", "vu:blk0", "qmp:vm/path"
    name: str
    kind: str  # "virtio-net", "vhost-user-blk", ...
    source: SourceKind
    connected: bool = True
    status: str = ""  # one line: "running", "disconnected: ...", ...
    shadow: bool = False
    shadow_via: ShadowVia = ShadowVia.NONE
    shadow_note: str = ""  # why shadow mode is (not) available here
    queues: tuple[QueueView, ...] = ()
    socket_path: str | None = None  # vhost-user chardev path, used to join sources
    qom_path: str | None = None
    vhost_started: bool | None = None
    features: str | None = None
    protocol_features: str | None = None
    log_enabled: bool | None = None  # dirty logging (live migration)
    notes: tuple[str, ...] = ()
    real: bool = False  # a real device: quitting asks first while shadowed


@dataclass(frozen=True, slots=True)
class MigrationView:
    status: str
    passes: int | None = None
    transferred: int | None = None
    remaining: int | None = None
    total: int | None = None
    downtime_ms: int | None = None
    total_time_ms: int | None = None


@dataclass(frozen=True, slots=True)
class VMView:
    """A VM and its devices as a source sees it."""

    key: str
    name: str
    source: SourceKind
    devices: tuple[DeviceView, ...] = ()
    connected: bool = True
    status: str = ""
    pid: int | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    migration: MigrationView | None = None
    label: str = ""  # e.g. "demo"


@dataclass(frozen=True, slots=True)
class SourceStatus:
    name: str
    kind: SourceKind
    connected: bool
    message: str = ""


# -- what the monitor publishes --------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A queue with rates, history and verdicts: one row of the queue table."""

    view: QueueView
    device_key: str
    vm_name: str
    device_name: str
    kick_rate: float = 0.0
    call_rate: float = 0.0
    history: tuple[float, ...] = ()  # recent kick+call rates, oldest first
    last_kick_age_s: float | None = None
    last_call_age_s: float | None = None
    stuck: str | None = None  # reason in words, None when not stuck

    @property
    def key(self) -> str:
        return f"{self.device_key}#{self.view.index}"


@dataclass(frozen=True, slots=True)
class EngineStatus:
    alive: bool
    relays_per_s: float
    queues: int
    backlog: int
    polling: str | None = None  # "off", "adaptive", "fixed"; None: no engine
    spinning: bool = False  # in a spin window at the refresh (else asleep or relaying)
    spin_share: float = 0.0  # fraction of a core spent spinning over the last interval
    cpu_share: float | None = None  # the engine thread's CPU over the last interval


@dataclass(frozen=True, slots=True)
class LogEvent:
    time_s: float  # time.time()
    level: str  # "info", "warning", "error"
    text: str
    device_key: str | None = None
    queue_index: int | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the console shows at one refresh."""

    taken_at: float  # time.time()
    vms: tuple[VMView, ...]
    rows: dict[str, QueueRow]  # QueueRow.key -> row
    engine: EngineStatus
    sources: tuple[SourceStatus, ...]
    interval_s: float
    devices: dict[str, DeviceView] = field(default_factory=dict)

    def rows_of(self, device_key: str) -> list[QueueRow]:
        return [r for r in self.rows.values() if r.device_key == device_key]

    def to_json(self) -> dict[str, Any]:
        """The batch/control JSON shape: VMs hold devices, devices hold queues."""
        vms = []
        for vm in self.vms:
            devices = []
            for dev in vm.devices:
                queues = []
                for q in dev.queues:
                    row = self.rows.get(f"{dev.key}#{q.index}")
                    queues.append(
                        {
                            "index": q.index,
                            "kicks": q.kicks,
                            "calls": q.calls,
                            "kicks_per_s": round(row.kick_rate, 3) if row else None,
                            "calls_per_s": round(row.call_rate, 3) if row else None,
                            "mask": q.mask.value if q.mask else None,
                            "shadow": q.shadow,
                            "avail_idx": q.avail_idx,
                            "used_idx": q.used_idx,
                            "in_flight": q.in_flight,
                            "ring_source": q.ring_source,
                            "held": q.held,
                            "last_kick_age_s": row.last_kick_age_s if row else None,
                            "last_call_age_s": row.last_call_age_s if row else None,
                            "stuck": row.stuck if row else None,
                            "error": q.error,
                        }
                    )
                d = {k: v for k, v in asdict(dev).items() if k != "queues"}
                d["source"] = dev.source.value
                d["shadow_via"] = dev.shadow_via.value
                d["notes"] = list(dev.notes)
                d["queues"] = queues
                devices.append(d)
            vms.append(
                {
                    "key": vm.key,
                    "name": vm.name,
                    "source": vm.source.value,
                    "label": vm.label,
                    "connected": vm.connected,
                    "status": vm.status,
                    "pid": vm.pid,
                    "cpu_percent": vm.cpu_percent,
                    "rss_bytes": vm.rss_bytes,
                    "migration": asdict(vm.migration) if vm.migration else None,
                    "devices": devices,
                }
            )
        return {
            "time": self.taken_at,
            "interval_s": self.interval_s,
            "engine": asdict(self.engine),
            "sources": [
                {
                    "name": s.name,
                    "kind": s.kind.value,
                    "connected": s.connected,
                    "message": s.message,
                }
                for s in self.sources
            ],
            "vms": vms,
        }
