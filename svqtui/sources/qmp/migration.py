"""Live migration and VM life-cycle as QMP reports them: ``query-migrate``
replies into ``MigrationView``, and QMP events into event-log lines.

Pure functions; the session polls and listens. QEMU sends MIGRATION events
only when the migration's ``events`` capability is on (libvirt turns it on;
svqtui never changes a VM's migration settings), so the session also polls
``query-migrate``: every round while a migration runs, every few seconds
otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from svqtui.model import MigrationView

#: The events a session subscribes to.
EVENTS = ("MIGRATION", "MIGRATION_PASS", "STOP", "RESUME", "DEVICE_DELETED", "SHUTDOWN")

#: MigrationStatus values during which query-migrate is polled every round.
RUNNING = frozenset(
    {
        "setup",
        "active",
        "pre-switchover",
        "device",
        "wait-unplug",
        "postcopy-active",
        "postcopy-paused",
        "postcopy-recover",
        "cancelling",
        "colo",
    }
)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def migration_view(reply: object, passes: int | None = None) -> MigrationView | None:
    """A query-migrate reply as a MigrationView; None when no migration ran.

    ``passes`` (from MIGRATION_PASS events) is used when the reply has no
    ``ram.dirty-sync-count``.
    """
    if not isinstance(reply, Mapping):
        return None
    status = reply.get("status")
    if not isinstance(status, str) or status == "none":
        return None
    ram = reply.get("ram")
    ram = ram if isinstance(ram, Mapping) else {}
    downtime = _int(reply.get("downtime"))
    if downtime is None:
        downtime = _int(reply.get("expected-downtime"))
    sync = _int(ram.get("dirty-sync-count"))
    return MigrationView(
        status=status,
        passes=sync if sync is not None else passes,
        transferred=_int(ram.get("transferred")),
        remaining=_int(ram.get("remaining")),
        total=_int(ram.get("total")),
        downtime_ms=downtime,
        total_time_ms=_int(reply.get("total-time")),
    )


def is_running(view: MigrationView | None) -> bool:
    return view is not None and view.status in RUNNING


def event_line(event: Mapping[str, Any]) -> tuple[str, str] | None:
    """(level, text) for the event log, or None for events not worth a line."""
    name = event.get("event")
    data = event.get("data")
    data = data if isinstance(data, Mapping) else {}
    if name == "MIGRATION":
        status = data.get("status", "?")
        level = "error" if status == "failed" else "info"
        return level, f"migration {status}"
    if name == "MIGRATION_PASS":
        return "info", f"migration pass {data.get('pass', '?')}"
    if name == "STOP":
        return "info", "VM paused (STOP)"
    if name == "RESUME":
        return "info", "VM resumed (RESUME)"
    if name == "DEVICE_DELETED":
        what = data.get("device") or data.get("path", "?")
        return "info", f"device {what} deleted"
    if name == "SHUTDOWN":
        reason = data.get("reason", "?")
        return "warning", f"QEMU is shutting down ({reason})"
    return None
