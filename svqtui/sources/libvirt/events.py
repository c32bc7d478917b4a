"""libvirt's event loop and the domain events the libvirt source listens to.

``bindings()`` imports the libvirt module once, silences libvirt's default
error printer (errors are reported by the source, not on the terminal) and
starts libvirt's default event loop: ``virEventRegisterDefaultImpl`` (before
any connection is opened, so that connections get keepalives, the close
callback and events) and one daemon thread, ``svqtui-libvirt-events``, running
``virEventRunDefaultImpl`` for the life of the process (libvirt offers no way
to unregister the default loop; the thread only sleeps in poll()).

``DomainEvents`` registers the lifecycle, device and migration callbacks on a
connection; each callback (on the event thread) turns libvirt's codes into a
``DomainEvent`` and hands it to the source's sink, which must not block.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from svqtui.sources.libvirt.errors import LibvirtUnavailable

INSTALL_HINT = (
    "install the libvirt Python bindings: apt install python3-libvirt, or"
    " pip install 'svqtui[libvirt]' (builds against libvirt-dev with pkg-config)"
)

LIFECYCLE = {
    0: "defined",
    1: "undefined",
    2: "started",
    3: "suspended",
    4: "resumed",
    5: "stopped",
    6: "shut down",
    7: "PM-suspended",
    8: "crashed",
}
DETAIL = {
    2: {0: "booted", 1: "migrated", 2: "restored", 3: "from snapshot", 4: "wakeup"},
    3: {0: "paused", 1: "migrated", 2: "I/O error", 3: "watchdog", 4: "restored",
        5: "from snapshot", 6: "API error", 7: "post-copy", 8: "post-copy failed"},
    4: {0: "unpaused", 1: "migrated", 2: "from snapshot", 3: "post-copy", 4: "post-copy failed"},
    5: {0: "shutdown", 1: "destroyed", 2: "crashed", 3: "migrated", 4: "saved", 5: "failed",
        6: "from snapshot"},
}  # fmt: skip

_lock = threading.Lock()
_module: Any = None
_loop_thread: threading.Thread | None = None


def bindings() -> Any:
    """The libvirt module, its event loop running; ``LibvirtUnavailable`` when
    the bindings are not installed."""
    global _module, _loop_thread
    with _lock:
        if _module is not None:
            return _module
        try:
            import libvirt
        except ImportError as err:
            raise LibvirtUnavailable(f"libvirt: Python bindings missing ({INSTALL_HINT})") from err
        libvirt.registerErrorHandler(lambda _ctx, _err: None, None)
        libvirt.virEventRegisterDefaultImpl()
        _loop_thread = threading.Thread(
            target=_run_loop, args=(libvirt,), name="svqtui-libvirt-events", daemon=True
        )
        _loop_thread.start()
        _module = libvirt
        return libvirt


def _run_loop(libvirt: Any) -> None:
    while True:
        try:
            libvirt.virEventRunDefaultImpl()
        except Exception:  # one bad iteration must not end the loop for the process
            time.sleep(0.1)


def qemu_bindings() -> Any:
    """The libvirt_qemu module (monitor pass-through)."""
    bindings()
    try:
        import libvirt_qemu
    except ImportError as err:  # pragma: no cover - shipped with libvirt
        raise LibvirtUnavailable(f"libvirt: libvirt_qemu missing ({INSTALL_HINT})") from err
    return libvirt_qemu


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One event of one domain, as the source logs it."""

    at: float  # time.monotonic() on arrival
    domain: str
    uuid: str
    kind: str  # "lifecycle", "device-added", "device-removed", "migration", "job"
    text: str  # "suspended (paused)", "migration pass 3", ...
    lifecycle: int | None = None  # libvirt's VIR_DOMAIN_EVENT_* code for lifecycle events
    stats: dict[str, Any] | None = None  # a completed job's statistics (kind "job")


def lifecycle_text(event: int, detail: int) -> str:
    name = LIFECYCLE.get(event, f"event {event}")
    why = DETAIL.get(event, {}).get(detail)
    return f"{name} ({why})" if why else name


Sink = Callable[[DomainEvent], None]


class DomainEvents:
    """The domain callbacks of one connection, feeding ``sink``."""

    def __init__(self, libvirt: Any, conn: Any, sink: Sink) -> None:
        self._libvirt = libvirt
        self._conn = conn
        self._sink = sink
        self._ids: list[int] = []
        lv = libvirt
        callbacks: tuple[tuple[int, Callable[..., None]], ...] = (
            (lv.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._lifecycle),
            (lv.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED, self._device_added),
            (lv.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED, self._device_removed),
            (lv.VIR_DOMAIN_EVENT_ID_MIGRATION_ITERATION, self._migration_iteration),
            (lv.VIR_DOMAIN_EVENT_ID_JOB_COMPLETED, self._job_completed),
        )
        for event_id, callback in callbacks:
            self._ids.append(conn.domainEventRegisterAny(None, event_id, callback, None))

    def close(self) -> None:
        """Deregister (a dead connection has nothing to deregister)."""
        ids, self._ids = self._ids, []
        for cb_id in ids:
            with contextlib.suppress(self._libvirt.libvirtError):
                self._conn.domainEventDeregisterAny(cb_id)

    def _emit(
        self,
        dom: Any,
        kind: str,
        text: str,
        lifecycle: int | None = None,
        stats: dict[str, Any] | None = None,
    ) -> None:
        try:
            name, uuid = dom.name(), dom.UUIDString()
        except self._libvirt.libvirtError:
            name, uuid = "?", ""
        self._sink(DomainEvent(time.monotonic(), name, uuid, kind, text, lifecycle, stats))

    def _lifecycle(self, _conn: Any, dom: Any, event: int, detail: int, _opaque: Any) -> None:
        self._emit(dom, "lifecycle", lifecycle_text(event, detail), event)

    def _device_added(self, _conn: Any, dom: Any, alias: str, _opaque: Any) -> None:
        self._emit(dom, "device-added", f"device {alias} added")

    def _device_removed(self, _conn: Any, dom: Any, alias: str, _opaque: Any) -> None:
        self._emit(dom, "device-removed", f"device {alias} removed")

    def _migration_iteration(self, _conn: Any, dom: Any, iteration: int, _opaque: Any) -> None:
        self._emit(dom, "migration", f"migration pass {iteration}")

    def _job_completed(self, _conn: Any, dom: Any, params: dict[str, Any], _opaque: Any) -> None:
        self._emit(dom, "job", f"job completed: {job_summary(params)}", stats=dict(params))


MIGRATION_OPERATIONS = (4, 5)  # VIR_DOMAIN_JOB_OPERATION_MIGRATION_IN, _OUT


def is_migration(stats: dict[str, Any]) -> bool:
    return stats.get("operation") in MIGRATION_OPERATIONS


def job_summary(stats: dict[str, Any]) -> str:
    """One line from a jobStats()/JOB_COMPLETED record."""
    parts = []
    op = stats.get("operation")
    if isinstance(op, int):
        parts.append(
            {0: "", 4: "incoming migration", 5: "outgoing migration"}.get(op, f"operation {op}")
        )
    total = stats.get("time_elapsed")
    if isinstance(total, int):
        parts.append(f"{total} ms")
    done = stats.get("data_processed")
    if isinstance(done, int):
        parts.append(f"{done / 2**20:.1f} MiB moved")
    downtime = stats.get("downtime")
    if isinstance(downtime, int):
        parts.append(f"downtime {downtime} ms")
    return ", ".join(p for p in parts if p) or "done"
