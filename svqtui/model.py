"""Plain data the console, the batch modes and the control socket render.

Sources report what they see as ``VMView``/``DeviceView``/``QueueView`` with raw
totals; the monitor (svqtui.monitor) turns successive views into a ``Snapshot``
with rates, sparkline history and stuck verdicts. Everything here is immutable
and free of I/O, so a snapshot can be handed across threads as it is.
"""

from __future__ import annotations

import enum
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform, overload

from svqtui.virtio.requests import Request
from svqtui.virtio.split_ring import RingState


class MaskState(enum.StrEnum):
    """Guest-notifier masking of a queue's call path (QEMU's tri-state)."""

    UNMASKED = "UNMASKED"
    MASKED = "MASKED"
    PENDING = "PENDING"  # masked, and a call is latched for delivery on unmask


class SourceKind(enum.StrEnum):
    """The kinds of source svqtui ships. Kinds are open strings: a plug-in
    source names its own (``VMView.source`` is a plain ``str``), and a client
    decodes a kind it does not know as the string it is."""

    DEMO = "demo"
    VHOST_USER = "vhost-user"
    QMP = "qmp"
    REMOTE = "remote"  # a headless svqtui this console is attached to


class DeviceRole(enum.StrEnum):
    """What a device view contributes when another source sees the same
    device (the same vhost-user socket path): the monitor joins one view that
    DESCRIBES it (names, placement under its VM, QEMU's fields: QMP, libvirt)
    with one that COUNTS it (notifications and actions: the interposer)."""

    STANDALONE = "standalone"  # never joined
    DESCRIBES = "describes"
    COUNTS = "counts"


class VMRole(enum.StrEnum):
    """What a VM view contributes when another source sees the same QEMU
    process (the same ``pid``): the monitor folds every view that FOUND the
    process (QMP's process discovery) into the one that MANAGES it (libvirt:
    the domain's name, UUID and state), so one VM is one row."""

    STANDALONE = "standalone"  # never folded
    MANAGES = "manages"
    FOUND = "found"


class StuckRule(enum.StrEnum):
    """Which rule found a queue stuck (the monitor's verdicts)."""

    IN_FLIGHT = "in_flight"  # config stuck.in_flight: requests in flight, used index still
    # config stuck.kicks_without_calls; also a call the diagnosis finds owed (a call a
    # fault dropped is counted, yet the guest's last kick got no call it could see)
    KICKS_WITHOUT_CALLS = "kicks_without_calls"
    SOURCE = "source"  # the source's own verdict (QueueView.stuck_hint)


class ShadowVia(enum.StrEnum):
    """What can put a device into shadow mode."""

    ENGINE = "engine"  # svqtui's relay engine (demo, vhost-user interposer)
    QMP = "qmp"  # QEMU's x-vhost-enable-shadow-vq
    NONE = "none"


#: In a console attached to several hosts (svqtui.control.multi), the keys of
#: VMs, devices and queue rows are ``HOST + HOST_SEP + key`` (unique across
#: hosts), and VM names ``HOST/name``.
HOST_SEP = "|"


