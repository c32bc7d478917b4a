"""What the console needs from whatever drives it.

A local ``Runtime`` (engine, sources and monitor in this process) and an
attached ``RemoteRuntime`` (a headless svqtui reached over its control
socket) both satisfy ``ConsoleBackend``, so the console has one code path.
"""

from __future__ import annotations

from typing import Protocol

from svqtui.config import Config
from svqtui.engine import Link
from svqtui.eventlog import EventLog
from svqtui.model import Snapshot


class SnapshotSource(Protocol):
    interval_s: float

    def refresh(self) -> Snapshot: ...


class ConsoleBackend(Protocol):
    @property
    def config(self) -> Config: ...

    @property
    def log(self) -> EventLog: ...

    @property
    def monitor(self) -> SnapshotSource: ...

    @property
    def owns_devices(self) -> bool:
        """True when quitting the console hands shadowed devices back (a
        local runtime); False when attached: the devices live elsewhere."""
        ...

    def set_shadow(self, device_key: str, on: bool) -> None: ...

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None: ...

    def inject(self, device_key: str, queue: int, link: Link) -> None: ...

    def reset(self, device_key: str | None = None) -> None: ...
