"""The ``record:`` section of config.yaml: the flight recorder's settings.

Off by default (``svqtui lab`` turns it on). ``window`` is how much history
an incident file holds; ``dir`` where incident files go; ``retention`` how
many files and bytes of them are kept (the oldest go first); ``rotate`` when
a continuous recording (``--record PATH``) starts its next file.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from svqtui.config_nodes import ConfigReader, Found

DEFAULT_WINDOW_S = 600.0
DEFAULT_FILES = 50
DEFAULT_BYTES = 512 * 1024 * 1024
DEFAULT_ROTATE_BYTES = 64 * 1024 * 1024
DEFAULT_ROTATE_S = 3600.0
_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*(s|m|h)?\s*$")
_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def default_dir() -> str:
    """$XDG_STATE_HOME/svqtui/recordings (~/.local/state/svqtui/recordings)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(base) / "svqtui" / "recordings")


@dataclass(frozen=True, slots=True)
class RecordSettings:
    enabled: bool = False
    window_s: float = DEFAULT_WINDOW_S
    dir: str | None = None  # None: default_dir()
    keep_files: int = DEFAULT_FILES
    keep_bytes: int = DEFAULT_BYTES
    on_stuck: bool = True  # write an incident file when a queue goes stuck
    on_migration: bool = True  # ... when a migration starts or fails
    rotate_bytes: int = DEFAULT_ROTATE_BYTES
    rotate_s: float = DEFAULT_ROTATE_S
    continuous: str | None = None  # --record PATH: every snapshot, to PATH (rotated)

    @property
    def active(self) -> bool:
        """Whether a recorder runs at all (the window, or a continuous recording)."""
        return self.enabled or self.continuous is not None

    @property
    def directory(self) -> str:
        return self.dir or default_dir()


def duration(r: ConfigReader, node: yaml.Node, key: str, low: float, high: float) -> float:
    """Seconds: a number, or text such as 600s, 10m, 1h."""
    value = r.scalar(node, key)
    if isinstance(value, bool):
        raise r.fail(node, key, f"expected a duration (600, 600s, 10m, 1h), got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        found = _DURATION.match(str(value))
        if found is None:
            raise r.fail(node, key, f"expected a duration (600, 600s, 10m, 1h), got {value!r}")
        seconds = float(found[1]) * {"s": 1, "m": 60, "h": 3600}[found[2] or "s"]
    if not low <= seconds <= high:
        raise r.fail(node, key, f"must be between {low:g} and {high:g} seconds, got {seconds:g}")
    return seconds


def size(r: ConfigReader, node: yaml.Node, key: str, low: int) -> int:
    """Bytes: a whole number, or text such as 512M, 2G, 64KiB."""
    value = r.scalar(node, key)
    if isinstance(value, bool):
        raise r.fail(node, key, f"expected a size (1048576, 512M, 2G), got {value!r}")
    if isinstance(value, int):
        count = value
    else:
        found = _SIZE.match(str(value))
        if found is None:
            raise r.fail(node, key, f"expected a size (1048576, 512M, 2G), got {value!r}")
        unit = (found[2] or "")[:1].lower()
        count = int(found[1]) * _SIZE_UNITS[unit]
    if count < low:
        raise r.fail(node, key, f"must be at least {low} bytes, got {count}")
    return count


KEYS = ("enabled", "window", "dir", "retention", "on_stuck", "on_migration", "rotate")


def parse(r: ConfigReader, top: Found) -> RecordSettings:
    """The ``record`` section of the top-level mapping (defaults when absent)."""
    if "record" not in top:
        return RecordSettings()
    found = r.mapping(top["record"][1], "record", KEYS)
    keep_files, keep_bytes = DEFAULT_FILES, DEFAULT_BYTES
    if "retention" in found:
        ret = r.mapping(found["retention"][1], "record.retention", ("files", "bytes"))
        keep_files = r.optional(
            ret, "files", "record.retention", lambda n, k: r.integer(n, k, 1, 100_000), keep_files
        )
        keep_bytes = r.optional(
            ret, "bytes", "record.retention", lambda n, k: size(r, n, k, 64 * 1024), keep_bytes
        )
    rotate_bytes, rotate_s = DEFAULT_ROTATE_BYTES, DEFAULT_ROTATE_S
    if "rotate" in found:
        rot = r.mapping(found["rotate"][1], "record.rotate", ("bytes", "age"))
        rotate_bytes = r.optional(
            rot, "bytes", "record.rotate", lambda n, k: size(r, n, k, 64 * 1024), rotate_bytes
        )
        rotate_s = r.optional(
            rot, "age", "record.rotate", lambda n, k: duration(r, n, k, 10, 7 * 86400), rotate_s
        )

    def directory(node: yaml.Node, key: str) -> str | None:
        value = r.path_text(node, key)
        return None if value == "auto" else value

    return RecordSettings(
        enabled=r.optional(found, "enabled", "record", r.boolean, False),
        window_s=r.optional(
            found, "window", "record", lambda n, k: duration(r, n, k, 5, 86400), DEFAULT_WINDOW_S
        ),
        dir=r.optional(found, "dir", "record", directory, None),
        keep_files=keep_files,
        keep_bytes=keep_bytes,
        on_stuck=r.optional(found, "on_stuck", "record", r.boolean, True),
        on_migration=r.optional(found, "on_migration", "record", r.boolean, True),
        rotate_bytes=rotate_bytes,
        rotate_s=rotate_s,
    )
