"""The lab's source: the lab VM as one row that follows it across migrations.

``LabSource`` watches each lab QEMU over QMP while that QEMU runs (one
``QMPSource`` per attached slot, with quick reconnects) and presents it under
a stable key: the QEMU the guest currently runs in is ``lab:vm``, named
``lab@<slot>``, so a console selection of the VM stays on it through a
migration while its name tells where it runs; a destination being migrated to
(labelled ``incoming``) or a source about to quit (``outgoing``) shows as its
own row meanwhile. Devices
are the QMP source's own (the monitor joins each with its interposer device
by the vhost-user socket path, so their counters come from the engine).

The VM's status line starts with the guest's health from ``GuestWatch``
("guest: 1234 I/O verified, heartbeat 0.4s ago"), which a thread of this
source keeps reading from the serial log; a failure line goes to the event
log as an error. After a migration the VM shows the lab's own figures of the
last one (query-migrate of the source: total time, downtime), which the
destination's QMP cannot tell.
"""

from __future__ import annotations

import dataclasses
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from svqtui.engine import EngineSnapshot, Link
from svqtui.lab.guest_watch import GuestWatch, status_text
from svqtui.lab.layout import QMP_POLL_S, Slot
from svqtui.model import MigrationView, SourceKind, SourceStatus, VMView
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.errors import UnknownDevice
from svqtui.sources.qmp.session import Timing
from svqtui.sources.qmp.settings import QMPConfig, QMPSocket
from svqtui.sources.qmp.source import QMPSource

NAME = "lab"  # short: the queue table shows "lab@a/vblk0 #0" uncut
VM_KEY = "lab:vm"
WATCH_INTERVAL_S = 0.1


class Role(enum.StrEnum):
    """What a lab QEMU is doing."""

    CURRENT = "current"  # the guest runs here
    INCOMING = "incoming"  # waiting for (or receiving) a migration
    OUTGOING = "outgoing"  # migrated away, about to quit


@dataclass(frozen=True, slots=True)
class _Attached:
    slot: Slot
    qmp: QMPSource
    role: Role


def qmp_timing(poll_s: float = QMP_POLL_S) -> Timing:
    """Lab QEMUs come and go on purpose: reconnect quickly, never back off long."""
    return Timing(poll_s=poll_s, backoff_first_s=0.1, backoff_cap_s=1.0, topology_every_s=2.0)


class LabSource(Source):
    """The lab VM, wherever it runs, with its guest's health."""

    kind = SourceKind.QMP
    name = "lab"

    def __init__(
        self,
        guest: GuestWatch,
        *,
        poll_s: float = QMP_POLL_S,
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        self.guest = guest
        self.poll_s = poll_s
        self.on_tick = on_tick  # called from the watch thread after each poll
        self.last_migration: MigrationView | None = None
        self._ctx: SourceContext | None = None
        self._attached: dict[str, _Attached] = {}  # replaced, never mutated
        self._lock = threading.Lock()  # attach/detach/roles (collect reads without it)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- Source ----------------------------------------------------------------------

    def start(self, ctx: SourceContext) -> None:
        self._ctx = ctx
        self.guest.log = ctx.log
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, name="svqtui-lab-guest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with self._lock:
            attached, self._attached = self._attached, {}
        for a in attached.values():
            a.qmp.stop()
        self._ctx = None

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        attached = self._attached
        guest = status_text(self.guest.state, time.monotonic())
        views: list[VMView] = []
        for a in attached.values():
            for view in a.qmp.collect(engine):
                views.append(self._present(a, view, guest))
        return views

    def status(self) -> SourceStatus:
        current = self.current
        guest = status_text(self.guest.state, time.monotonic())
        if current is None:
            return SourceStatus(self.name, self.kind, False, f"no lab VM running; {guest}")
        up = current.qmp.status().connected
        return SourceStatus(self.name, self.kind, up, f"on slot {current.slot.name}; {guest}")

    def owns(self, device_key: str) -> bool:
        return any(a.qmp.owns(device_key) for a in self._attached.values())

    def _owner(self, device_key: str) -> QMPSource:
        for a in self._attached.values():
            if a.qmp.owns(device_key):
                return a.qmp
        raise UnknownDevice(f"lab: no device {device_key!r} (has its QEMU quit?)")

    def set_shadow(self, device_key: str, on: bool) -> None:
        self._owner(device_key).set_shadow(device_key, on)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        self._owner(device_key).set_masked(device_key, queue, masked)

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        self._owner(device_key).inject(device_key, queue, link)

    def reset(self, device_key: str | None = None) -> None:
        """QMP devices have no counters: nothing to zero."""

    # -- the lab's side (the lab thread) -------------------------------------------------

    @property
    def current(self) -> _Attached | None:
        return next((a for a in self._attached.values() if a.role is Role.CURRENT), None)

    def attach(self, slot: Slot, role: Role) -> None:
        """Watch the QEMU on ``slot`` over its svqtui QMP socket."""
        ctx = self._ctx
        if ctx is None:
            raise UnknownDevice("lab: the source is not started")
        config = QMPConfig(
            sockets=(QMPSocket(str(slot.svqtui_qmp), name=slot.vm_name),),
            discover=False,
            poll_s=self.poll_s,
        )
        qmp = QMPSource(config, timing=qmp_timing(self.poll_s))
        qmp.start(ctx)
        with self._lock:
            old = self._attached.get(slot.name)
            self._attached = {**self._attached, slot.name: _Attached(slot, qmp, role)}
        if old is not None:
            old.qmp.stop()

    def set_role(self, slot: Slot, role: Role) -> None:
        with self._lock:
            a = self._attached.get(slot.name)
            if a is not None:
                self._attached = {**self._attached, slot.name: dataclasses.replace(a, role=role)}

    def detach(self, slot: Slot) -> None:
        """Stop watching ``slot`` (before its QEMU quits, so no disconnect is reported)."""
        with self._lock:
            attached = dict(self._attached)
            a = attached.pop(slot.name, None)
            self._attached = attached
        if a is not None:
            a.qmp.stop()

    # -- internals ---------------------------------------------------------------------

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL_S):
            try:
                self.guest.poll()
                self.on_tick()
            except OSError as err:
                if self._ctx is not None:
                    self._ctx.log.error(f"lab: cannot read the guest's serial log: {err}")
                self._stop.wait(5.0)

    def _present(self, a: _Attached, view: VMView, guest: str) -> VMView:
        if a.role is Role.CURRENT:
            migration = view.migration
            last = self.last_migration
            if last is not None and (migration is None or migration.status == "completed"):
                migration = last  # the destination's query-migrate has no figures
            return dataclasses.replace(
                view,
                key=VM_KEY,
                name=f"{NAME}@{a.slot.name}",
                label="",
                status=f"{guest} | {view.status}" if view.status else guest,
                migration=migration,
            )
        return dataclasses.replace(
            view,
            key=f"{VM_KEY}@{a.slot.name}",
            name=f"{NAME}@{a.slot.name}",
            label=a.role.value,
        )
