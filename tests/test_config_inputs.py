"""Malformed and unsafe configs through the real command line: each gives one
line on stderr naming the file (and line and key where there is one), no
traceback, exit 2, before anything starts; and parse_config lets only
ConfigError escape, whatever bytes or YAML it is given."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svqtui.config import load_config, parse_config
from svqtui.errors import ConfigError
from svqtui.sources.vhost_user.settings import PLUGIN as DEVICES

LONG = "x" * 120


def device(d: Path, listen: str, backend: str, name: str = "a") -> str:
    return f"  - {{name: {name}, listen: {listen}, backend: {backend}}}\n"


# (id, config bytes given the config's directory, what stderr must contain)
CASES: list[tuple[str, Callable[[Path], bytes], str]] = [
    ("binary", lambda d: bytes(range(256)) * 4, "not UTF-8 text"),
    ("nul-bytes", lambda d: b"refresh: 1\x00\x00\n", "not valid YAML"),
    ("control-char", lambda d: b"refresh: 1\x07\n", "not valid YAML"),
    ("latin1-comment", lambda d: b"# caf\xe9\nrefresh: 1\n", ":1: not UTF-8 text (byte 0xe9)"),
    ("deep-flow", lambda d: b"[" * 10_000 + b"]" * 10_000, "nested deeper than"),
    ("deep-map", lambda d: b"{a: " * 10_000 + b"1" + b"}" * 10_000, "nested deeper than"),
    (
        "deep-block",
        lambda d: "".join(f"{' ' * i}a:\n" for i in range(200)).encode(),
        "nested deeper",
    ),
    ("huge-int", lambda d: b"history: " + b"9" * 5000 + b"\n", ":1: history:"),
    ("big-int", lambda d: b"history: " + b"9" * 4000 + b"\n", "must be between"),
    ("python-tag", lambda d: b"refresh: !!python/object:os.system x\n", ":1: refresh:"),
    ("bad-alias", lambda d: b"refresh: *nope\n", ":1: not valid YAML"),
    ("list-key", lambda d: b"? [a, b]\n: 1\n", ":1: a key must be a plain name"),
    ("top-list", lambda d: b"- a\n- b\n", "expected a mapping"),
    ("unterminated", lambda d: b'refresh: "1\n', "not valid YAML"),
    ("tab-indent", lambda d: b"stuck:\n\tafter: 1\n", "not valid YAML"),
    (
        "listen-too-long",
        lambda d: ("devices:\n" + device(d, f"/tmp/{LONG}.sock", f"{d}/b.sock")).encode(),
        ":2: devices[0].listen: /tmp/",
    ),
    (
        "backend-too-long",
        lambda d: ("devices:\n" + device(d, f"{d}/l.sock", f"/tmp/{LONG}.sock")).encode(),
        "devices[0].backend: ",
    ),
    (
        "listen-missing-dir",
        lambda d: ("devices:\n" + device(d, f"{d}/nowhere/l.sock", f"{d}/b.sock")).encode(),
        "does not exist",
    ),
    (
        "listen-under-a-file",
        lambda d: ("devices:\n" + device(d, f"{d}/afile/l.sock", f"{d}/b.sock")).encode(),
        "not a directory",
    ),
    (
        "listen-is-control",
        lambda d: (
            f"control: {{socket: {d}/c.sock}}\ndevices:\n" + device(d, f"{d}/c.sock", f"{d}/b.sock")
        ).encode(),
        ":3: devices[0].listen: ",
    ),
    (
        "listen-is-backend-dot",
        lambda d: ("devices:\n" + device(d, f"{d}/l.sock", f"{d}/./l.sock")).encode(),
        "devices[0].",
    ),
    (
        "listen-is-backend-dotdot",
        lambda d: ("devices:\n" + device(d, f"{d}/l.sock", f"{d}/x/../l.sock")).encode(),
        "devices[0].",
    ),
    (
        "relative-equals-absolute",
        lambda d: ("devices:\n" + device(d, "l.sock", f"{d}/l.sock")).encode(),
        "devices[0].",
    ),
    (
        "cycle",
        lambda d: (
            "devices:\n"
            + device(d, f"{d}/a.sock", f"{d}/b.sock", "a")
            + device(d, f"{d}/b.sock", f"{d}/a.sock", "b")
        ).encode(),
        "svqtui would connect to its own socket",
    ),
    (
        "same-backend",
        lambda d: (
            "devices:\n"
            + device(d, f"{d}/a.sock", f"{d}/q.sock", "a")
            + device(d, f"{d}/b.sock", f"{d}/q.sock", "b")
        ).encode(),
        ":3: devices[1].backend: ",
    ),
    (
        "qmp-is-listen",
        lambda d: (
            f"qmp: {{sockets: [{d}/a.sock]}}\ndevices:\n" + device(d, f"{d}/a.sock", f"{d}/b.sock")
        ).encode(),
        "svqtui would connect to its own socket",
    ),
    (
        "unknown-owner",
        lambda d: (
            "devices:\n" + device(d, f"{d}/a.sock", f"{d}/b.sock").replace("}", ", owner: zz9q}")
        ).encode(),
        "devices[0].owner: no user 'zz9q'",
    ),
    ("not-a-file", lambda d: b"", "is a directory"),
]


@pytest.mark.parametrize(("make", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_bad_config_is_one_line_and_exit_2(
    tmp_path: Path, make: Callable[[Path], bytes], expected: str
) -> None:
    """`svqtui -c BAD --once`: exit 2, one stderr line naming the config file
    and the problem, no traceback, nothing on stdout."""
    (tmp_path / "afile").write_text("not a directory\n")
    cfg = tmp_path / "bad.yaml"
    data = make(tmp_path)
    if data:
        cfg.write_bytes(data)
    else:
        cfg.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "svqtui", "-c", str(cfg), "--once"],
        capture_output=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    err = result.stderr.decode("utf-8", "replace")
    assert result.returncode == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"svqtui: bad configuration: {cfg}"), err
    assert expected in lines[0], err
    assert lines[0].isprintable()
    assert result.stdout == b""


def test_relative_paths_are_taken_from_the_config_files_directory(tmp_path: Path) -> None:
    """listen: sub/../l.sock in /x/config.yaml means /x/l.sock, whatever the cwd."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text("devices:\n  - {name: a, listen: sub/../l.sock, backend: ./b.sock}\n")
    (dev,) = load_config(str(cfg)).section(DEVICES)
    assert dev.listen == str(tmp_path / "l.sock") and dev.backend == str(tmp_path / "b.sock")


