"""The recording file format, version 1 (docs/design.md#data-flow).

A recording is one file a person can copy off the host::

    MAGIC                        b"SVQTUI-REC\\n"
    header length (u32 LE) + header (UTF-8 JSON: format, version, host,
                                     cause, created, svqtui, key_every...)
    records...

Each record is ``kind (1 byte) | payload length (u32) | time (f64) | crc32
(u32)`` then the payload; the CRC covers the first three fields and the
payload, so a torn or corrupt record is found and reading stops there. Kinds:

- ``K`` a key frame: zlib(JSON ``{"snap": wire}``), ``wire`` being the lossless
  form of svqtui.control.codec (every field the console shows);
- ``D`` a delta frame: zlib(JSON ``{"patch": patch}``) against the frame before
  (svqtui.recording.delta), None when nothing changed;
- ``E`` the log events of the interval that ends at the next frame:
  zlib(JSON ``{"events": [...]}``).

A key frame starts every file, and comes again once the deltas since the
last one add up to its size (or after ``key_every`` frames), so a reader
seeks by decoding at most about two key frames' worth of JSON. Versioning: a reader skips
record kinds and JSON keys it does not know (a later minor addition), and
refuses a header whose ``version`` is above ``VERSION`` (an incompatible one).
Why a compressed stream rather than SQLite: one append per refresh with no
page writes or journal, a file that is valid up to its last whole record when
the writer dies (a truncated SQLite file is not), and deltas that shrink a
1,024-queue snapshot to a few hundred bytes (README: Flight recorder).
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass
from typing import Any

from svqtui.control.codec import encode_event, encode_snapshot
from svqtui.model import LogEvent, Snapshot
from svqtui.recording import delta

MAGIC = b"SVQTUI-REC\n"
FORMAT_NAME = "svqtui-recording"
VERSION = 1
KEY_EVERY = 30  # frames between key frames (a seek decodes at most this many deltas)
ZLIB_LEVEL = 6
RECORD = struct.Struct("<cId")  # kind, payload length, time
CRC = struct.Struct("<I")
HEADER_LEN = struct.Struct("<I")
MAX_PAYLOAD = 256 * 1024 * 1024
MAX_HEADER = 1024 * 1024

KEY = b"K"
DELTA = b"D"
EVENTS = b"E"


def _dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


def file_header(meta: dict[str, Any]) -> bytes:
    """The magic and the header of a new recording (``meta`` goes into it)."""
    body = _dumps({"format": FORMAT_NAME, "version": VERSION, "key_every": KEY_EVERY, **meta})
    return MAGIC + HEADER_LEN.pack(len(body)) + body


def record(kind: bytes, time_s: float, value: Any) -> bytes:
    """One record: its head, then ``value`` as compressed JSON."""
    return _record(kind, time_s, _dumps(value))


def _record(kind: bytes, time_s: float, body: bytes) -> bytes:
    payload = zlib.compress(body, ZLIB_LEVEL)
    head = RECORD.pack(kind, len(payload), time_s)
    return head + CRC.pack(zlib.crc32(payload, zlib.crc32(head))) + payload


@dataclass(frozen=True, slots=True)
class Encoded:
    """One snapshot (and the events before it) as records, ready to write."""

    time_s: float
    key: bool
    data: bytes


class FrameEncoder:
    """Turns successive snapshots into records: deltas, and a key frame first
    (and after ``restart()``), then whenever the deltas since the last key
    frame add up to as many bytes as it had, or ``key_every`` frames passed.
    So a seek reads and patches at most about two key frames' worth of JSON,
    on a busy host (every counter moving) as on a quiet one."""

    def __init__(self, key_every: int = KEY_EVERY) -> None:
        self.key_every = key_every
        self._previous: dict[str, Any] | None = None
        self._since_key = 0
        self._key_bytes = 0
        self._delta_bytes = 0

    def restart(self) -> None:
        """The next frame is a key frame (a new file, or after a gap)."""
        self._previous = None

    def encode(self, snap: Snapshot, events: list[LogEvent]) -> Encoded:
        wire = encode_snapshot(snap)
        out = b""
        if events:
            out += record(EVENTS, snap.taken_at, {"events": [encode_event(e) for e in events]})
        key = (
            self._previous is None
            or self._since_key >= self.key_every - 1
            or self._delta_bytes >= self._key_bytes
        )
        if key:
            body = _dumps({"snap": wire})
            self._since_key, self._key_bytes, self._delta_bytes = 0, len(body), 0
            out += _record(KEY, snap.taken_at, body)
        else:
            body = _dumps({"patch": delta.diff(self._previous, wire)})
            self._since_key += 1
            self._delta_bytes += len(body)
            out += _record(DELTA, snap.taken_at, body)
        self._previous = wire
        return Encoded(snap.taken_at, key, out)
