"""`svqtui lab`'s command line: where its default recordings go and how many stay."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from svqtui.lab.cli import LAB_RECORDINGS_KEPT, build_parser, options_from


def test_default_recordings_keep_the_newest_and_nothing_else_is_touched(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each run's default recording is a new file in the cache directory; the
    oldest default recordings go so that at most LAB_RECORDINGS_KEPT stay,
    while other files there (incident files, anything else) are left alone."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lab_dir = tmp_path / "svqtui" / "lab"
    lab_dir.mkdir(parents=True)
    old = [lab_dir / f"lab-2026010{i // 10}T0000{i % 10}0.000Z.svqrec" for i in range(30)]
    for age, path in enumerate(reversed(old)):  # old[0] is the oldest
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    others = [lab_dir / "svqtui-vm-20260101T000000.000Z-stuck.svqrec", lab_dir / "notes.txt"]
    for path in others:
        path.write_text("keep")

    options = options_from(build_parser().parse_args([]))

    assert options.record is not None and options.record.parent == lab_dir
    assert not options.record.exists()  # the recorder creates it
    left = sorted(p for p in lab_dir.glob("lab-*.svqrec"))
    assert left == sorted(old[-(LAB_RECORDINGS_KEPT - 1) :])
    assert all(p.exists() for p in others)


def test_a_recording_named_on_the_command_line_prunes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--record FILE is the operator's: no default recording is removed for it."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    lab_dir = tmp_path / "svqtui" / "lab"
    lab_dir.mkdir(parents=True)
    for i in range(LAB_RECORDINGS_KEPT + 5):
        (lab_dir / f"lab-{i:03d}.svqrec").write_bytes(b"x")
    options = options_from(build_parser().parse_args(["--record", str(tmp_path / "mine.svqrec")]))
    assert options.record == tmp_path / "mine.svqrec"
    assert len(list(lab_dir.glob("lab-*.svqrec"))) == LAB_RECORDINGS_KEPT + 5
