"""An in-process Runtime serving its control socket, for the control tests
(real engine, real demo source in lock-step, real unix socket): ``serve``
starts one and cleans up after, ``demo_runtime`` builds one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from svqtui.config import Config
from svqtui.control.client import ControlClient
from svqtui.control.server import ControlServer
from svqtui.control.sockfile import SocketFile
from svqtui.runtime import Runtime
from svqtui.sources.base import Source
from svqtui.sources.demo import DemoSource
from svqtui.sources.demo.settings import DemoConfig
from svqtui.sources.qmp.settings import QMPConfig


def make_config(socket: Path) -> Config:
    return Config(
        refresh_s=0.2,
        control_socket=str(socket),
        sections={"demo": DemoConfig(enabled=True, seed=7), "qmp": QMPConfig(discover=False)},
    )


@dataclass
class Served:
    runtime: Runtime
    path: str
    server: ControlServer

    def client(self, timeout: float = 10.0) -> ControlClient:
        return ControlClient(self.path, timeout).connect()


@contextlib.contextmanager
def serve(runtime: Runtime) -> Iterator[Served]:
    """Start ``runtime`` and serve its control socket; stop and clean up after."""
    sockfile = SocketFile(runtime.config.control_path)
    sock = sockfile.claim()
    server = ControlServer(runtime)
    try:
        runtime.start()
        server.start(sock)
        yield Served(runtime, sockfile.path, server)
    finally:
        server.stop()
        sock.close()
        runtime.stop()
        sockfile.release()


def demo_runtime(socket: Path, sources: list[Source] | None = None) -> Runtime:
    """A Runtime with the demo in lock-step (no threads: counters move only
    when a test calls advance()), unless ``sources`` are given."""
    return Runtime(make_config(socket), sources or [DemoSource(seed=7, autorun=False)])
