"""A libvirt domain and its devices as model views (pure: no libvirt calls).

The source hands in what it read (the parsed domain XML, the state, the pid,
job statistics, the taint messages and, with ``libvirt.qmp``, the
``DomainMonitor``'s device states); this module words the rows. Every
vhost-user device is a ``DeviceRole.DESCRIBES`` view carrying its socket
path, so a svqtui interposer listening there joins it (libvirt's names, the
engine's counts); the VM is a ``VMRole.MANAGES`` view with its QEMU pid, so
QMP's process discovery of the same QEMU folds into it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from svqtui.model import DeviceRole, DeviceView, MigrationView, ShadowVia, VMRole, VMView
from svqtui.sources.libvirt.domxml import DomainXML, XmlDevice
from svqtui.sources.qmp.devices import (
    NOTE_RING_VHOST,
    DeviceState,
    feature_names,
    queue_views,
)

KIND = "libvirt"  # the source kind (an open string; see svqtui.model.SourceKind)

STATES = {
    0: "no state",
    1: "running",
    2: "blocked",
    3: "paused",
    4: "shutting down",
    5: "shut off",
    6: "crashed",
    7: "PM-suspended",
}
ACTIVE_STATES = (1, 2, 3, 4, 7)

NOTE_QMP_OFF = (
    "libvirt.qmp is off: vhost state, features and plain devices' ring indices need"
    " QEMU's monitor;"
    " libvirt.qmp: true adds them through libvirt, and TAINTS the domain"
    " (custom-monitor) until it stops"
)
NOTE_QMP_ON = (
    "QEMU's virtio state through libvirt's monitor pass-through"
    " (libvirt.qmp: true; the domain is tainted custom-monitor)"
)
NOTE_COUNTS = "kicks/calls: libvirt cannot count notifications (svqtui's interposer can)"
SHADOW_NOTE_VHOST_USER = (
    "put svqtui's interposer on this device's vhost-user socket (config: devices,"
    " listen = the socket path in the domain XML)"
)
SHADOW_NOTE_KERNEL = "svqtui's interposer only sits on vhost-user sockets (this is kernel vhost)"
SHADOW_NOTE_PLAIN = "not a vhost device"


def device_key(domain: str, dev: XmlDevice) -> str:
    return f"libvirt:{domain}/{dev.label}"


def queue_text(dev: XmlDevice, vcpus: int) -> str:
    if dev.queues is not None:
        pairs = " pairs" if dev.kind == "virtio-net" else ""
        return f"{dev.queues} queue{'' if dev.queues == 1 else 's'}{pairs} (domain XML)"
    if dev.kind in ("virtio-blk", "vhost-user-blk"):
        return f"queues: QEMU's default, one per vCPU ({vcpus})"
    return "queues: QEMU's default"


def _shadow_note(dev: XmlDevice) -> str:
    if dev.backend == "vhost-user":
        return SHADOW_NOTE_VHOST_USER
    if dev.backend == "vhost":
        return SHADOW_NOTE_KERNEL
    return SHADOW_NOTE_PLAIN


def device_view(
    domain: DomainXML,
    dev: XmlDevice,
    *,
    active: bool,
    qmp: bool,
    state: DeviceState | None,
    qmp_error: str | None = None,
) -> DeviceView:
    """One device row: the XML's facts, and QEMU's state when polled."""
    where = f"<{dev.element}>" + (f" {dev.target}" if dev.target else "")
    if dev.source:
        where += f" from {dev.source}"
    notes = [f"domain XML: {where}, alias {dev.alias or '(none until started)'}"]
    if dev.socket_path:
        notes.append(f"vhost-user socket: {dev.socket_path} ({dev.socket_mode or 'client'})")
    notes.append(queue_text(dev, domain.vcpus))
    status = "running" if active else "inactive"
    backend = {"vhost-user": "vhost-user back-end", "vhost": "kernel vhost"}.get(dev.backend)
    if backend:
        status += f", {backend}"
    queues: tuple[Any, ...] = ()
    vhost_started: bool | None = None
    features: str | None = None
    protocol: str | None = None
    log_enabled: bool | None = None
    if not qmp:
        notes.append(NOTE_QMP_OFF)
    elif state is not None:
        notes.append(NOTE_QMP_ON)
        if state.vhost_capable:
            notes.append(NOTE_RING_VHOST)
        queues = queue_views(state)
        vhost_started = state.vhost_started
        st: Mapping[str, Any] = state.status or {}
        vhost_dev = st.get("vhost-dev")
        if isinstance(vhost_dev, Mapping):
            features = " ".join(feature_names(vhost_dev.get("acked-features"))) or None
            protocol = " ".join(feature_names(vhost_dev.get("protocol-features"))) or None
            log = vhost_dev.get("log-enabled")
            log_enabled = log if isinstance(log, bool) else None
        else:
            features = " ".join(feature_names(st.get("guest-features"))) or None
        if state.error:
            status += f"; {state.error}"
        elif vhost_started:
            status += ", vhost started"
    elif active:
        status += f"; not seen by QEMU's monitor{f' ({qmp_error})' if qmp_error else ''}"
    notes.append(NOTE_COUNTS)
    return DeviceView(
        key=device_key(domain.name, dev),
        name=dev.label,
        kind=dev.kind,
        source=KIND,
        connected=active,
        status=status,
        shadow_via=ShadowVia.NONE,
        shadow_note=_shadow_note(dev),
        queues=queues,
        socket_path=os.path.abspath(dev.socket_path) if dev.socket_path else None,
        role=DeviceRole.DESCRIBES,
        qom_path=dev.qom_path,
        vhost_started=vhost_started,
        features=features,
        protocol_features=protocol,
        log_enabled=log_enabled,
        notes=tuple(notes),
        real=True,
    )


def migration_view(stats: Mapping[str, Any], status: str) -> MigrationView:
    """A job's statistics (``dom.jobStats()`` or JOB_COMPLETED) as the model's record."""

    def num(key: str) -> int | None:
        value = stats.get(key)
        return value if isinstance(value, int) else None

    return MigrationView(
        status=status,
        passes=num("memory_iteration"),
        transferred=num("data_processed"),
        remaining=num("data_remaining"),
        total=num("data_total"),
        downtime_ms=num("downtime"),
        total_time_ms=num("time_elapsed"),
    )


def state_text(state: int, taints: Sequence[str], qmp: bool) -> str:
    text = STATES.get(state, f"state {state}")
    if taints:
        text += "; tainted: " + ", ".join(taints)
    elif qmp and state in ACTIVE_STATES:
        text += "; not tainted yet"
    else:
        text += "; not tainted"
    return text


def vm_view(
    domain: DomainXML,
    devices: tuple[DeviceView, ...],
    *,
    state: int,
    status: str,
    pid: int | None,
    cpu: float | None,
    rss: int | None,
    migration: MigrationView | None,
) -> VMView:
    return VMView(
        key=f"libvirt:{domain.uuid}",
        name=domain.name,
        source=KIND,
        devices=devices,
        connected=state in ACTIVE_STATES,
        status=status,
        pid=pid,
        cpu_percent=cpu,
        rss_bytes=rss,
        migration=migration,
        label="libvirt",
        role=VMRole.MANAGES,
    )
