"""Recording files on disk: names, atomic writes, rotation and retention.

An incident file is written whole to ``NAME.tmp`` next to its final name,
flushed to disk, then renamed: a reader never sees half a file under the
final name. A continuous recording (``--record PATH``) appends to ``PATH``
and, when it is big or old enough, renames it to ``STEM-TIME.svqrec`` and
starts a new one. Retention removes the oldest files of a kind once there
are more, or more bytes, than allowed.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path

SUFFIX = ".svqrec"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def stamp(t: float) -> str:
    """A file-name time, UTC, to the millisecond: 20261202T124501.123Z."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def safe(text: str) -> str:
    return _UNSAFE.sub("-", text).strip("-") or "x"


def incident_name(host: str, t: float, cause: str) -> str:
    """``svqtui-HOST-TIME-CAUSE.svqrec``: one file per incident."""
    return f"svqtui-{safe(host)}-{stamp(t)}-{safe(cause)}{SUFFIX}"


def write_atomic(path: Path, chunks: list[bytes]) -> int:
    """Write ``chunks`` to ``path`` through a temporary file and a rename;
    returns the size. Raises OSError (the temporary file is removed)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    size = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
                size += len(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    with contextlib.suppress(OSError):  # make the rename durable too
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return size


def prune(directory: Path, pattern: str, keep_files: int, keep_bytes: int) -> list[Path]:
    """Remove the oldest files matching ``pattern`` beyond ``keep_files`` files
    or ``keep_bytes`` bytes in total; returns what was removed."""
    found: list[tuple[float, str, int, Path]] = []
    for p in directory.glob(pattern):
        with contextlib.suppress(OSError):
            st = p.stat()
            found.append((st.st_mtime, p.name, st.st_size, p))
    found.sort(reverse=True)  # newest first
    removed: list[Path] = []
    total = 0
    for n, (_, _, size, p) in enumerate(found):
        total += size
        if n >= keep_files or (total > keep_bytes and n > 0):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


class ContinuousFile:
    """The live file of ``--record PATH``: appended to, rotated by size and age."""

    def __init__(self, path: Path, rotate_bytes: int, rotate_s: float) -> None:
        self.path = path
        self.rotate_bytes = rotate_bytes
        self.rotate_s = rotate_s
        self._fh: int | None = None
        self.size = 0
        self.opened_at = 0.0
        self.first_time: float | None = None

    @property
    def is_open(self) -> bool:
        return self._fh is not None

    def due(self, now: float) -> bool:
        """Whether the next key frame should start a new file."""
        return self.is_open and (
            self.size >= self.rotate_bytes or now - self.opened_at >= self.rotate_s
        )

    def open(self, header: bytes, now: float) -> None:
        """Start ``path`` afresh (the previous one, if any, is rotated away first)."""
        self.close()
        if self.path.exists():
            self.rotate_away()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        self.size = 0
        self.opened_at = now
        self.first_time = None
        try:
            self.append(header)
        except OSError:  # not even the header fits: leave no file that is not a recording
            self.close()
            with contextlib.suppress(OSError):
                self.path.unlink()
            raise

    def append(self, data: bytes) -> None:
        assert self._fh is not None
        view = memoryview(data)
        while view:
            n = os.write(self._fh, view)
            view = view[n:]
            self.size += n

    def close(self) -> None:
        if self._fh is not None:
            fh, self._fh = self._fh, None
            with contextlib.suppress(OSError):
                os.close(fh)

    def rotate_away(self) -> Path | None:
        """Rename the live file to ``STEM-TIME.svqrec`` (its modification time)."""
        try:
            t = self.path.stat().st_mtime
        except OSError:
            return None
        target = self.path.with_name(f"{self.path.stem}-{stamp(t)}{SUFFIX}")
        os.replace(self.path, target)
        return target

    @property
    def rotated_pattern(self) -> str:
        return f"{self.path.stem}-*{SUFFIX}"
