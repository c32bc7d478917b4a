"""``svqtui --attach``: the console over a real headless svqtui in another process.

The headless side is a real ``python -m svqtui --headless`` (demo source, real
engine); the console is the real app in a Textual pilot with RemoteRuntime.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from svqtui.config import load_config
from svqtui.console.app import SvqtuiApp
from svqtui.control.attach import RemoteRuntime
from svqtui.control.errors import ControlUnreachable
from svqtui.model import SourceKind
from tests.support.console import until
from tests.support.headless import HeadlessProcess, svqtui

BLK = "demo:db01/blk0"
NET = "demo:web01/net0"
SIZE = (160, 40)


def remote_shadow(headless: HeadlessProcess, key: str) -> bool:
    with headless.client() as client:
        return client.snapshot().devices[key].shadow


async def test_attached_console_shows_and_drives_the_headless_engine(tmp_path: Path) -> None:
    """The attached console shows the headless svqtui's devices live, its keys act
    on the headless engine, and quitting detaches without asking or touching the
    devices (shadow state stays as the console left it)."""
    with HeadlessProcess(tmp_path) as headless:
        remote = RemoteRuntime(load_config(str(headless.config)), headless.socket_path)
        app = SvqtuiApp(remote)
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: app.snapshot is not None and BLK in app.snapshot.devices,
                "the headless devices",
            )
            assert app.snapshot is not None
            kinds = [s.kind for s in app.snapshot.sources]
            assert SourceKind.REMOTE in kinds and SourceKind.DEMO in kinds
            await until(
                pilot,
                lambda: any("demo: 2 synthetic VMs" in e.text for e in remote.log.since(0)[1]),
                "replayed events",
            )
            assert remote_shadow(headless, NET)
            await pilot.press("s")  # the first row's device: web01/net0
            await until(
                pilot,
                lambda: app.snapshot is not None and not app.snapshot.devices[NET].shadow,
                "shadow off seen",
            )
            await pilot.press("q")
            await pilot.pause(0.2)
        assert app.return_code == 0
        remote.close()
        assert not remote_shadow(headless, NET), "detaching changed nothing"
        assert remote_shadow(headless, BLK)
        assert headless.proc is not None and headless.proc.poll() is None


async def test_lost_connection_is_shown_and_retried(tmp_path: Path) -> None:
    """When the headless svqtui goes away the console says so once (log line,
    disconnected source, engine not alive) and picks it up again when it is back."""
    headless = HeadlessProcess(tmp_path).start()
    try:
        remote = RemoteRuntime(load_config(str(headless.config)), headless.socket_path)
        first = remote.monitor.refresh()
        assert first.engine.alive and first.vms
        assert headless.signal(signal.SIGTERM) == 0
        lost = remote.monitor.refresh()
        remote.monitor.refresh()
        assert not lost.engine.alive
        assert [s.connected for s in lost.sources] == [False]
        assert all(not vm.connected for vm in lost.vms), "the last view, marked stale"
        errors = [e for e in remote.log.since(0)[1] if e.level == "error"]
        assert len(errors) == 1 and "attach:" in errors[0].text
        headless.start()
        again = remote.monitor.refresh()
        assert again.engine.alive and all(vm.connected for vm in again.vms)
        assert any("connected again" in e.text for e in remote.log.since(0)[1])
        remote.close()
    finally:
        headless.stop()


def test_attach_without_a_headless_svqtui_is_one_line(tmp_path: Path) -> None:
    """--attach to a socket nobody serves: exit 1 with one line saying what to do."""
    result = svqtui("--attach", str(tmp_path / "none.sock"), home=tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "svqtui --headless" in lines[0], result.stderr


def test_check_raises_for_a_missing_socket(tmp_path: Path) -> None:
    """RemoteRuntime.check() is how --attach fails early, with a precise class."""
    remote = RemoteRuntime(load_config(None), str(tmp_path / "none.sock"))
    with pytest.raises(ControlUnreachable):
        remote.check()
