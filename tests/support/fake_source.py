"""The one shared fake source: reports whatever views a test sets.

Used where what is under test is the monitor, the runtime's routing or the
source contract itself, not a device. A real source (demo, vhost-user, QMP)
is used everywhere a real one runs here.
"""

from __future__ import annotations

from svqtui.engine import EngineSnapshot, Link
from svqtui.model import DeviceView, QueueView, SourceStatus, VMView
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.errors import UnknownDevice


class FakeSource(Source):
    """One VM "vm" with one device "d" and one queue (``self.queue``), unless
    the test sets ``self.vms``; ``fail`` makes collect() raise; every action
    is recorded in ``actions``."""

    def __init__(self, name: str = "fake", kind: str = "fake") -> None:
        self.name = name
        self.kind = kind
        self.queue = QueueView(index=0, kicks=0, calls=0)
        self.vms: list[VMView] | None = None
        self.fail: Exception | None = None
        self.actions: list[tuple[str, ...]] = []
        self.started = False

    def start(self, ctx: SourceContext) -> None:
        self.started = True

    def stop(self) -> None:
        self.started = False

    def _views(self) -> list[VMView]:
        if self.vms is not None:
            return self.vms
        dev = DeviceView(key="d", name="dev", kind="x", source=self.kind, queues=(self.queue,))
        return [VMView(key="vm", name="vm", source=self.kind, devices=(dev,))]

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        if self.fail:
            raise self.fail
        return self._views()

    def status(self) -> SourceStatus:
        return SourceStatus(self.name, self.kind, self.fail is None)

    def owns(self, device_key: str) -> bool:
        return any(d.key == device_key for vm in self._views() for d in vm.devices)

    def _known(self, device_key: str) -> None:
        if not self.owns(device_key):
            raise UnknownDevice(f"{self.name}: no device {device_key!r}")

    def set_shadow(self, device_key: str, on: bool) -> None:
        self._known(device_key)
        self.actions.append(("shadow", device_key, str(on)))

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        self._known(device_key)
        self.actions.append(("mask", device_key, str(queue), str(masked)))

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        self._known(device_key)
        self.actions.append(("inject", device_key, str(queue), link.name))

    def reset(self, device_key: str | None = None) -> None:
        if device_key is not None:
            self._known(device_key)
        self.actions.append(("reset", device_key or "*"))
