"""Reading recordings: damage ends a recording where it is (one line, every
frame before it replays), versions, and record kinds a later svqtui adds."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from svqtui.control.codec import encode_snapshot
from svqtui.model import LogEvent
from svqtui.recording.errors import RecordingError
from svqtui.recording.format import HEADER_LEN, MAGIC, FrameEncoder, file_header, record
from svqtui.recording.reader import Recording
from tests.support.console import FROZEN_WALL, synthetic_snapshot

FRAMES = 70


def _frames() -> list[bytes]:
    encoder = FrameEncoder()
    out = []
    for t in range(FRAMES):
        snap = dataclasses.replace(synthetic_snapshot(4, 2, tick=t * 3), taken_at=FROZEN_WALL + t)
        events = [LogEvent(FROZEN_WALL + t, "info", f"event {t}")] if t % 10 == 0 else []
        out.append(encoder.encode(snap, events).data)
    return out


@pytest.fixture
def frames() -> list[bytes]:
    return _frames()


def _write(path: Path, frames: list[bytes], header: bytes | None = None) -> Path:
    path.write_bytes((header or file_header({"host": "test"})) + b"".join(frames))
    return path


def test_a_whole_recording_reads_back(tmp_path: Path, frames: list[bytes]) -> None:
    """Every frame decodes to the snapshot written, key frames and deltas alike."""
    with Recording.open(_write(tmp_path / "r.svqrec", frames)) as rec:
        assert rec.damage is None and len(rec) == FRAMES
        for t in (0, 1, 29, 30, 31, 69, 45, 2):
            want = dataclasses.replace(
                synthetic_snapshot(4, 2, tick=t * 3), taken_at=FROZEN_WALL + t
            )
            assert encode_snapshot(rec.frame(t).snapshot) == encode_snapshot(want)
        assert [e.text for e in rec.events_until(69)] == [f"event {t}" for t in range(0, 70, 10)]


def test_a_truncated_file_replays_up_to_the_tear(tmp_path: Path, frames: list[bytes]) -> None:
    """A file cut inside frame 50 (a writer that died) holds frames 0-49,
    and its damage is one line naming the truncation."""
    data = b"".join(frames[:50]) + frames[50][: len(frames[50]) // 2]
    with Recording.open(_write(tmp_path / "r.svqrec", [data])) as rec:
        assert len(rec) == 50
        assert rec.damage is not None and "\n" not in rec.damage
        assert "truncated" in rec.damage
        assert rec.frame(49).snapshot.taken_at == FROZEN_WALL + 49


def test_a_corrupt_record_ends_the_recording_there(tmp_path: Path, frames: list[bytes]) -> None:
    """A flipped byte in frame 40 fails its checksum: frames 0-39 replay."""
    bad = bytearray(frames[40])
    bad[-3] ^= 0xFF
    with Recording.open(
        _write(tmp_path / "r.svqrec", [*frames[:40], bytes(bad), *frames[41:]])
    ) as rec:
        assert len(rec) == 40
        assert rec.damage is not None and "checksum" in rec.damage


def test_not_a_recording_and_a_newer_version_are_one_clear_error(tmp_path: Path) -> None:
    """A file that is not a recording, or one of a newer format version, is refused in one line."""
    other = tmp_path / "other"
    other.write_text("hello\n")
    with pytest.raises(RecordingError, match="not an svqtui recording"):
        Recording.open(other)
    body = json.dumps({"format": "svqtui-recording", "version": 99}).encode()
    newer = tmp_path / "newer.svqrec"
    newer.write_bytes(MAGIC + HEADER_LEN.pack(len(body)) + body)
    with pytest.raises(RecordingError, match="version 99 is newer"):
        Recording.open(newer)


def test_record_kinds_of_a_later_version_are_skipped(tmp_path: Path, frames: list[bytes]) -> None:
    """A record kind this version does not know (a later addition) is skipped."""
    extra = record(b"Z", FROZEN_WALL, {"something": "new"})
    with Recording.open(_write(tmp_path / "r.svqrec", [frames[0], extra, *frames[1:]])) as rec:
        assert rec.damage is None and len(rec) == FRAMES


def test_replay_of_a_damaged_file_prints_one_line(tmp_path: Path, frames: list[bytes]) -> None:
    """``svqtui --replay FILE --log --csv`` on a truncated file prints one
    line on stderr and a line per frame before the damage; exit 0."""
    path = _write(tmp_path / "r.svqrec", [b"".join(frames[:20]) + frames[20][:10]])
    done = subprocess.run(
        [sys.executable, "-m", "svqtui", "--replay", str(path), "--log", "--csv"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert "truncated" in done.stderr
    assert len(done.stdout.strip().splitlines()) == 1 + 20  # the header, a line per frame
