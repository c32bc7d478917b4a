"""A real ``python -m svqtui --headless`` subprocess for tests, and ``svqtui ctl`` runs.

``HeadlessProcess`` writes a config (demo on with a seed, no QMP discovery,
the control socket in the given directory), starts svqtui headless with its
stderr in a file, waits until the control socket answers ``hello``, and
always kills the process in ``stop()`` (use it as a context manager or from a
fixture finalizer).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from svqtui.control.client import ControlClient
from svqtui.errors import ControlError
from svqtui.model import DeviceView

READY_TIMEOUT_S = 30.0


def svqtui_env(home: Path) -> dict[str, str]:
    """The environment for svqtui subprocesses: no user config, no real runtime dir."""
    return {
        **os.environ,
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "XDG_RUNTIME_DIR": str(home / "xdg-run"),
    }


def write_config(
    directory: Path, seed: int = 7, refresh: float = 0.2, socket: Path | None = None
) -> Path:
    """A config.yaml: the demo with ``seed``, no QMP discovery, the control socket
    at ``socket`` (default ``directory/run/c.sock``)."""
    cfg = directory / "config.yaml"
    lines = [
        f"refresh: {refresh}",
        f"demo: {{enabled: true, seed: {seed}}}",
        "qmp: {discover: false}",
        f"control: {{socket: {socket or directory / 'run' / 'c.sock'}}}",
    ]
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def svqtui(
    *args: str, home: Path, timeout: float = 60, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m svqtui ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "svqtui", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=svqtui_env(home),
        input=input_text,
        stdin=None if input_text is not None else subprocess.DEVNULL,
    )


class HeadlessProcess:
    """``python -m svqtui -c CONFIG --headless`` running in the background."""

    def __init__(
        self,
        directory: Path,
        config: Path | None = None,
        env: dict[str, str] | None = None,
        args: Sequence[str] = (),
        **config_args: Any,
    ) -> None:
        """``env``: extra environment variables (NOTIFY_SOCKET, ...);
        ``args``: extra command-line arguments (``--takeover``)."""
        self.directory = directory
        self.env = env or {}
        self.args = list(args)
        self.config = config or write_config(directory, **config_args)
        self.stderr_path = directory / f"headless-{time.monotonic_ns()}.stderr"
        self.proc: subprocess.Popen[bytes] | None = None
        self.socket_path = ""

    def start(self, wait: bool = True) -> HeadlessProcess:
        from svqtui.config import load_config

        self.socket_path = load_config(str(self.config)).control_path
        with self.stderr_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "svqtui", "-c", str(self.config), "--headless", *self.args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
                env={**svqtui_env(self.directory), **self.env},
            )
        if wait:
            self.wait_ready()
        return self

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def client(self, timeout: float = 10.0) -> ControlClient:
        return ControlClient(self.socket_path, timeout).connect()

    def wait_ready(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Wait until the control socket answers; fail with stderr if svqtui exits."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"svqtui --headless exited with {self.proc.returncode}:\n{self.stderr}"
                )
            try:
                with self.client() as c:
                    c.hello()
                return
            except ControlError:
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"svqtui --headless did not answer within {timeout} s:\n{self.stderr}"
                    ) from None
                time.sleep(0.05)

    def signal(self, sig: signal.Signals, timeout: float = 30.0) -> int:
        """Send ``sig`` and return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it lingers; never leaves the process behind."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)

    def __enter__(self) -> HeadlessProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def connected_device(proc: HeadlessProcess, key: str) -> DeviceView | None:
    """Device ``key`` in ``proc``'s latest snapshot when QEMU is connected to it."""
    with proc.client() as c:
        dev = c.snapshot().devices.get(key)
    return dev if dev is not None and dev.connected else None
