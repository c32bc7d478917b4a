"""Batch modes for scripts: ``--once`` (one snapshot) and ``--log`` (one
rendering per refresh, like ``kvm_stat -l``), in any registered output format
(svqtui.outputs: table, json, log, csv, wire). Batch reads the monitor's own
snapshots (docs/design.md#data-flow); it never refreshes on its own.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable
from typing import TextIO

from svqtui.errors import SvqtuiError
from svqtui.model import Snapshot
from svqtui.monitor import Monitor
from svqtui.outputs import SnapshotOutput
from svqtui.runtime import Runtime

WAIT_SLACK_S = 5.0  # beyond the refresh interval, before the monitor counts as stalled
ANSWER_WAIT_S = 5.0  # how long the first snapshot waits for sources still starting


class MonitorStalled(SvqtuiError):
    """The monitor published no snapshot in time."""


def first_rated(
    monitor: Monitor, refresh_s: float, answer_wait_s: float = ANSWER_WAIT_S
) -> Snapshot:
    """The first snapshot with rates (the monitor's second refresh) in which
    every source has answered (SourceStatus.answered: libvirt connected or
    said why not), waiting at most ``answer_wait_s`` for that: a source that
    is still starting then shows as such."""
    budget = refresh_s * 2 + WAIT_SLACK_S
    snap = monitor.wait_newer(1, budget)
    if snap is None:
        raise MonitorStalled(f"no snapshot within {budget:g}s")
    deadline = time.monotonic() + answer_wait_s
    while not all(s.answered for s in snap.sources) and time.monotonic() < deadline:
        newer = monitor.wait_newer(monitor.seq, budget)
        if newer is None:
            raise MonitorStalled(f"no snapshot within {budget:g}s")
        snap = newer
    return snap


def write_once(output: SnapshotOutput, snap: Snapshot, out: TextIO = sys.stdout) -> int:
    """``snap`` as ``--once`` prints it (a header, if the output has one, then it)."""
    header = output.begin(snap)
    if header is not None:
        out.write(header + "\n")
    out.write(output.render(snap) + "\n")
    return 0


def write_log(
    output: SnapshotOutput,
    first: Snapshot,
    snaps: Iterable[Snapshot],
    count: int | None = None,
    out: TextIO = sys.stdout,
) -> int:
    """``--log``: the header ``first`` decides, then one rendering per snapshot
    of ``snaps`` (``count`` of them at most)."""
    header = output.begin(first)
    if header is not None:
        out.write(header + "\n")
        out.flush()
    for n, snap in enumerate(snaps):
        if count is not None and n >= count:
            break
        out.write(output.render(snap) + "\n")
        out.flush()
    return 0


def run_once(runtime: Runtime, output: SnapshotOutput, out: TextIO = sys.stdout) -> int:
    """Print the first snapshot with rates in ``output``'s format."""
    return write_once(output, first_rated(runtime.monitor, runtime.config.refresh_s), out)


def run_log(
    runtime: Runtime, output: SnapshotOutput, count: int | None = None, out: TextIO = sys.stdout
) -> int:
    """One rendering per refresh (``count`` of them, or until interrupted)."""
    monitor = runtime.monitor
    first = first_rated(runtime.monitor, runtime.config.refresh_s)

    def newer() -> Iterable[Snapshot]:
        seq = monitor.seq
        while True:
            snap = monitor.wait_newer(seq, runtime.config.refresh_s + WAIT_SLACK_S)
            if snap is None:
                raise MonitorStalled("the monitor stopped refreshing")
            seq = monitor.seq
            yield snap

    return write_log(output, first, newer(), count, out)