_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[_T]) -> type[_T]:
    """A model class made ~1,024 times a refresh (``QueueView``, ``QueueRow``):
    a slots dataclass, immutable by contract and hashable like a frozen one,
    but not frozen at run time. mypy checks it as frozen (an assignment to a
    field is an error); ``dataclasses.replace`` makes changed copies. A frozen
    dataclass's ``__init__`` sets each field through ``object.__setattr__``:
    for ``QueueView``'s 27 fields that is ~3-4 us per queue, 4x a plain store
    (docs/design.md#thread-map, "Snapshots")."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


# -- what a source reports -------------------------------------------------


@record
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
    fault: str | None = None  # an operator-armed fault, in words ("drop the next call")
    dropped: int = 0  # notifications a fault swallowed (kick and call)
    dropped_kicks: int = 0  # of those, kicks
    duplicated: int = 0  # extra writes by a dup fault
    delayed: int = 0  # notifications a delay fault delivered late
    ring: RingState | None = None  # flags, indices, event indices read from the ring itself
    oldest: Request | None = None  # the oldest request not yet used, decoded
    oldest_head: int | None = None  # its head (also when it could not be decoded)
    oldest_position: int | None = None  # its avail ring position (= used.idx)
    in_flight_note: str | None = None  # why the in-flight heads may be wrong or unread
    hold: bool = False  # the operator's mask (m) holds this queue's calls

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
    source: str  # the reporting source's kind (a SourceKind or a plug-in's own)
    connected: bool = True
    status: str = ""  # one line: "running", "disconnected: ...", ...
    shadow: bool = False
    shadow_via: ShadowVia = ShadowVia.NONE
    shadow_note: str = ""  # why shadow mode is (not) available here
    queues: tuple[QueueView, ...] = ()
    socket_path: str | None = None  # vhost-user chardev path, joins views (see role)
    role: DeviceRole = DeviceRole.STANDALONE  # what this view adds when joined
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
    source: str  # the reporting source's kind
    devices: tuple[DeviceView, ...] = ()
    connected: bool = True
    status: str = ""
    pid: int | None = None
    cpu_percent: float | None = None
    rss_bytes: int | None = None
    migration: MigrationView | None = None
    label: str = ""  # e.g. "demo"
    role: VMRole = VMRole.STANDALONE  # what this view adds when another sees its pid


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """One source's state in one line. ``answered`` is False only while the
    source's first attempt has no outcome yet (e.g. libvirt still connecting):
    ``--once`` waits for it, bounded, so its one snapshot never says "starting"."""

    name: str
    kind: str
    connected: bool
    message: str = ""
    answered: bool = True


# -- what the monitor publishes --------------------------------------------


class History(Sequence[float]):
    """A queue's recent kick+call rates, oldest first (``QueueRow.history``):
    an immutable sequence of floats that compares and hashes like the tuple of
    its values and goes over the wire as a list of them.

    The monitor makes one per queue and refresh as a window on the queue's
    append-only buffer of doubles (``window``): no copy, where a tuple would
    take a reference to each of its 60 float objects at every refresh and drop
    them at the next, ~2 ms a refresh at 1,024 queues (cold caches). The
    window's part of the buffer is never written again
    (docs/design.md#incremental-rows)."""

    __slots__ = ("_buf", "_start", "_stop")

    def __init__(self, values: Iterable[float] = ()) -> None:
        self._buf = array("d", values)
        self._start, self._stop = 0, len(self._buf)

    @classmethod
    def window(cls, buf: array[float], start: int, stop: int) -> History:
        """``buf[start:stop]`` as a History, without a copy: the caller never
        writes that part of ``buf`` again."""
        self = cls.__new__(cls)
        self._buf, self._start, self._stop = buf, start, stop
        return self

    def values(self) -> array[float]:
        """The values, copied out as an array of doubles."""
        return self._buf[self._start : self._stop]

    def __len__(self) -> int:
        return self._stop - self._start

    @overload
    def __getitem__(self, index: int) -> float: ...

    @overload
    def __getitem__(self, index: slice) -> History: ...

    def __getitem__(self, index: int | slice) -> float | History:
        if isinstance(index, slice):
            return History(self.values()[index])
        n = self._stop - self._start
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError("history index out of range")
        return self._buf[self._start + index]

    def __iter__(self) -> Iterator[float]:
        return iter(self.values())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, History):
            return self.values() == other.values()
        if isinstance(other, tuple):
            return tuple(self.values()) == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self.values()))

    def __repr__(self) -> str:
        return repr(tuple(self.values()))

    def __reduce__(self) -> tuple[type[History], tuple[tuple[float, ...]]]:
        return History, (tuple(self.values()),)


@record
class QueueRow:
    """A queue with rates, history and verdicts: one row of the queue table."""

    view: QueueView
    device_key: str
    vm_name: str
    device_name: str
    kick_rate: float = 0.0
    call_rate: float = 0.0
    history: Sequence[float] = ()  # recent kick+call rates, oldest first (History, a tuple)
    last_kick_age_s: float | None = None
    last_call_age_s: float | None = None
    stuck: str | None = None  # reason in words, None when not stuck
    stuck_rule: StuckRule | None = None  # which rule found it stuck
    diagnosis: str | None = None  # why, in one sentence with the numbers (svqtui.diagnosis)
    oldest_age_s: float | None = None  # since svqtui first saw the oldest request in flight

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
    heartbeat_age_s: float | None = None  # since the engine loop last ran; None: no heartbeat
    relays: int = 0  # notifications relayed since the engine started (a counter)


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
