"""``svqtui --replay PATH --once`` and ``--replay PATH --log``: what the live
batch modes print (svqtui.batch, svqtui.outputs), from a recording.

``--at`` picks the frame recorded nearest that many seconds after the first
(``--once``), or where ``--log`` starts. A damaged recording prints one line
on stderr and the frames before the damage.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from typing import TextIO

from svqtui.batch import write_log, write_once
from svqtui.model import Snapshot
from svqtui.outputs import SnapshotOutput
from svqtui.recording.errors import RecordingDamaged, RecordingError
from svqtui.recording.reader import Recording

_AT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h)?\s*$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class BadTime(RecordingError):
    """``--at`` is not a time (12.5, 12.5s, 2m, 1h)."""


def parse_at(text: str) -> float:
    """Seconds from ``12.5``, ``12.5s``, ``1500ms``, ``2m``, ``1h``."""
    found = _AT.match(text)
    if found is None:
        raise BadTime(f"--at {text!r}: expected seconds into the recording (12.5, 12.5s, 2m)")
    return float(found[1]) * _UNITS[found[2] or "s"]


def _warn(recording: Recording, err: TextIO) -> None:
    if recording.damage:
        err.write(f"svqtui: replay: {recording.damage}; replaying up to there\n")
        err.flush()


def replay_once(
    recording: Recording,
    output: SnapshotOutput,
    at_s: float = 0.0,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """The frame recorded nearest ``at_s``, as ``--once`` prints a snapshot."""
    _warn(recording, err)
    index = recording.nearest(at_s)
    while True:
        try:
            snap = recording.frame(index).snapshot
            break
        except RecordingDamaged as damage:
            if index == 0:
                raise
            err.write(f"svqtui: replay: {damage}; showing the frame before it\n")
            index -= 1
    return write_once(output, snap, out)


def replay_log(
    recording: Recording,
    output: SnapshotOutput,
    at_s: float = 0.0,
    count: int | None = None,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> int:
    """Every frame from ``at_s`` on, as ``--log`` prints them, without waiting."""
    _warn(recording, err)
    start = recording.nearest(at_s)

    def frames() -> Iterator[Snapshot]:
        for i in range(start, len(recording)):
            try:
                yield recording.frame(i).snapshot
            except RecordingDamaged as damage:
                err.write(f"svqtui: replay: {damage}; replaying up to there\n")
                return

    snaps = frames()
    first = next(snaps, None)
    if first is None:
        raise RecordingError(f"{recording.path}: no frame to print")

    def with_first() -> Iterator[Snapshot]:
        yield first
        yield from snaps

    return write_log(output, first, with_first(), count, out)
