"""Virtio devices as QMP describes them: parsing replies into model views, and
choosing which queue-level commands a poll round sends.

Pure functions and plain records, no I/O: the session (session.py) feeds them
QEMU's replies. What each figure means and where it comes from:

* Device list: ``x-query-virtio`` (QOM path, virtio name); the QOM ``type`` of
  the backend gives the kind ("vhost-user-blk", "virtio-net"...).
* Device state: ``x-query-virtio-status`` every round: started, vhost-started,
  and while vhost runs ``vhost-dev`` (nvqs, vq-index, acked features, protocol
  features, ``log-enabled``: dirty logging during live migration). QEMU 7.2
  omits ``vhost-dev`` while vhost is stopped; the device then shows the
  features negotiated with the guest, and no dirty-logging state.
* Ring indices. For a device that vhost may run (a ``vhost-*`` kind, any
  virtio-net, or vhost started) QMP has no safe way to read them, and svqtui
  sends no ring command at all (``NEVER_TO_VHOST``; svqtui's interposer reads
  those rings from guest memory, bounded and read-only, when it sits on the
  device's socket). The two candidates both hurt the guest:

  - ``x-query-virtio-queue-status``: in QEMU 7.2, on a device whose vhost is
    started, it asks the back-end for the vring base
    (VHOST_USER_GET_VRING_BASE), which the vhost-user protocol defines as
    *stopping* that ring (the guest's disk I/O stopped for good after one
    query, measured with qemu-storage-daemon), and it reports the call's
    return code rather than the index.
  - ``x-query-virtio-queue-element``: it walks the descriptor chain at QEMU's
    ``last_avail_idx``, which does not move while vhost runs the queue, so it
    walks a request the guest completed and freed long ago. When that chain's
    (indirect) table has been reused, QEMU reads a ``next`` out of range, says
    "Desc next is 65535", and ``virtio_error()`` marks the device broken: from
    then on QEMU drops every interrupt of the device and the guest's queue
    stops for good (svqtui showed "device owes a call" and an injected call
    changed nothing). Measured: 9 lab starts in 169 under CPU load hung so,
    each with that line in QEMU's log, while svqtui polled the ring every
    round. The same walk is unsafe on a plain device whose queue is idle, so
    svqtui never sends it.

  For plain virtio devices ``x-query-virtio-queue-status`` is a read-only look
  at QEMU's own state (ring_source "qmp:queue-status": shadow-avail-idx,
  used-idx).
* ``x-query-virtio-vhost-queue-status`` (only while vhost runs) confirms each
  vhost ring is set up and its size; its ``kick``/``call`` are not fds (QEMU
  reports 0), so they are not shown.
* Notifications and masking: QMP cannot count kicks or calls (kicks/calls are
  None), nor see guest-notifier masking (QEMU applies it in KVM's irqfd), so
  mask is None; each device row says so in a note.

Command budget (``plan_queue_commands``): plain virtio queue status and vhost
ring checks on detail rounds (the first round after a connect, then every
``DETAIL_EVERY``-th); and never more than ``budget`` queue commands a round, the least
recently sent first, so the rest follow in the next rounds. The session also
stretches its interval so that a VM never sees more than a fixed number of
commands per second.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from svqtui.model import DeviceRole, DeviceView, QueueView, ShadowVia, SourceKind

DETAIL_EVERY = 5  # plain virtio queues and vhost ring checks: every 5th round
CMD_STATUS = "x-query-virtio-queue-status"
CMD_ELEMENT = "x-query-virtio-queue-element"
CMD_VHOST = "x-query-virtio-vhost-queue-status"
SHADOW_COMMAND = "x-vhost-enable-shadow-vq"
REQUIRED_COMMANDS = ("x-query-virtio", "x-query-virtio-status", CMD_STATUS)
# queue commands svqtui never sends to a device vhost may run (why: the
# module docstring); the element walk is not sent to any device
NEVER_TO_VHOST = frozenset({CMD_STATUS, CMD_ELEMENT})

SOURCE_STATUS = "qmp:queue-status"

NOTE_COUNTS = "kicks/calls: QMP cannot count notifications (svqtui's interposer can)"
NOTE_MASK = "mask: not visible through QMP (QEMU applies guest-notifier masking in KVM)"
NOTE_RING_VHOST = (
    "ring indices: not read through QMP while vhost may run the queue (QEMU's"
    " queue commands would stop the ring or break the device); svqtui's"
    " interposer shows them (config: devices)"
)
NOTE_RING_STATUS = (
    f"ring indices: QEMU's virtqueue state via x-query-virtio-queue-status,"
    f" every {DETAIL_EVERY}th poll"
)
SHADOW_NOTE_VHOST_USER = (
    "stock QEMU has no runtime shadow toggle: put svqtui's interposer on this"
    " device's vhost-user socket (config: devices)"
)
SHADOW_NOTE_KERNEL = (
    "stock QEMU has no runtime shadow toggle, and svqtui's interposer only sits"
    " on vhost-user sockets (this vhost back-end is not one)"
)
SHADOW_NOTE_PLAIN = "not a vhost device"


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What does not change while a device exists: identity and wiring."""

    path: str  # canonical QOM path of the virtio backend (.../virtio-backend)
    virtio_name: str  # "virtio-blk", "virtio-net"... (x-query-virtio "name")
    ident: str  # the -device id ("vub0"), or "device[3]" for anonymous ones
    kind: str  # QOM type without "-device": "vhost-user-blk", "virtio-net"
    socket_path: str | None = None  # the vhost-user chardev's unix socket
    chardev: str | None = None


