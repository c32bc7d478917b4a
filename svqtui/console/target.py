"""What a console drives: the ``ConsoleTarget`` protocol.

A local ``Runtime`` (engine, sources and monitor in this process) and an
attached ``RemoteRuntime`` (a headless svqtui reached over its control
socket) both satisfy ``ConsoleTarget``, so the console has one code path.
Its ``TargetMonitor`` publishes the snapshots the console shows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from svqtui.config import Config
from svqtui.engine import Link
from svqtui.engine.faults import Fault
from svqtui.eventlog import EventLog
from svqtui.model import Snapshot


class TargetMonitor(Protocol):
    """The target's monitor (a local Monitor or an attached RemoteMonitor):
    it refreshes on its own clock; the console subscribes to its snapshots."""

    interval_s: float
    latest: Snapshot | None

    @property
    def running(self) -> bool:
        """Whether its refresh clock runs (tests drive an unclocked one)."""
        ...

    def start(self) -> None: ...

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]: ...

    def refresh_soon(self, wait: bool = False, timeout: float = 5.0) -> Snapshot | None: ...

    def set_interval(self, seconds: float) -> None: ...


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

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None: ...

    def reset(self, device_key: str | None = None) -> None: ...
