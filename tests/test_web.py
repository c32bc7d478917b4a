"""``svqtui --web``: the console served by textual-serve, checked through the
websocket protocol the page speaks and in a real headless Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import psutil
from PIL import Image

from svqtui.web import console_argv, is_loopback
from tests.support.chromium import chromium, free_port, screenshot_after_click
from tests.support.wait import wait_until


def test_console_argv_drops_only_the_web_options() -> None:
    """Each tab's console gets every argument but --web, --port N and --bind A."""
    argv = ["--web", "--port", "9000", "--bind=127.0.0.2", "--seed", "3", "--attach", "/s"]
    assert console_argv(argv) == ["--seed", "3", "--attach", "/s"]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.0.2.1")


@contextlib.contextmanager
def web_svqtui(tmp_path: Path, *extra: str) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    """``svqtui --web`` on the embedded demo (from an empty directory), on a
    free loopback port; stopped by PID."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "svqtui", "--web", "--port", str(port), "--seed", "5", *extra],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def listening() -> bool:
            with (
                contextlib.suppress(OSError),
                __import__("socket").create_connection(("127.0.0.1", port), timeout=0.5),
            ):
                return True
            return False

        wait_until(listening, what="svqtui --web listening")
        yield port, proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _console_text(port: int, seconds: float) -> str:
    """What the console writes to a tab in ``seconds``, via the page's websocket."""
    chunks: list[str] = []
    url = f"ws://127.0.0.1:{port}/ws?width=160&height=40"
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                message = await ws.receive(timeout=max(0.1, deadline - time.monotonic()))
            except TimeoutError:
                break
            if message.type is aiohttp.WSMsgType.BINARY:
                chunks.append(message.data.decode("utf-8", "replace"))
            elif message.type is aiohttp.WSMsgType.TEXT:
                chunks.append(message.data)
            elif message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
                break
    return "".join(chunks)


def test_a_tab_gets_a_live_console(tmp_path: Path) -> None:
    """A websocket client (as the page) gets a console of its own: the demo's
    VMs and the engine status arrive as terminal output, and nothing the
    console prints before it starts breaks the web driver's handshake."""
    with web_svqtui(tmp_path) as (port, _):
        text = asyncio.run(_console_text(port, 15.0))
    assert "web01" in text and "engine" in text


def test_a_non_loopback_bind_says_there_is_no_authentication(tmp_path: Path) -> None:
    """--bind 0.0.0.0 serves, and says on stderr that nothing authenticates."""
    with web_svqtui(tmp_path, "--bind", "0.0.0.0") as (_, proc):
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "no authentication" in err


def test_a_real_browser_shows_the_console(tmp_path: Path) -> None:
    """Headless Chromium loads the page, starts the console (textual-serve's
    start button) and the screenshot shows it: the demo's sparklines (cyan)
    and UNMASKED states (green) are drawn, which the start page has none of."""
    shot = tmp_path / "web.png"
    with web_svqtui(tmp_path) as (port, _), chromium() as devtools:
        asyncio.run(
            screenshot_after_click(devtools, f"http://127.0.0.1:{port}/", shot, (700, 425), 10.0)
        )
    raw = Image.open(shot).convert("RGB").tobytes()
    pixels = [(raw[i], raw[i + 1], raw[i + 2]) for i in range(0, len(raw), 3)]
    cyan = sum(1 for r, g, b in pixels if r < 140 and g > 170 and b > 190)
    green = sum(1 for r, g, b in pixels if g > 150 and r < 180 and b < 80)
    assert cyan > 2000 and green > 1000, (cyan, green)
    if os.environ.get("SVQTUI_WEB_SCREENSHOT"):  # regenerate docs/web.png
        Path(os.environ["SVQTUI_WEB_SCREENSHOT"]).write_bytes(shot.read_bytes())


def test_a_killed_server_leaves_no_console_behind(tmp_path: Path) -> None:
    """SIGKILL to the web server while a tab is open: the console it started
    for the tab follows it (parent-death signal), so no orphan keeps the
    demo's engine, QMP monitors or interposer sockets."""
    with web_svqtui(tmp_path) as (port, proc):

        async def tab() -> list[psutil.Process]:
            url = f"ws://127.0.0.1:{port}/ws?width=80&height=24"
            async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
                await ws.receive(timeout=15)  # the console is up
                server = psutil.Process(proc.pid)
                consoles = [
                    p for p in server.children(recursive=True) if "svqtui" in " ".join(p.cmdline())
                ]
                proc.kill()  # while the tab is still open
                return consoles

        consoles = asyncio.run(tab())
        assert consoles, "a console process for the tab"
        _, alive = psutil.wait_procs(consoles, timeout=10)
        assert not alive, [p.pid for p in alive]
