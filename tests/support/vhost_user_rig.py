"""An interposer test rig: a real engine, I/O loop and event log, a
VhostUserSource in front of real back-ends, and test front-ends.

Used by tests/sources/vhost_user and benchmarks/interposer.py. Everything it
starts is stopped by ``close()``.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Sequence
from pathlib import Path

from svqtui.engine import Engine
from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.model import DeviceView, LogEvent, QueueView
from svqtui.sources.base import SourceContext
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.sources.vhost_user.settings import DeviceLimits, VhostUserDevice
from tests.support.vhost_user_frontend import VhostUserFrontend
from tests.support.wait import wait_until


def open_fds() -> dict[int, str]:
    """This process's open fds and what they point to, after a garbage
    collection (an earlier test's engine closes its fds when collected)."""
    gc.collect()
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the listing's own fd is gone already
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
    return fds


def wait_fds(baseline: dict[int, str], what: str, timeout: float = 10.0) -> None:
    """Wait until this process's open fds are ``baseline`` again; on timeout
    fail with the fds that differ."""
    try:
        wait_until(lambda: open_fds() == baseline, timeout, what=what)
    except AssertionError:
        now = open_fds()
        extra = {fd: now[fd] for fd in now.keys() - baseline.keys()}
        gone = {fd: baseline[fd] for fd in baseline.keys() - now.keys()}
        raise AssertionError(f"{what}: still open {extra}, closed {gone}") from None


class Context:
    """A started engine, I/O loop and event log, like Runtime builds them."""

    def __init__(self, max_queues: int = 256) -> None:
        self.engine = Engine(max_queues)
        self.engine.start()
        self.loop = IOLoop()
        self.loop.start()
        self.log = EventLog()
        self.ctx = SourceContext(self.engine, self.loop, self.log)

    def close(self) -> None:
        self.loop.stop()
        self.engine.stop()

    def events(self, device_key: str | None = None, level: str | None = None) -> list[LogEvent]:
        _, events = self.log.since(0)
        return [
            e
            for e in events
            if (device_key is None or e.device_key == device_key)
            and (level is None or e.level == level)
        ]


class InterposerRig:
    """A started VhostUserSource whose devices front the given back-end sockets."""

    def __init__(
        self,
        context: Context,
        sock_dir: Path,
        backends: Sequence[str | Path],
        shadow: bool | Sequence[bool] = False,
        limits: Sequence[DeviceLimits] | None = None,
    ) -> None:
        """``shadow`` and ``limits``: one for all devices, or one per device."""
        self.context = context
        shadows = [shadow] * len(backends) if isinstance(shadow, bool) else list(shadow)
        limit_list = list(limits) if limits is not None else [DeviceLimits()] * len(backends)
        self.devices = [
            VhostUserDevice(
                f"blk{i}",
                str(sock_dir / f"vu{i}.sock"),
                str(backend),
                shadows[i],
                limits=limit_list[i],
            )
            for i, backend in enumerate(backends)
        ]
        self.source = VhostUserSource(self.devices)
        self.source.start(context.ctx)
        self.frontends: list[VhostUserFrontend] = []

    @classmethod
    def around(cls, source: VhostUserSource, context: Context | None = None) -> InterposerRig:
        """The rig's helpers for a source started elsewhere (e.g. by a Runtime)."""
        rig = cls.__new__(cls)
        rig.context = context  # type: ignore[assignment]
        rig.devices = list(source.configs)
        rig.source = source
        rig.frontends = []
        return rig

    def key(self, i: int = 0) -> str:
        return f"vu:{self.devices[i].name}"

    def frontend(self, i: int = 0, **kw: object) -> VhostUserFrontend:
        """A connected test front-end on device ``i``'s listen socket (closed by close())."""
        fe = VhostUserFrontend(self.devices[i].listen, **kw)  # type: ignore[arg-type]
        self.frontends.append(fe)
        return fe.connect()

    def ready_frontend(self, i: int = 0, timeout: float = 10.0, **kw: object) -> VhostUserFrontend:
        """A front-end that completed init(), retrying while the interposer or
        the back-end (qemu-storage-daemon takes one client at a time) still
        winds down an earlier connection."""
        deadline = time.monotonic() + timeout
        while True:
            fe = self.frontend(i, **kw)
            try:
                return fe.init()
            except OSError:
                fe.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def device(self, i: int = 0) -> DeviceView:
        for vm in self.source.collect(self.context.engine.snapshot()):
            for dev in vm.devices:
                if dev.key == self.key(i):
                    return dev
        raise KeyError(self.key(i))

    def queue(self, q: int, i: int = 0) -> QueueView:
        for view in self.device(i).queues:
            if view.index == q:
                return view
        raise KeyError(q)

    def wait_connected(self, i: int = 0, connected: bool = True) -> None:
        wait_until(
            lambda: self.device(i).connected == connected,
            what=f"{self.key(i)} {'connected' if connected else 'disconnected'}",
        )

    def close(self) -> None:
        for fe in self.frontends:
            fe.close()
        self.source.stop()
