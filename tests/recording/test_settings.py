"""The ``record:`` section of config.yaml: defaults, durations and sizes in
words, and one-line errors naming file, line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from svqtui.config import parse_config
from svqtui.errors import ConfigError
from svqtui.recording.settings import RecordSettings


def test_absent_means_off_with_a_ten_minute_window() -> None:
    """No record: section: the recorder is off, the window 600 s."""
    settings = parse_config("refresh: 1\n").record
    assert settings == RecordSettings()
    assert not settings.active and settings.window_s == 600


def test_durations_and_sizes_in_words() -> None:
    """600s, 10m, 1h and 512M, 2G read as seconds and bytes."""
    text = (
        "record:\n  enabled: on\n  window: 10m\n  dir: /tmp/rec\n"
        "  retention: {files: 3, bytes: 2G}\n  rotate: {bytes: 512M, age: 1h}\n"
    )
    s = parse_config(text).record
    assert (s.enabled, s.window_s, s.dir, s.keep_files) == (True, 600.0, "/tmp/rec", 3)
    assert (s.keep_bytes, s.rotate_bytes, s.rotate_s) == (2 * 1024**3, 512 * 1024**2, 3600.0)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("record:\n  window: soon\n", "config.yaml:2: record.window: expected a duration"),
        ("record:\n  window: 2s\n", "config.yaml:2: record.window: must be between 5"),
        ("record:\n  retention: {bytes: lots}\n", "record.retention.bytes: expected a size"),
        ("record:\n  windw: 10m\n", "config.yaml:2: record.windw: unknown key (did you mean"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_key(text: str, where: str) -> None:
    """Each mistake is one ConfigError with the file, line and dotted key."""
    with pytest.raises(ConfigError) as err:
        parse_config(text)
    assert where in str(err.value)
    assert "\n" not in str(err.value)


def test_the_lab_records_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`svqtui lab` records to a new file under the cache directory unless told not to."""
    from svqtui.lab.cli import build_parser, options_from

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    options = options_from(build_parser().parse_args([]))
    assert options.record is not None and options.record.suffix == ".svqrec"
    assert options_from(build_parser().parse_args(["--no-record"])).record is None
    with pytest.raises(ValueError, match="exclude"):
        options_from(build_parser().parse_args(["--record", "x.svqrec", "--no-record"]))
