"""Batch modes for scripts: ``--once`` (one snapshot) and ``--log`` (one
rendering per refresh, like ``kvm_stat -l``), in any registered output format
(svqtui.outputs: table, json, log, csv, wire). Batch reads the monitor's own
snapshots (docs/design.md#data-flow); it never refreshes on its own.
"""

from __future__ import annotations

import sys
from typing import TextIO

from svqtui.errors import SvqtuiError
from svqtui.model import Snapshot
from svqtui.outputs import SnapshotOutput
from svqtui.runtime import Runtime

WAIT_SLACK_S = 5.0  # beyond the refresh interval, before the monitor counts as stalled


class MonitorStalled(SvqtuiError):
    """The monitor published no snapshot in time."""


def first_rated(runtime: Runtime) -> Snapshot:
    """The first snapshot with rates (the monitor's second refresh)."""
    monitor = runtime.monitor
    snap = monitor.wait_newer(1, runtime.config.refresh_s * 2 + WAIT_SLACK_S)
    if snap is None:
        raise MonitorStalled(f"no snapshot within {runtime.config.refresh_s * 2 + WAIT_SLACK_S:g}s")
    return snap


def run_once(runtime: Runtime, output: SnapshotOutput, out: TextIO = sys.stdout) -> int:
    """Print the first snapshot with rates in ``output``'s format."""
    snap = first_rated(runtime)
    header = output.begin(snap)
    if header is not None:
        out.write(header + "\n")
    out.write(output.render(snap) + "\n")
    return 0


def run_log(
    runtime: Runtime, output: SnapshotOutput, count: int | None = None, out: TextIO = sys.stdout
) -> int:
    """One rendering per refresh (``count`` of them, or until interrupted)."""
    monitor = runtime.monitor
    snap = first_rated(runtime)
    seq = monitor.seq
    header = output.begin(snap)
    if header is not None:
        out.write(header + "\n")
        out.flush()
    n = 0
    while count is None or n < count:
        newer = monitor.wait_newer(seq, runtime.config.refresh_s + WAIT_SLACK_S)
        if newer is None:
            raise MonitorStalled("the monitor stopped refreshing")
        snap, seq = newer, monitor.seq
        out.write(output.render(snap) + "\n")
        out.flush()
        n += 1
    return 0
