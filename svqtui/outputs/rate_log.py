"""The rate lines of ``--log``: a header, then kick/s and call/s per device
each refresh (like ``kvm_stat -l``), as aligned text or CSV."""

from __future__ import annotations

import time

from svqtui.model import Snapshot
from svqtui.outputs.base import SnapshotOutput, register


def log_columns(snap: Snapshot) -> list[tuple[str, str, str]]:
    """(label, device key, "kick"|"call") per column: the devices that count."""
    cols = []
    for vm in snap.vms:
        for dev in vm.devices:
            if any(q.kicks is not None for q in dev.queues):
                label = f"{vm.name}/{dev.name}"
                cols.append((f"{label}:kick/s", dev.key, "kick"))
                cols.append((f"{label}:call/s", dev.key, "call"))
    return cols


@register("log")
class RateLogOutput(SnapshotOutput):
    """Columns are fixed by the first snapshot, so every line lines up."""

    summary = "kick/s and call/s per device, one aligned line per refresh"
    streaming = True
    separator = "  "

    def __init__(self) -> None:
        self.columns: list[tuple[str, str, str]] = []
        self.widths: list[int] = []

    def begin(self, first: Snapshot) -> str:
        self.columns = log_columns(first)
        labels = ["time", *[c[0] for c in self.columns]]
        self.widths = [max(len(label), 10) for label in labels]
        return self._line(labels)

    def render(self, snap: Snapshot) -> str:
        values = [time.strftime("%H:%M:%S", time.localtime(snap.taken_at))]
        for _, key, what in self.columns:
            rows = snap.rows_of(key)
            rate = sum(r.kick_rate if what == "kick" else r.call_rate for r in rows)
            values.append(f"{rate:.1f}")
        return self._line(values)

    def _line(self, values: list[str]) -> str:
        return self.separator.join(v.rjust(w) for v, w in zip(values, self.widths, strict=True))


@register("csv")
class CsvLogOutput(RateLogOutput):
    summary = "the --log columns as comma-separated values"

    def _line(self, values: list[str]) -> str:
        return ",".join(values)
