"""The lab's vhost-user source: svqtui's interposer on both slots, idle slot hidden.

The lab interposes both slots' devices all the time (a destination QEMU must
find its socket listening), but only the slot a QEMU is connected to is part of
the demo; the other would show as a disconnected device ("DOWN") between
migrations. ``LabInterposers`` wraps the real ``VhostUserSource`` and leaves
out the devices no QEMU is connected to, and marks the others as not *real*:
quitting the lab stops its VM anyway, so the console's question before handing
a shadowed device's path back would ask about nothing. Everything else,
actions included (routed by ``owns``, which still knows every device), is the
wrapped source's.
"""

from __future__ import annotations

import dataclasses

from svqtui.engine import EngineSnapshot, Link
from svqtui.engine.faults import Fault
from svqtui.model import SourceKind, SourceStatus, VMView
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.vhost_user import VhostUserSource


class LabInterposers(Source):
    """A ``VhostUserSource`` whose idle (unconnected) devices are not listed and
    whose devices are disposable (``real=False``)."""

    kind = SourceKind.VHOST_USER

    def __init__(self, inner: VhostUserSource) -> None:
        self.inner = inner
        self.name = inner.name

    def start(self, ctx: SourceContext) -> None:
        self.inner.start(ctx)

    def stop(self) -> None:
        self.inner.stop()

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        return [
            dataclasses.replace(
                vm, devices=tuple(dataclasses.replace(d, real=False) for d in vm.devices)
            )
            for vm in self.inner.collect(engine)
            if not vm.connected or any(d.connected for d in vm.devices)
        ]

    def status(self) -> SourceStatus:
        return self.inner.status()

    def owns(self, device_key: str) -> bool:
        return self.inner.owns(device_key)

    def set_shadow(self, device_key: str, on: bool) -> None:
        self.inner.set_shadow(device_key, on)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        self.inner.set_masked(device_key, queue, masked)

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        self.inner.set_fault(device_key, queue, fault)

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        self.inner.inject(device_key, queue, link)

    def reset(self, device_key: str | None = None) -> None:
        self.inner.reset(device_key)
