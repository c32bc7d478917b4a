"""What a console drives: the ``ConsoleTarget`` protocol.

A local ``Runtime`` (engine, sources and monitor in this process) and an
attached ``RemoteRuntime`` (a headless svqtui reached over its control
socket) both satisfy ``ConsoleTarget``, so the console has one code path.
Its ``TargetMonitor`` is what the snapshot feed refreshes.
"""

from __future__ import annotations

from typing import Protocol

from svqtui.config import Config
from svqtui.engine import Link
from svqtui.eventlog import EventLog
from svqtui.model import Snapshot


class TargetMonitor(Protocol):
    """The target's monitor: a snapshot per ``refresh()``, at ``interval_s``."""

    interval_s: float

    def refresh(self) -> Snapshot: ...


class ConsoleTarget(Protocol):
    """A local Runtime or a RemoteRuntime: config, log, monitor and the actions."""

    @property
    def config(self) -> Config: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def monitor(self) -> TargetMonitor: ...

    @property
    def owns_devices(self) -> bool:
        """True when quitting the console hands shadowed devices back (a
        local runtime); False when attached: the devices live elsewhere."""
        ...

    def set_shadow(self, device_key: str, on: bool) -> None: ...

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None: ...

    def inject(self, device_key: str, queue: int, link: Link) -> None: ...

    def reset(self, device_key: str | None = None) -> None: ...