@dataclass(slots=True)
class DeviceState:
    """A device's latest polled state (owned by one session, in the loop)."""

    info: DeviceInfo
    status: Mapping[str, Any] | None = None
    error: str | None = None
    queue_status: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    vhost_rings: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    queue_errors: dict[tuple[int, str], str] = field(default_factory=dict)  # (queue, cmd)
    shadow: bool = False

    @property
    def num_queues(self) -> int:
        if not self.status:
            return 0
        value = self.status.get("num-vqs", 0)
        return value if isinstance(value, int) and value > 0 else 0

    @property
    def vhost_started(self) -> bool | None:
        if not self.status:
            return None
        return bool(self.status.get("vhost-started"))

    @property
    def vhost_capable(self) -> bool:
        """vhost may run this device's queues (so no command of
        ``NEVER_TO_VHOST`` is sent to it)."""
        return is_vhost_kind(self.info.kind) or bool(self.vhost_started)


class QueueCmd(NamedTuple):
    path: str
    queue: int
    command: str


# -- identity -----------------------------------------------------------------


def device_ident(path: str) -> str:
    """The name an operator gave the device, from its QOM path."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[-1] == "virtio-backend":
        parts = parts[:-1]
    return parts[-1] if parts else path


def proxy_path(path: str) -> str:
    """The QOM path of the device the operator added (the -pci/-ccw proxy)."""
    suffix = "/virtio-backend"
    return path[: -len(suffix)] if path.endswith(suffix) else path


def device_kind(qom_type: str | None, virtio_name: str) -> str:
    if not qom_type:
        return virtio_name
    return qom_type.removesuffix("-device")


def is_vhost_kind(kind: str) -> bool:
    """Devices that vhost runs, or may run (virtio-net has vhost netdevs)."""
    return kind.startswith("vhost-") or kind == "virtio-net"


def is_vhost_user_kind(kind: str) -> bool:
    return kind.startswith("vhost-user-")


# -- chardev socket paths -----------------------------------------------------


def socket_path_from_addr(addr: object) -> str | None:
    """A unix path from a chardev's QOM ``addr`` (SocketAddress)."""
    if not isinstance(addr, Mapping):
        return None
    data = addr.get("data", addr)  # older QEMUs nest the union under "data"
    if not isinstance(data, Mapping):
        return None
    if addr.get("type") == "unix" and isinstance(data.get("path"), str) and data["path"]:
        path: str = data["path"]
        return path
    return None


