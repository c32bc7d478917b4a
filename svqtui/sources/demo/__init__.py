"""The embedded demo source package: ``source`` (synthetic VMs writing real
eventfds through the real engine) and ``settings`` (its config section)."""

from __future__ import annotations

from svqtui.sources.demo.source import STALL_EVERY_TICKS, STALL_TICKS, DemoSource

__all__ = ["STALL_EVERY_TICKS", "STALL_TICKS", "DemoSource"]
