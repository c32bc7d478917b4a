"""A real headless Chromium (Debian's ``chromium``) driven over the DevTools
protocol: open a page, click, screenshot. Started by the test on loopback,
stopped by PID."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp

BINARY = shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def chromium(width: int = 1400, height: int = 850) -> Iterator[int]:
    """A headless Chromium with its DevTools endpoint on a free loopback port."""
    assert BINARY is not None, "chromium is not installed (scripts/test installs it)"
    port = free_port()
    profile = tempfile.mkdtemp(prefix="svqtui-chromium-")
    proc = subprocess.Popen(
        [
            BINARY,
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            "--remote-debugging-address=127.0.0.1",
            f"--remote-debugging-port={port}",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


async def _page_socket(session: aiohttp.ClientSession, port: int) -> str:
    deadline = time.monotonic() + 20
    while True:
        try:
            async with session.get(f"http://127.0.0.1:{port}/json") as reply:
                targets = await reply.json()
            return str(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
        except (aiohttp.ClientError, StopIteration):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def screenshot_after_click(
    port: int, url: str, out: Path, click: tuple[int, int], wait_s: float
) -> None:
    """Open ``url``, click at ``click`` (textual-serve's start button), wait,
    and write a PNG screenshot of the page to ``out``."""
    async with aiohttp.ClientSession() as session:
        ws_url = await _page_socket(session, port)
        async with session.ws_connect(ws_url, max_msg_size=64 << 20) as ws:
            ids = iter(range(1, 1_000_000))

            async def call(method: str, **params: Any) -> dict[str, Any]:
                msg_id = next(ids)
                await ws.send_json({"id": msg_id, "method": method, "params": params})
                async for message in ws:
                    data = json.loads(message.data)
                    if data.get("id") == msg_id:
                        return dict(data.get("result", {}))
                raise RuntimeError(f"DevTools closed during {method}")

            await call("Page.enable")
            await call("Page.navigate", url=url)
            await asyncio.sleep(2.0)
            x, y = click
            for kind in ("mousePressed", "mouseReleased"):
                await call(
                    "Input.dispatchMouseEvent", type=kind, x=x, y=y, button="left", clickCount=1
                )
            await asyncio.sleep(wait_s)
            shot = await call("Page.captureScreenshot", format="png")
            out.write_bytes(base64.b64decode(shot["data"]))