_FILENAME = re.compile(r"^(?:disconnected:)?unix:([^,]+)")


def socket_path_from_filename(filename: str) -> str | None:
    """A unix path from query-chardev's ``filename``.

    "unix:/p,server=on" and "disconnected:unix:/p,server=on" name the path;
    a connected client socket shows only "unix:" (QEMU prints the local,
    unnamed end), so that gives nothing.
    """
    m = _FILENAME.match(filename)
    return m.group(1) if m else None


# -- feature lists ------------------------------------------------------------


def feature_names(features: object) -> list[str]:
    """Short names of a VirtioDeviceFeatures / VhostDeviceProtocols record."""
    if not isinstance(features, Mapping):
        return []
    names: list[str] = []
    for key in ("transports", "dev-features", "protocols"):
        for entry in features.get(key) or ():
            if isinstance(entry, str):
                names.append(entry.split(":", 1)[0].strip())
    for key in ("unknown-dev-features", "unknown-protocols"):
        value = features.get(key)
        if isinstance(value, int) and value:
            names.append(f"unknown:{value:#x}")
    return names


def _joined(features: object) -> str | None:
    names = feature_names(features)
    return " ".join(names) if names else None


# -- queues ---------------------------------------------------------------


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def queue_from_status(index: int, reply: Mapping[str, Any]) -> QueueView:
    avail = _int(reply.get("shadow-avail-idx"))
    if avail is None:
        avail = _int(reply.get("last-avail-idx"))
    return QueueView(
        index=index,
        avail_idx=avail,
        used_idx=_int(reply.get("used-idx")),
        ring_source=SOURCE_STATUS,
    )


def queue_views(state: DeviceState) -> tuple[QueueView, ...]:
    """Every queue of the device, with what the last rounds learnt about it."""
    views = []
    for i in range(state.num_queues):
        if i in state.queue_status and not state.vhost_capable:
            q = queue_from_status(i, state.queue_status[i])
        else:
            q = QueueView(index=i)
        errors = [e for (qi, _), e in sorted(state.queue_errors.items()) if qi == i]
        if errors:
            error = "; ".join(errors)
            q = QueueView(
                index=i,
                avail_idx=q.avail_idx,
                used_idx=q.used_idx,
                ring_source=q.ring_source,
                error=error,
                ring=q.ring,
            )
        views.append(q)
    return tuple(views)


# -- planning a round's queue commands ----------------------------------------


def is_detail_round(round_no: int) -> bool:
    """Rounds 1, 1 + DETAIL_EVERY, ...: the first round after a connect is one,
    so a fresh view (or ``--once``) has every queue's figures at once."""
    return (round_no - 1) % DETAIL_EVERY == 0


def due_queue_commands(devices: Sequence[DeviceState], round_no: int) -> list[QueueCmd]:
    """Every queue-level command due this round, before the budget applies."""
    detail = is_detail_round(round_no)
    due: list[QueueCmd] = []
    for dev in devices:
        path = dev.info.path
        if dev.status is None:
            continue
        for q in range(dev.num_queues):
            if dev.vhost_capable:
                if detail and dev.vhost_started:
                    due.append(QueueCmd(path, q, CMD_VHOST))
            elif detail:
                due.append(QueueCmd(path, q, CMD_STATUS))
    return due


def plan_queue_commands(
    devices: Sequence[DeviceState], round_no: int, budget: int, served: dict[QueueCmd, int]
) -> list[QueueCmd]:
    """At most ``budget`` of the due commands, least recently sent first.

    ``served`` (command -> round it was last sent) belongs to the caller and
    is updated here; commands of vanished queues are forgotten. Least-recently-
    served order means every due command is sent within
    ceil(due / budget) rounds, whatever the mix of due commands.
    """
    due = due_queue_commands(devices, round_no)
    if len(due) > budget:
        due = sorted(due, key=lambda c: served.get(c, -1))[:budget]  # stable: ties keep order
    for cmd in due:
        served[cmd] = round_no
    queues = {d.info.path: d.num_queues for d in devices}
    for cmd in [c for c in served if c.queue >= queues.get(c.path, 0)]:
        del served[cmd]  # its device or queue is gone
    return due


