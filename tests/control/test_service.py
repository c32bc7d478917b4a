"""svqtui as a systemd service, against a real AF_UNIX datagram socket standing
in for systemd's NOTIFY_SOCKET: READY only once the listen sockets exist,
RELOADING/READY around a reload (also a refused one), STOPPING, a watchdog
fed only while the engine's heartbeat is fresh; and the shipped unit file
passes ``systemd-analyze verify``."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.control.headless import _engine_health
from svqtui.control.sd_notify import Notifier
from svqtui.control.service import ServiceNotifier
from svqtui.errors import ConfigError
from tests.support.control import demo_runtime
from tests.support.headless import HeadlessProcess
from tests.support.vhost_user_headless import listen_path, write_vhost_config

UNIT = Path(__file__).resolve().parents[2] / "contrib" / "systemd" / "svqtui.service"


@pytest.fixture
def notify(sock_dir: Path) -> Iterator[socket.socket]:
    """The service manager's end: a datagram socket at sock_dir/notify.sock."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_dir / "notify.sock"))
    try:
        yield sock
    finally:
        sock.close()


def _next(sock: socket.socket, timeout: float = 10.0) -> dict[str, str]:
    """The next notification as a dict of its fields."""
    sock.settimeout(timeout)
    data = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in data.splitlines())


def _until(sock: socket.socket, key: str, timeout: float = 10.0) -> tuple[dict[str, str], int]:
    """Skip notifications until one with ``key``; return it and how many WATCHDOG=1 were skipped."""
    deadline = time.monotonic() + timeout
    fed = 0
    while True:
        msg = _next(sock, max(deadline - time.monotonic(), 0.01))
        if key in msg:
            return msg, fed
        fed += msg.get("WATCHDOG") == "1"


def test_headless_speaks_the_notify_protocol(sock_dir: Path, notify: socket.socket) -> None:
    """Under a service manager: READY=1 (with STATUS and MAINPID) arrives when
    the device's listen socket and the control socket already exist; the
    watchdog is fed; SIGHUP and `ctl reload` are each RELOADING=1 (with
    MONOTONIC_USEC) then READY=1, a refused reload too; SIGTERM: STOPPING=1."""
    cfg = write_vhost_config(sock_dir, [("blk0", 0, False)])
    env = {"NOTIFY_SOCKET": str(sock_dir / "notify.sock"), "WATCHDOG_USEC": "400000"}
    proc = HeadlessProcess(sock_dir, config=cfg, env=env).start(wait=False)
    try:
        ready, _ = _until(notify, "READY", 30)
        assert listen_path(sock_dir, 0).exists() and (sock_dir / "c.sock").exists()
        assert proc.proc is not None and ready["MAINPID"] == str(proc.proc.pid)
        assert "vhost-user: 0 of 1 device(s) connected" in ready["STATUS"]
        fed = sum(_next(notify).get("WATCHDOG") == "1" for _ in range(3))
        assert fed == 3  # 0.2 s apart
        proc.proc.send_signal(signal.SIGHUP)
        reloading, _ = _until(notify, "RELOADING")
        assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
        _until(notify, "READY")
        cfg.write_text(cfg.read_text() + "bogus: 1\n")
        with proc.client() as c, pytest.raises(ConfigError, match="bogus"):
            c.reload()
        _until(notify, "RELOADING")
        _until(notify, "READY")
        proc.proc.send_signal(signal.SIGTERM)
        stopping, _ = _until(notify, "STOPPING")
        assert stopping["STOPPING"] == "1"
        assert proc.proc.wait(15) == 0
    finally:
        proc.stop()


def test_the_watchdog_starves_when_the_engine_stops(sock_dir: Path, notify: socket.socket) -> None:
    """In-process: WATCHDOG=1 every half timeout while the engine runs; once
    the engine thread is stopped, one STATUS line says why and no WATCHDOG=1
    follows (systemd would restart svqtui)."""
    runtime = demo_runtime(sock_dir / "c.sock")
    notifier = Notifier(str(sock_dir / "notify.sock"))
    service = ServiceNotifier(notifier, lambda: _engine_health(runtime), runtime.log, 0.3)
    runtime.start()
    try:
        service.ready("serving")
        _until(notify, "READY")
        assert sum(_next(notify, 2).get("WATCHDOG") == "1" for _ in range(3)) == 3
        runtime.engine.stop()
        starved, _ = _until(notify, "STATUS", 5)
        assert starved["STATUS"] == "watchdog not fed: the relay engine thread is not running"
        notify.settimeout(1.0)
        with pytest.raises(TimeoutError):
            notify.recv(4096)  # nothing more: no WATCHDOG=1
        assert any("watchdog: not fed" in e.text for e in runtime.log.since(0)[1])
    finally:
        service.stopping()
        notifier.close()
        runtime.stop()


def test_without_a_service_manager_nothing_is_sent() -> None:
    """No NOTIFY_SOCKET: every notification is a no-op and no watchdog thread runs."""
    runtime = demo_runtime(Path("/nonexistent/c.sock"))
    service = ServiceNotifier.from_env(
        lambda: (True, ""), runtime.log, env={"WATCHDOG_USEC": "1000"}
    )
    service.ready("serving")
    service.reloading()
    service.stopping()
    assert service.notifier is None and service.watchdog_s is None and service.fed == 0


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_the_unit_file_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts contrib/systemd/svqtui.service. Where
    svqtui is not installed at the unit's ExecStart path (this checkout is
    not installed system-wide), a copy naming an existing executable is
    verified instead; nothing else is changed."""
    text = UNIT.read_text()
    exec_start = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    binary = exec_start.split("=", 1)[1].split()[0]
    unit = UNIT
    if not os.access(binary, os.X_OK):
        unit = tmp_path / "svqtui.service"
        unit.write_text(text.replace(f"ExecStart={binary}", f"ExecStart={sys.executable}"))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    complaints = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "svqtui" in line  # other units on this host are not ours to judge
    ]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr
    for needed in ("Type=notify", "ExecReload=/bin/kill -HUP $MAINPID", "RuntimeDirectory=svqtui"):
        assert needed in text
    assert "WatchdogSec=" in text
