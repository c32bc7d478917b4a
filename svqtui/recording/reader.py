"""Opening, indexing and seeking a recording (svqtui.recording.format).

``Recording.open(path)`` reads the header and walks the records once,
checking each one's CRC and keeping only where it is: a file of an hour opens
in well under a second and takes little memory. A damaged record (a bad CRC,
a torn tail, a bad patch) ends the recording there: ``damage`` says where, in
one line, and every frame before it replays. ``frame(i)`` decodes frame ``i``
from the key frame before it (at most ``key_every`` deltas, applied in place to
the decoded key frame); stepping forward decodes one delta.
"""

from __future__ import annotations

import bisect
import json
import os
import zlib
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from svqtui.control.codec import decode_event, decode_snapshot
from svqtui.errors import SvqtuiError
from svqtui.model import LogEvent, Snapshot
from svqtui.recording import delta
from svqtui.recording.errors import RecordingDamaged, RecordingError
from svqtui.recording.format import (
    CRC,
    DELTA,
    EVENTS,
    FORMAT_NAME,
    HEADER_LEN,
    KEY,
    MAGIC,
    MAX_HEADER,
    MAX_PAYLOAD,
    RECORD,
    VERSION,
)

HEAD_SIZE = RECORD.size + CRC.size


@dataclass(frozen=True, slots=True)
class FrameIndex:
    """Where one frame's record is, and the events recorded before it."""

    time_s: float
    key: bool
    offset: int  # of the payload
    length: int
    events: tuple[LogEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Frame:
    """One recorded snapshot, with the log events of the interval before it."""

    index: int
    snapshot: Snapshot
    events: tuple[LogEvent, ...]


@dataclass
class Recording:
    """An open recording: its header, its frame index, and a reader."""

    path: str
    header: dict[str, Any]
    frames: list[FrameIndex]
    damage: str | None = None  # where and why reading stopped early
    _file: BinaryIO | None = field(default=None, repr=False)
    _cached: tuple[int, dict[str, Any]] | None = field(default=None, repr=False)
    _times: list[float] = field(default_factory=list, repr=False)

    # -- opening -----------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Recording:
        """Read the header and index every frame; ``RecordingError`` when the
        file is not a recording at all (damage later on is ``damage``)."""
        name = os.fspath(path)
        try:
            f = open(name, "rb")  # noqa: SIM115 - the recording keeps it open
        except OSError as err:
            raise RecordingError(f"cannot open recording {name}: {err.strerror}") from None
        try:
            header = _read_header(f, name)
            frames, damage = _index(f, name)
        except BaseException:
            f.close()
            raise
        rec = cls(name, header, frames, damage, f)
        if damage is None and frames:
            try:  # a torn tail whose CRC holds cannot happen, but a bad first key can
                rec._wire(0)
            except RecordingDamaged as err:
                rec.frames, rec.damage = [], str(err)
        return rec

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Recording:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- what is in it ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def start_s(self) -> float:
        return self.frames[0].time_s if self.frames else 0.0

    @property
    def duration_s(self) -> float:
        return self.frames[-1].time_s - self.frames[0].time_s if self.frames else 0.0

    @property
    def times(self) -> list[float]:
        """Each frame's time (time.time()), in order."""
        if len(self._times) != len(self.frames):
            self._times = [f.time_s for f in self.frames]
        return self._times

    def offset_s(self, index: int) -> float:
        """Seconds from the first frame to frame ``index``."""
        return self.frames[index].time_s - self.start_s

    def nearest(self, offset_s: float) -> int:
        """The frame recorded nearest ``offset_s`` seconds after the first."""
        if not self.frames:
            raise RecordingError(f"{self.path}: the recording has no frames")
        t = self.start_s + offset_s
        times = self.times
        i = bisect.bisect_left(times, t)
        if i == 0:
            return 0
        if i == len(times):
            return len(times) - 1
        return i if times[i] - t < t - times[i - 1] else i - 1

    def events_until(self, index: int) -> list[LogEvent]:
        """Every event recorded up to frame ``index`` (the log as it was)."""
        return [e for f in self.frames[: index + 1] for e in f.events]

    def frame(self, index: int) -> Frame:
        """Frame ``index`` as a snapshot; ``RecordingDamaged`` if it cannot be decoded."""
        wire = self._wire(index)
        try:
            snap = decode_snapshot(wire)
        except SvqtuiError as err:
            raise RecordingDamaged(f"{self.path}: frame {index}: {err}", index) from None
        return Frame(index, snap, self.frames[index].events)

    def _wire(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.frames):
            raise IndexError(f"no frame {index} (the recording has {len(self.frames)})")
        start = index
        while not self.frames[start].key:
            start -= 1
        cached = self._cached
        wire: Any
        if cached is not None and start <= cached[0] <= index:
            start, wire = cached[0], cached[1]
        else:
            wire = self._payload(start, start).get("snap")
        self._cached = None  # patched in place from here on (svqtui.recording.delta.apply)
        for i in range(start + 1, index + 1):
            patch = self._payload(i, i).get("patch")
            if patch is not None:
                try:
                    wire = delta.apply(wire, patch)
                except delta.BadPatch as err:
                    raise RecordingDamaged(f"{self.path}: frame {i}: {err}", i) from None
        if not isinstance(wire, dict):
            raise RecordingDamaged(f"{self.path}: frame {index}: not a snapshot", index)
        self._cached = (index, wire)
        return wire

    def stuck_keys(self, index: int) -> frozenset[str]:
        """The queues (row keys) stuck at frame ``index``."""
        rows = self._wire(index).get("rows", {})
        return frozenset(k for k, r in rows.items() if isinstance(r, dict) and r.get("stuck"))

    def _payload(self, index: int, frame: int) -> dict[str, Any]:
        entry = self.frames[index]
        assert self._file is not None, "the recording is closed"
        self._file.seek(entry.offset)
        return _decode_payload(self._file.read(entry.length), self.path, entry.offset, frame)


def _decode_payload(
    payload: bytes, path: str, offset: int, frame: int | None = None
) -> dict[str, Any]:
    try:
        value = json.loads(zlib.decompress(payload))
    except (zlib.error, ValueError) as err:
        raise RecordingDamaged(
            f"{path}: byte {offset}: a record that does not decode ({err})", frame
        ) from None
    if not isinstance(value, dict):
        raise RecordingDamaged(f"{path}: byte {offset}: a record that is not an object", frame)
    return value


def _read_header(f: BinaryIO, path: str) -> dict[str, Any]:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise RecordingError(f"{path}: not an svqtui recording (no {MAGIC!r} at its start)")
    raw = f.read(HEADER_LEN.size)
    if len(raw) < HEADER_LEN.size:
        raise RecordingError(f"{path}: the recording ends inside its header")
    (length,) = HEADER_LEN.unpack(raw)
    body = f.read(length) if length <= MAX_HEADER else b""
    try:
        header = json.loads(body)
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise RecordingError(f"{path}: the recording's header is damaged")
    version = header.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise RecordingError(
            f"{path}: recording format version {version} is newer than this svqtui reads "
            f"(up to {VERSION}): replay it with a newer svqtui"
        )
    return header


def _index(f: BinaryIO, path: str) -> tuple[list[FrameIndex], str | None]:
    """Every whole record's place; the damage, if any, ends the walk."""
    frames: list[FrameIndex] = []
    pending: list[LogEvent] = []
    offset = f.tell()
    seen_key = False
    while True:
        head = f.read(HEAD_SIZE)
        if not head:
            return frames, None
        where = f"{path}: byte {offset} (after {len(frames)} frame(s))"
        if len(head) < HEAD_SIZE:
            return frames, f"{where}: the recording is truncated (a torn record)"
        kind, length, time_s = RECORD.unpack_from(head)
        (crc,) = CRC.unpack_from(head, RECORD.size)
        if length > MAX_PAYLOAD:
            return frames, f"{where}: a damaged record (length {length})"
        payload = f.read(length)
        if len(payload) < length:
            return frames, f"{where}: the recording is truncated (a torn record)"
        if zlib.crc32(payload, zlib.crc32(head[: RECORD.size])) != crc:
            return frames, f"{where}: a damaged record (its checksum does not match)"
        body = offset + HEAD_SIZE
        offset = body + length
        if kind == EVENTS:
            try:
                raw = _decode_payload(payload, path, body).get("events", [])
                pending.extend(decode_event(e) for e in raw)
            except (RecordingDamaged, SvqtuiError) as err:
                return frames, f"{where}: damaged events ({err})"
        elif kind in (KEY, DELTA):
            key = kind == KEY
            if not seen_key and not key:
                continue  # a delta before any key frame cannot be decoded: skip it
            seen_key = True
            frames.append(FrameIndex(time_s, key, body, length, tuple(pending)))
            pending = []
        # any other kind: a later addition this version does not read
