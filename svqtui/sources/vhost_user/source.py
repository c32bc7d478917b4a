"""The vhost-user source: the configured interposed devices behind the Source interface.

``start()`` listens on every device's socket from the control loop thread;
``collect()`` reads published state without blocking; actions are called from
other threads (a UI worker, the control socket) and run as coroutines on the
control loop, so every change to a connection is serialised in that thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from svqtui.engine import EngineSnapshot, Link
from svqtui.errors import ListenError, NotConnected, SourceError, UnknownDevice
from svqtui.model import DeviceView, SourceKind, SourceStatus, VMView
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.vhost_user.device import DeviceInterposer
from svqtui.sources.vhost_user.settings import VhostUserDevice

T = TypeVar("T")
ACTION_TIMEOUT_S = 15.0


class VhostUserSource(Source):
    """Interposes svqtui between QEMU and each configured vhost-user back-end."""

    kind = SourceKind.VHOST_USER
    name = "vhost-user"

    def __init__(self, devices: Sequence[VhostUserDevice]) -> None:
        self.configs = tuple(devices)
        self._ctx: SourceContext | None = None
        self._devices: dict[str, DeviceInterposer] = {}

    def start(self, ctx: SourceContext) -> None:
        """Listen on every device's socket; a device that cannot listen is
        logged and shown with the reason, the others go on."""
        self._ctx = ctx
        for config in self.configs:
            device = DeviceInterposer(config, ctx)
            self._devices[device.key] = device
            try:
                ctx.loop.run(device.listen())
            except ListenError as err:
                ctx.log.error(f"{self.name}: {err}", device_key=device.key)

    def stop(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        for device in self._devices.values():
            if ctx.loop.running:
                ctx.loop.run(device.close())

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        if self._ctx is None:
            return []
        return [device.view(engine) for device in self._devices.values()]

    def device_view(self, device_key: str) -> DeviceView:
        """One device's current view, copying only its own engine slots
        (fresh, between refreshes: the lab's migration reads this)."""
        ctx = self._ctx
        if ctx is None:
            raise NotConnected(f"{self.name}: the source is not started")
        device = self._device(device_key)
        engine = ctx.engine.snapshot_of(device.slots())
        return device.view(engine).devices[0]

    def status(self) -> SourceStatus:
        listening = [d for d in self._devices.values() if d.listening]
        connected = [d for d in listening if d.status == "connected"]
        if self._devices and not listening:
            return SourceStatus(self.name, self.kind, False, "cannot listen on any device socket")
        return SourceStatus(
            self.name,
            self.kind,
            bool(listening),
            f"{len(connected)} of {len(self._devices)} device(s) connected",
        )

    def owns(self, device_key: str) -> bool:
        return device_key in self._devices

    # -- actions ---------------------------------------------------------------------

    def _device(self, device_key: str) -> DeviceInterposer:
        device = self._devices.get(device_key)
        if device is None:
            raise UnknownDevice(f"{self.name}: no interposed device {device_key!r}")
        return device

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        ctx = self._ctx
        if ctx is None:
            coro.close()
            raise NotConnected(f"{self.name}: the source is not started")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is ctx.loop.loop or threading.current_thread().name == "svqtui-control":
            coro.close()
            raise SourceError(f"{self.name}: actions must not be called from the control loop")
        return ctx.loop.run(coro, timeout=ACTION_TIMEOUT_S)

    def set_shadow(self, device_key: str, on: bool) -> None:
        self._run(self._device(device_key).set_shadow(on))

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        self._run(self._device(device_key).set_masked(queue, masked))

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        self._run(self._device(device_key).inject(queue, link))

    def reset(self, device_key: str | None = None) -> None:
        if self._ctx is None:
            return
        keys = [device_key] if device_key is not None else list(self._devices)
        for key in keys:
            self._run(self._device(key).reset())
