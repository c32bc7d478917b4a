"""Reloading a running svqtui's configuration (docs/design.md#reload).

``core_changes`` compares the core settings of the running and the new
configuration: the refresh interval, the rate history and the stuck rules
apply at once (the monitor takes them); the engine's size and the control
socket are fixed at start and need a restart, so the running values are
kept. Each source plug-in's section is compared by ``Runtime.reload``: a
source that can apply new settings in place (``Source.reload``) does, the
others are stopped and rebuilt when their section (or whether any plug-in
names targets, which the demo's ``auto`` depends on) changed.
``ReloadReport`` is what a reload did, one line per change.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from svqtui.config import Config

if TYPE_CHECKING:
    from svqtui.monitor import Monitor
    from svqtui.sources.plugin import SourcePlugin


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What one reload did: the config file, one line per applied change,
    one line per change that needs a restart (not applied)."""

    path: str
    changes: tuple[str, ...]
    restart: tuple[str, ...]
    seconds: float

    def summary(self) -> str:
        """One line for the log and ``svqtui ctl reload``."""
        if not self.changes and not self.restart:
            return f"reloaded {self.path}: nothing changed ({self.seconds * 1000:.0f} ms)"
        parts = list(self.changes)
        parts += [f"{line} (needs a restart; the running value is kept)" for line in self.restart]
        return f"reloaded {self.path} in {self.seconds * 1000:.0f} ms: " + "; ".join(parts)

    def to_wire(self) -> dict[str, Any]:
        return {
            "config": self.path,
            "changes": list(self.changes),
            "restart": list(self.restart),
            "seconds": self.seconds,
        }


def core_changes(old: Config, new: Config, monitor: Monitor) -> tuple[Config, list[str], list[str]]:
    """Apply the core settings of ``new`` that can change while running to
    ``monitor``; return the configuration now in effect (``new`` with the
    restart-only values of ``old``), the applied changes and the restart-only ones."""
    changes: list[str] = []
    restart: list[str] = []
    if new.refresh_s != old.refresh_s:
        monitor.set_interval(new.refresh_s)
        changes.append(f"refresh {old.refresh_s:g} s -> {new.refresh_s:g} s")
    if new.history != old.history:
        monitor.history = new.history  # each queue's history is resized at its next refresh
        changes.append(f"history {old.history} -> {new.history}")
    if new.stuck != old.stuck:
        monitor.stuck = new.stuck
        changes.append(f"stuck rules {_stuck(old)} -> {_stuck(new)}")
    if new.max_queues != old.max_queues:
        restart.append(f"engine.max_queues {old.max_queues} -> {new.max_queues}")
    if new.control_path != old.control_path:
        restart.append(f"control.socket {old.control_path} -> {new.control_path}")
    in_effect = dataclasses.replace(
        new, max_queues=old.max_queues, control_socket=old.control_socket
    )
    return in_effect, changes, restart


def _stuck(config: Config) -> str:
    s = config.stuck
    return (
        f"(after {s.after_s:g} s, in_flight {s.in_flight}, "
        f"kicks_without_calls {s.kicks_without_calls})"
    )


def build_inputs(
    plugin: SourcePlugin[Any], config: Config, plugins: tuple[SourcePlugin[Any], ...]
) -> tuple[object, bool]:
    """What a plug-in's ``build`` reads of ``config``: its section, and
    whether any plug-in names explicit targets (the demo's ``auto``)."""
    return config.section(plugin), any(p.names_targets(config.section(p)) for p in plugins)
