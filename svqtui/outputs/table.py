"""The plain-text queue table of ``--once`` and ``svqtui ctl status``: the
last column is the stuck verdict followed by the diagnosis (svqtui.diagnosis).

Every line is made safe for the terminal (``svqtui.text_safety``): the
snapshot may come from another process over the control socket, and names
and statuses quote peers."""

from __future__ import annotations

from svqtui.model import Snapshot
from svqtui.outputs.base import SnapshotOutput, register
from svqtui.text_safety import safe_text

MAX_LINE = 4000


def _fmt(value: int | float | None, width: int) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:{width}.1f}"
    return f"{value:{width}d}"


def format_table(snap: Snapshot) -> str:
    """A plain-text queue table, one line per queue (--once, ctl status)."""
    header = (
        f"{'VM':<14} {'DEVICE':<16} {'Q':>3} {'KICKS':>10} {'CALLS':>10} "
        f"{'KICK/S':>9} {'CALL/S':>9} {'MASK':<8} {'SHADOW':<6} {'AVAIL':>6} {'USED':>6}  STUCK"
    )
    lines = [header]
    for vm in snap.vms:
        if not vm.devices:
            lines.append(f"{vm.name[:14]:<14} ({vm.status or 'no devices'})")
        for dev in vm.devices:
            if not dev.queues:
                lines.append(
                    f"{vm.name[:14]:<14} {dev.name[:16]:<16} ({dev.status or 'no queues'})"
                )
            for q in dev.queues:
                row = snap.rows.get(f"{dev.key}#{q.index}")
                stuck = (row.stuck if row else None) or ""
                diagnosis = row.diagnosis if row else None
                if diagnosis:
                    stuck = f"{stuck}: {diagnosis}" if stuck else diagnosis
                lines.append(
                    f"{vm.name[:14]:<14} {dev.name[:16]:<16} {q.index:>3} "
                    f"{_fmt(q.kicks, 10)} {_fmt(q.calls, 10)} "
                    f"{_fmt(row.kick_rate if row else None, 9)} "
                    f"{_fmt(row.call_rate if row else None, 9)} "
                    f"{(q.mask.value if q.mask else '-'):<8} {('on' if q.shadow else 'off'):<6} "
                    f"{_fmt(q.avail_idx, 6)} {_fmt(q.used_idx, 6)}  {stuck}"
                )
    status = ", ".join(
        f"{s.name}: {'ok' if s.connected else 'down'}{' (' + s.message + ')' if s.message else ''}"
        for s in snap.sources
    )
    lines.append(
        f"engine {'alive' if snap.engine.alive else 'DOWN'}, "
        f"{snap.engine.relays_per_s:.0f} relays/s, "
        f"{snap.engine.queues} queues; sources: {status or 'none'}"
    )
    return "\n".join(safe_text(line, MAX_LINE) for line in lines)


@register("table")
class TableOutput(SnapshotOutput):
    summary = "a table, one line per queue"

    def render(self, snap: Snapshot) -> str:
        return format_table(snap)
