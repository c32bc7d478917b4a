"""The newc cpio writer and reader (svqtui.lab.cpio)."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from svqtui.lab.cpio import CpioWriter, read_cpio


def _sample() -> bytes:
    w = CpioWriter()
    w.add_dir("bin")
    w.add_file("bin/busybox", b"\x7fELF" + bytes(range(256)) * 3, 0o755)
    w.add_symlink("bin/sh", "busybox")
    w.add_chardev("dev/console", 5, 1)
    w.add_file("init", b"#!/bin/sh\n", 0o755)
    w.add_file("odd", b"x" * 5)  # not a multiple of 4: exercises padding
    return w.finish()


def test_roundtrip_keeps_names_types_data_and_devices() -> None:
    """What the writer wrote, the reader reads back: names, type bits, data, rdev."""
    entries = {e.name: e for e in read_cpio(_sample())}
    assert list(entries) == ["bin", "bin/busybox", "bin/sh", "dev/console", "init", "odd"]
    assert entries["bin"].is_dir
    assert entries["bin/busybox"].data == b"\x7fELF" + bytes(range(256)) * 3
    assert stat.S_IMODE(entries["bin/busybox"].mode) == 0o755
    assert entries["bin/sh"].is_symlink and entries["bin/sh"].data == b"busybox"
    assert stat.S_ISCHR(entries["dev/console"].mode)
    assert (entries["dev/console"].rdev_major, entries["dev/console"].rdev_minor) == (5, 1)
    assert entries["odd"].data == b"xxxxx"


def test_archive_is_deterministic() -> None:
    """The same entries give the same bytes (the image cache depends on it)."""
    assert _sample() == _sample()


def test_duplicate_names_and_adding_after_finish_are_refused() -> None:
    """A member name appears once; a finished archive takes no more members."""
    w = CpioWriter()
    w.add_file("init", b"")
    with pytest.raises(ValueError, match="duplicate"):
        w.add_file("/init", b"")
    w.finish()
    with pytest.raises(ValueError, match="finished"):
        w.add_dir("bin")


def test_truncated_archive_is_rejected() -> None:
    """The reader reports a cut-off archive instead of returning partial members."""
    data = _sample()
    with pytest.raises(ValueError):
        read_cpio(data[: len(data) // 2])


@pytest.mark.skipif(shutil.which("cpio") is None, reason="GNU cpio not installed (apt cpio)")
def test_gnu_cpio_extracts_our_archive(tmp_path: Path) -> None:
    """An independent implementation (GNU cpio) lists and extracts the archive."""
    archive = tmp_path / "a.cpio"
    archive.write_bytes(_sample())
    with archive.open("rb") as f:
        listing = subprocess.run(
            ["cpio", "-it", "--quiet"], stdin=f, capture_output=True, check=True
        ).stdout.decode()
    assert listing.split() == ["bin", "bin/busybox", "bin/sh", "dev/console", "init", "odd"]
    out = tmp_path / "x"
    out.mkdir()
    with archive.open("rb") as f:
        subprocess.run(
            ["cpio", "-id", "--quiet", "--no-absolute-filenames", "--nonmatching", "dev/*"],
            stdin=f,
            cwd=out,
            check=True,
        )
    assert (out / "odd").read_bytes() == b"xxxxx"
    assert (out / "bin" / "sh").readlink() == Path("busybox")
