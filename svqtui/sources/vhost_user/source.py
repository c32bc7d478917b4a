"""The vhost-user source: the configured interposed devices behind the Source interface.

``start()`` listens on every device's socket from the I/O loop thread;
``collect()`` reads published state without blocking; actions are called from
other threads (a UI worker, the control socket) and run as coroutines on the
I/O loop, so every change to a connection is serialised in that thread.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from svqtui.engine import EngineSnapshot, Link
from svqtui.engine.faults import Fault
from svqtui.errors import SvqtuiError
from svqtui.io_loop import IOLoop
from svqtui.model import DeviceView, SourceKind, SourceStatus, VMView
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.errors import UnknownDevice
from svqtui.sources.vhost_user.device import DeviceInterposer
from svqtui.sources.vhost_user.errors import ListenError, NotConnected
from svqtui.sources.vhost_user.handover import DeviceState
from svqtui.sources.vhost_user.settings import VhostUserDevice
from svqtui.takeover.errors import StateRefused
from svqtui.takeover.state import FdSink

ACTION_TIMEOUT_S = 15.0
DRAIN_TIMEOUT_S = 15.0  # shadow off (at most the switch timeout) then close


def _endpoints(device: VhostUserDevice) -> tuple[str, str]:
    return device.listen, device.backend


class VhostUserSource(Source):
    """Interposes svqtui between QEMU and each configured vhost-user back-end."""

    kind = SourceKind.VHOST_USER
    name = "vhost-user"

    def __init__(self, devices: Sequence[VhostUserDevice]) -> None:
        self.configs = tuple(devices)
        self._ctx: SourceContext | None = None
        self._devices: dict[str, DeviceInterposer] = {}
        self.defer_listen = False  # a takeover: adopt() serves the old svqtui's sockets

    def start(self, ctx: SourceContext) -> None:
        """Listen on every device's socket; a device that cannot listen is
        logged and shown with the reason, the others go on. With
        ``defer_listen`` (a takeover) nothing listens until ``adopt``."""
        self._ctx = ctx
        for config in self.configs:
            device = DeviceInterposer(config, ctx)
            self._devices[device.key] = device
            if self.defer_listen:
                device.status = "waiting for the takeover"
                continue
            try:
                ctx.loop.call(device.listen(), what=f"{self.name}: listen for {device.key}")
            except ListenError as err:
                ctx.log.error(f"{self.name}: {err}", device_key=device.key)

    def reload(self, settings: object) -> list[str]:
        """New ``devices:``: removed devices are drained (shadow off, then
        closed: QEMU sees its back-end go away), new ones listen, a device
        whose listen or backend changed is removed and added again, a new
        ``shadow`` applies from the device's next connection. Devices that
        did not change are not touched."""
        assert isinstance(settings, tuple)
        new: dict[str, VhostUserDevice] = {d.name: d for d in settings}
        old: dict[str, VhostUserDevice] = {d.name: d for d in self.configs}
        changes: list[str] = []
        gone = [n for n in old if n not in new or _endpoints(old[n]) != _endpoints(new[n])]
        added = [n for n in new if n not in old or n in gone]
        self.configs = tuple(settings)
        ctx = self._ctx
        devices = dict(self._devices)  # copy on write: collect() iterates the old dict
        for name in gone:
            device = devices.pop(f"vu:{name}", None)
            if ctx is not None and device is not None:
                what = f"{self.name}: drain {device.key}"
                try:
                    ctx.loop.call(
                        device.drain("removed from the configuration"), DRAIN_TIMEOUT_S, what=what
                    )
                except SvqtuiError as err:  # it is gone from the list either way
                    ctx.log.error(f"{what}: {err}", device_key=device.key)
            if name in new:
                changes.append(
                    f"{name}: listen/backend changed: closed, listening again on {new[name].listen}"
                )
            else:
                changes.append(f"{name}: removed (drained and closed)")
        self._devices = devices
        for name in new:
            if name in old and name not in gone and old[name].shadow != new[name].shadow:
                device = devices.get(f"vu:{name}")
                if device is not None:
                    device.config = new[name]
                    device.shadow_wanted = new[name].shadow
                state = "on" if new[name].shadow else "off"
                changes.append(f"{name}: shadow {state} from its next connection")
            elif name in old and name not in gone and f"vu:{name}" in devices:
                devices[f"vu:{name}"].config = new[name]  # only its line moved
        for name in added:
            if ctx is None:
                if name not in gone:
                    changes.append(f"{name}: added")
                continue
            device = DeviceInterposer(new[name], ctx)
            devices = {**self._devices, device.key: device}
            self._devices = devices
            try:
                ctx.loop.call(device.listen(), what=f"{self.name}: listen for {device.key}")
            except ListenError as err:
                ctx.log.error(f"{self.name}: {err}", device_key=device.key)
                changes.append(f"{name}: added, but {err}")
                continue
            if name not in gone:
                changes.append(f"{name}: added, listening on {new[name].listen}")
        self._devices = {
            d: self._devices[d] for d in (f"vu:{n}" for n in new) if d in self._devices
        }
        return changes

    # -- a takeover (docs/design.md#takeover; coroutines on the I/O loop) ----------

    async def freeze(self, deadline: float) -> None:
        """Freeze every device at a message boundary, or none (TakeoverBusy)."""
        frozen: list[DeviceInterposer] = []
        try:
            for device in self._devices.values():
                frozen.append(device)
                await device.freeze(deadline)
        except BaseException:
            for device in frozen:
                device.thaw()
            raise

    def thaw(self) -> None:
        for device in self._devices.values():
            device.thaw()

    async def capture(self, sink: FdSink) -> list[dict[str, Any]]:
        return [device.capture(sink) for device in self._devices.values()]

    async def release_engine(self) -> dict[str, dict[int, tuple[int, int]]]:
        """Every relayed ring leaves the engine; per device name, the bases."""
        return {d.config.name: d.release_engine() for d in self._devices.values()}

    async def rearm(self) -> None:
        for device in self._devices.values():
            device.rearm()

    def takeover_check(self, states: Sequence[DeviceState]) -> None:
        """The handed-over devices fit this configuration (StateRefused):
        each by name, on the same listen path."""
        mine = {d.config.name: d.config for d in self._devices.values()}
        for st in states:
            cfg = mine.get(st.name)
            if cfg is None:
                raise StateRefused(
                    f"takeover refused: device {st.name} runs in the old svqtui but is not "
                    "in this configuration (add it, or remove it there by a reload first)"
                )
            if os.path.abspath(cfg.listen) != os.path.abspath(st.listen_path):
                raise StateRefused(
                    f"takeover refused: device {st.name} listens on {st.listen_path} in the "
                    f"old svqtui, on {cfg.listen} here (change one by a reload first)"
                )

    def adopt(self, states: Sequence[DeviceState], fds: list[int]) -> None:
        """Serve the handed-over devices; the configured devices that were
        not handed over listen now."""
        ctx = self._ctx
        assert ctx is not None
        self.defer_listen = False
        by_name = {st.name: st for st in states}
        for device in self._devices.values():
            st = by_name.get(device.config.name)
            what = f"{self.name}: take over {device.key}"
            try:
                if st is not None:
                    ctx.loop.call(device.adopt(st, fds), what=what)
                else:
                    ctx.loop.call(device.listen(), what=f"{self.name}: listen for {device.key}")
            except SvqtuiError as err:
                ctx.log.error(f"{what}: {err}", device_key=device.key)

    def stop(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None:
            return
        for device in self._devices.values():
            if ctx.loop.running:
                ctx.loop.call(device.close(), what=f"{self.name}: close {device.key}")

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

    def _loop(self) -> IOLoop:
        if self._ctx is None:
            raise NotConnected(f"{self.name}: the source is not started")
        return self._ctx.loop

    def set_shadow(self, device_key: str, on: bool) -> None:
        loop = self._loop()
        what = f"{self.name}: shadow {'on' if on else 'off'} for {device_key}"
        loop.call(self._device(device_key).set_shadow(on), ACTION_TIMEOUT_S, what=what)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        loop = self._loop()
        what = f"{self.name}: {'mask' if masked else 'unmask'} {device_key} queue {queue}"
        loop.call(self._device(device_key).set_masked(queue, masked), ACTION_TIMEOUT_S, what=what)

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        loop = self._loop()
        what = f"{self.name}: inject a {link.name.lower()} into {device_key} queue {queue}"
        loop.call(self._device(device_key).inject(queue, link), ACTION_TIMEOUT_S, what=what)

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        loop = self._loop()
        what = (
            f"{self.name}: {fault.name if fault else 'clear faults'} on {device_key} queue {queue}"
        )
        loop.call(self._device(device_key).set_fault(queue, fault), ACTION_TIMEOUT_S, what=what)

    def reset(self, device_key: str | None = None) -> None:
        if self._ctx is None:
            return
        keys = [device_key] if device_key is not None else list(self._devices)
        for key in keys:
            loop = self._loop()
            what = f"{self.name}: reset the counters of {key}"
            loop.call(self._device(key).reset(), ACTION_TIMEOUT_S, what=what)
