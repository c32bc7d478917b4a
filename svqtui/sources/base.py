"""The interface every device source implements (demo, vhost-user, QMP, ...).

A source keeps its own state current in the background and answers
``collect()`` from memory, so the monitor never waits on a socket; the monitor
reads the engine once per refresh and hands that copy to every source
(docs/design.md#data-flow). A source is a plug-in: see
svqtui.sources.registry for how a config section becomes sources. Actions
(shadow, mask, inject, reset) may block briefly (an engine command, a vhost-user
round trip): callers run them off the UI's event loop.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING

from svqtui.model import SourceStatus, VMView
from svqtui.sources.errors import ActionUnsupported

if TYPE_CHECKING:
    from svqtui.engine import Engine, EngineSnapshot, Link
    from svqtui.engine.faults import Fault
    from svqtui.eventlog import EventLog
    from svqtui.io_loop import IOLoop


@dataclass(frozen=True, slots=True)
class SourceContext:
    """What a running source may use: the shared engine, the I/O loop
    (an asyncio loop in its own thread, never the UI's) and the event log."""

    engine: Engine
    loop: IOLoop
    log: EventLog


class Source(abc.ABC):
    """A provider of VMs and devices, and of the actions on them."""

    kind: str  # a SourceKind, or a plug-in's own kind
    name: str

    @abc.abstractmethod
    def start(self, ctx: SourceContext) -> None:
        """Begin watching; must return quickly (start background work)."""

    @abc.abstractmethod
    def stop(self) -> None:
        """Stop and release every fd, thread and engine queue (idempotent)."""

    @abc.abstractmethod
    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        """The current VMs and devices, from memory, without blocking.
        ``engine`` is this refresh's one copy of the engine's counters (the
        same for every source; empty when there is no engine)."""

    @abc.abstractmethod
    def status(self) -> SourceStatus:
        """Whether the source is connected, in one line."""

    @abc.abstractmethod
    def owns(self, device_key: str) -> bool:
        """True when this source has device ``device_key`` (cheap: no collect)."""

    def set_shadow(self, device_key: str, on: bool) -> None:
        raise ActionUnsupported(f"{self.name}: shadow mode is not available for {device_key}")

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        raise ActionUnsupported(f"{self.name}: masking is not available for {device_key}")

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        """Arm a fault on a shadowed queue's link (None clears every fault)."""
        raise ActionUnsupported(f"{self.name}: fault injection is not available for {device_key}")

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        raise ActionUnsupported(f"{self.name}: injection is not available for {device_key}")

    def reload(self, settings: object) -> list[str] | None:
        """Apply new settings of this source's config section in place (a
        config reload), returning one line per change; ``None`` (the default)
        when the source cannot, and the runtime stops it and builds it anew."""
        return None

    @abc.abstractmethod
    def reset(self, device_key: str | None = None) -> None:
        """Zero counters (all of this source's devices when device_key is None)."""