# -- shadow capability --------------------------------------------------------


def shadow_capability(
    state: DeviceState, shadow_command: bool, name_shared: bool
) -> tuple[ShadowVia, str]:
    """Whether QMP can put this device into shadow mode, and why (not)."""
    kind = state.info.kind
    vhost_user = is_vhost_user_kind(kind) or state.info.socket_path is not None
    vhost = vhost_user or kind.startswith("vhost-") or bool(state.vhost_started)
    if not vhost:
        if kind == "virtio-net":
            return ShadowVia.NONE, f"{SHADOW_NOTE_PLAIN} (vhost is not running it)"
        return ShadowVia.NONE, SHADOW_NOTE_PLAIN
    if shadow_command:
        if name_shared:
            return ShadowVia.NONE, (
                f"{SHADOW_COMMAND} selects a device by its virtio name"
                f" '{state.info.virtio_name}', which other devices of this VM share"
            )
        return ShadowVia.QMP, f"QEMU offers {SHADOW_COMMAND}"
    return ShadowVia.NONE, SHADOW_NOTE_VHOST_USER if vhost_user else SHADOW_NOTE_KERNEL


# -- the device row -------------------------------------------------------


def _device_status(state: DeviceState) -> str:
    if state.error is not None:
        return state.error
    st = state.status
    if st is None:
        return "not polled yet"
    if st.get("broken"):
        return "broken (QEMU marked the device broken)"
    if st.get("vhost-started"):
        return "vhost started"
    if st.get("started"):
        return "started"
    return "not started (no guest driver yet)"


def device_view(
    vm_name: str,
    state: DeviceState,
    *,
    connected: bool,
    shadow_command: bool,
    name_shared: bool,
) -> DeviceView:
    """The model row of one device, notes saying where each figure comes from."""
    info = state.info
    st = state.status or {}
    vhost_dev = st.get("vhost-dev")
    notes = [NOTE_COUNTS, NOTE_MASK]
    features: str | None
    protocol: str | None = None
    log_enabled: bool | None = None
    if isinstance(vhost_dev, Mapping):
        features = _joined(vhost_dev.get("acked-features"))
        protocol = _joined(vhost_dev.get("protocol-features"))
        log = vhost_dev.get("log-enabled")
        log_enabled = log if isinstance(log, bool) else None
        notes.append(
            f"vhost-dev: nvqs {vhost_dev.get('nvqs')}, vq-index {vhost_dev.get('vq-index')},"
            f" dirty log {'on' if log_enabled else 'off'}"
        )
    else:
        features = _joined(st.get("guest-features"))
        if state.vhost_capable and state.status is not None:
            notes.append("vhost-dev: shown while vhost runs (QEMU omits it when stopped)")
    if state.num_queues:
        notes.append(NOTE_RING_VHOST if state.vhost_capable else NOTE_RING_STATUS)
    via, shadow_note = shadow_capability(state, shadow_command, name_shared)
    return DeviceView(
        key=f"qmp:{vm_name}/{info.ident}",
        name=info.ident,
        kind=info.kind,
        source=SourceKind.QMP,
        connected=connected,
        status=_device_status(state) if connected else "disconnected",
        shadow=state.shadow,
        shadow_via=via,
        shadow_note=shadow_note,
        queues=queue_views(state),
        socket_path=info.socket_path,
        role=DeviceRole.DESCRIBES,
        qom_path=info.path,
        vhost_started=state.vhost_started,
        features=features,
        protocol_features=protocol,
        log_enabled=log_enabled,
        notes=tuple(notes),
        real=True,
    )
