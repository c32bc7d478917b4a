"""The command line: exit codes, one-line errors, and a --help that answers questions."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.headless import write_config

REPO = Path(__file__).resolve().parents[1]


def svqtui(
    *args: str, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "svqtui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={
            **os.environ,
            "XDG_CONFIG_HOME": str(cwd or Path.cwd()) + "/.no-user-config",
            "PYTHONPATH": str(REPO),  # this tree's svqtui, whatever the cwd
        },
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("refresh: [\n", "not valid YAML"),
        ("demo:\n  enabeld: true\n", "demo.enabeld: unknown key (did you mean 'enabled'?)"),
        ("stuck:\n  after: soon\n", "stuck.after: expected a number"),
    ],
)
def test_broken_config_exits_2_with_one_line(tmp_path: Path, text: str, expected: str) -> None:
    """A broken config.yaml: exit 2 and exactly one stderr line naming file, line and key."""
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    result = svqtui("-c", str(cfg), "--once")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(cfg) in lines[0] and expected in lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_missing_config_file_exits_2(tmp_path: Path) -> None:
    """-c naming a file that does not exist is a configuration error (2), one line."""
    result = svqtui("-c", str(tmp_path / "nope.yaml"), "--once")
    assert result.returncode == 2
    assert "no such file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2() -> None:
    """Option combinations that make no sense are refused with exit 2."""
    assert svqtui("--json").returncode == 2
    assert svqtui("--csv").returncode == 2
    assert svqtui("--once", "--log").returncode == 2
    assert svqtui("--refresh", "0").returncode == 2
    assert svqtui("--once", "--metrics", "9469").returncode == 2  # headless or console only
    assert svqtui("--headless", "--metrics", "[::1]").returncode == 2
    assert svqtui("--once", "--takeover").returncode == 2  # a takeover is --headless's


@pytest.mark.parametrize(
    ("targets", "expected"),
    [
        (["ssh://hv1:0/x"], "port"),
        (["ssh://hv1,,ssh://hv2"], "empty target"),
        (["ssh://hv1", "ssh://hv1"], "given twice"),
    ],
)
def test_bad_attach_targets_exit_2_with_one_line(targets: list[str], expected: str) -> None:
    """A malformed ssh:// URL, an empty item of a comma list or a repeated
    target is a usage error: exit 2, one line, before any ssh runs."""
    args = [word for t in targets for word in ("--attach", t)]
    result = svqtui(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_help_answers_the_operators_questions() -> None:
    """--help names the modes, the config lookup, the exit codes and gives examples."""
    result = svqtui("--help")
    assert result.returncode == 0
    for words in (
        "--once",
        "--json",
        "--log",
        "--csv",
        "--headless",
        "ctl",
        "config.yaml",
        "exit codes",
        "examples",
        "--seed",
        "--libvirt",
        "ssh://",
        "SVQTUI_SSH_OPTS",
        "--takeover",
    ):
        assert words in result.stdout, words


def test_once_runs_the_demo_by_default(tmp_path: Path) -> None:
    """With nothing configured, --once shows the demo's live queues and exits 0."""
    result = svqtui("--once", "--no-discover", "--refresh", "0.5", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "web01" in result.stdout and "blk0" in result.stdout
    assert "engine alive" in result.stdout


def test_libvirt_without_a_daemon_is_one_status_line(tmp_path: Path) -> None:
    """--libvirt with no libvirtd at the configured URI: --once still succeeds
    and the source's status line says no daemon answers (not an error)."""
    pytest.importorskip("libvirt", reason="libvirt Python bindings missing")
    sock = tmp_path / "no-libvirtd.sock"
    (tmp_path / "config.yaml").write_text(
        f"libvirt: {{uri: 'qemu+unix:///system?socket={sock}'}}\n"
    )
    result = svqtui("--once", "--no-demo", "--no-discover", "--libvirt", "--refresh", "0.5",
                    cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "libvirt: down (no daemon answers at qemu+unix" in result.stdout
    assert "Traceback" not in result.stderr


def test_a_busy_metrics_port_exits_1_before_starting(tmp_path: Path) -> None:
    """--metrics on a port in use: one line naming the address, exit 1, and
    the control socket never claimed (nothing was started)."""
    config = write_config(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = svqtui("-c", str(config), "--headless", "--metrics", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "c.sock").exists()


def test_a_takeover_with_nothing_to_take_over_is_one_line(tmp_path: Path) -> None:
    """--headless --takeover when no svqtui serves the control socket: exit 1,
    one line saying so, nothing left behind."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"demo: {{enabled: false}}\nqmp: {{discover: false}}\n"
        f"control: {{socket: {tmp_path / 'c.sock'}}}\n"
    )
    result = svqtui("-c", str(cfg), "--headless", "--takeover")
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "no svqtui serves" in lines[0], result.stderr
    assert not (tmp_path / "c.sock").exists() and not (tmp_path / "c.sock.lock").exists()