def test_a_symlinked_directory_does_not_hide_a_collision(tmp_path: Path) -> None:
    """Two listen paths through a symlinked directory and the real one are the
    same file: refused at load (the filesystem check resolves directories)."""
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    cfg = tmp_path / "config.yaml"
    cfg.write_text(
        "devices:\n"
        f"  - {{name: a, listen: {tmp_path}/real/a.sock, backend: {tmp_path}/b.sock}}\n"
        f"  - {{name: b, listen: {tmp_path}/link/a.sock, backend: {tmp_path}/c.sock}}\n"
    )
    with pytest.raises(ConfigError, match=r"devices\[1\]\.listen: .* is also devices\[0\]"):
        load_config(str(cfg))


def _only_config_errors(data: str | bytes) -> None:
    try:
        parse_config(data, "fuzz.yaml")
    except ConfigError as err:
        assert "\n" not in str(err)


KEYS = st.sampled_from(
    [
        "refresh",
        "history",
        "stuck",
        "engine",
        "control",
        "devices",
        "qmp",
        "demo",
        "after",
        "socket",
        "name",
        "listen",
        "backend",
        "shadow",
        "owner",
        "group",
        "mode",
        "sockets",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=40),
    st.sampled_from(["/a.sock", "./a.sock", "../a", "~", "auto", "0660", "nobody", "on"]),
)
YAMLISH = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=400))
def test_random_bytes_only_raise_config_error(data: bytes) -> None:
    """Any bytes: a Config or a one-line ConfigError, never anything else."""
    _only_config_errors(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(alphabet=st.sampled_from(list("{}[]:-,&*!|>'\"#%@`? \n\tab01./~")), max_size=80))
def test_yaml_punctuation_only_raises_config_error(text: str) -> None:
    """Text made of YAML's syntax characters: only ConfigError escapes."""
    _only_config_errors(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(YAMLISH)
def test_random_yaml_documents_only_raise_config_error(doc: object) -> None:
    """Well-formed YAML with svqtui's keys in random shapes: only ConfigError
    escapes (wrong types, wrong places, odd values)."""
    _only_config_errors(yaml.safe_dump({"devices": doc} if isinstance(doc, list) else doc))
