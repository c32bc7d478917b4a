"""`svqtui --headless` as a process: clean stops on SIGTERM/SIGINT, recovery
from a stale socket after a crash, and configuration errors."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.headless import HeadlessProcess, svqtui, write_config


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    """SIGTERM or SIGINT: exit 0, the socket and its lock file are gone, the log
    says it stopped, no traceback."""
    with HeadlessProcess(tmp_path) as proc:
        sock = Path(proc.socket_path)
        assert sock.exists() and Path(proc.socket_path + ".lock").exists()
        assert proc.signal(sig) == 0
        assert not sock.exists() and not Path(proc.socket_path + ".lock").exists()
        assert os.listdir(sock.parent) == []
        assert "headless: stopping" in proc.stderr and "Traceback" not in proc.stderr


def test_a_crashed_headless_is_replaced(tmp_path: Path) -> None:
    """After SIGKILL the socket file is left behind: ctl says nothing listens
    (exit 1, one line), and a new headless replaces the stale socket."""
    with HeadlessProcess(tmp_path) as first:
        first.signal(signal.SIGKILL)
    assert Path(first.socket_path).exists()
    result = svqtui("ctl", "-c", str(first.config), "status", home=tmp_path)
    assert result.returncode == 1 and "nothing is listening" in result.stderr
    with HeadlessProcess(tmp_path, config=first.config) as second, second.client() as c:
        assert c.hello()["pid"] == (second.proc.pid if second.proc else None)


def test_too_long_socket_path_is_a_config_error(tmp_path: Path) -> None:
    """A control socket path over the AF_UNIX limit: exit 2, one line naming the
    config file and control.socket, before anything starts."""
    cfg = write_config(tmp_path, socket=tmp_path / ("x" * 110) / "c.sock")
    result = svqtui("-c", str(cfg), "--headless", home=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cfg) in lines[0] and "control.socket" in lines[0]
