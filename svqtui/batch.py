"""Batch modes for scripts: ``--once`` (one snapshot) and ``--log`` (a line per
interval, like ``kvm_stat -l``), as text, JSON or CSV."""

from __future__ import annotations

import json
import sys
import time
from typing import TextIO

from svqtui.model import Snapshot
from svqtui.runtime import Runtime


def _fmt(value: int | float | None, width: int) -> str:
    if value is None:
        return "-".rjust(width)
    if isinstance(value, float):
        return f"{value:{width}.1f}"
    return f"{value:{width}d}"


def format_table(snap: Snapshot) -> str:
    """A plain-text queue table, one line per queue, for --once."""
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
    return "\n".join(lines)


def run_once(runtime: Runtime, as_json: bool, out: TextIO = sys.stdout) -> int:
    """Print one snapshot taken one refresh interval after start."""
    runtime.monitor.refresh()
    time.sleep(runtime.config.refresh_s)
    snap = runtime.monitor.refresh()
    if as_json:
        json.dump(snap.to_json(), out, indent=2)
        out.write("\n")
    else:
        out.write(format_table(snap) + "\n")
    return 0


def _log_columns(snap: Snapshot) -> list[tuple[str, str, str]]:
    """(label, device key, field) per column: kick/s and call/s per device."""
    cols = []
    for vm in snap.vms:
        for dev in vm.devices:
            if any(q.kicks is not None for q in dev.queues):
                label = f"{vm.name}/{dev.name}"
                cols.append((f"{label}:kick/s", dev.key, "kick"))
                cols.append((f"{label}:call/s", dev.key, "call"))
    return cols


def run_log(
    runtime: Runtime, as_csv: bool, count: int | None = None, out: TextIO = sys.stdout
) -> int:
    """One line per interval: the rate of kicks and calls of each device."""
    snap = runtime.monitor.refresh()
    cols = _log_columns(snap)
    sep = "," if as_csv else "  "
    labels = ["time", *[c[0] for c in cols]]
    widths = [max(len(label), 10) for label in labels]

    def line(values: list[str]) -> str:
        if as_csv:
            return sep.join(values)
        return sep.join(v.rjust(w) for v, w in zip(values, widths, strict=True))

    out.write(line(labels) + "\n")
    out.flush()
    n = 0
    while count is None or n < count:
        time.sleep(runtime.config.refresh_s)
        snap = runtime.monitor.refresh()
        values = [time.strftime("%H:%M:%S", time.localtime(snap.taken_at))]
        for _, key, what in cols:
            rows = snap.rows_of(key)
            rate = sum(r.kick_rate if what == "kick" else r.call_rate for r in rows)
            values.append(f"{rate:.1f}")
        out.write(line(values) + "\n")
        out.flush()
        n += 1
    return 0
