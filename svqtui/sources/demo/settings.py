"""The ``demo:`` config section and the demo's plug-in declaration."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from svqtui.config_nodes import ConfigReader
from svqtui.model import SourceKind, VMView
from svqtui.sources.plugin import SourcePlugin

if TYPE_CHECKING:
    from svqtui.config import Config
    from svqtui.sources.base import Source


@dataclass(frozen=True, slots=True)
class DemoConfig:
    enabled: bool | None = None  # None: "auto", on when no other source names targets
    seed: int | None = None


def parse(r: ConfigReader, node: yaml.Node, key: str) -> DemoConfig:
    found = r.mapping(node, key, ("enabled", "seed"))

    def enabled(node: yaml.Node, key: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and str(node.value).lower() == "auto":
            return None
        return r.boolean(node, key)

    return DemoConfig(
        enabled=r.optional(found, "enabled", key, enabled, None),
        seed=r.optional(found, "seed", key, lambda n, k: r.integer(n, k, 0, 2**32 - 1), None),
    )


def demo_active(config: Config) -> bool:
    """On when forced, or (auto) when no other source names a target."""
    from svqtui.sources.registry import SOURCE_PLUGINS

    settings = config.section(PLUGIN)
    if settings.enabled is not None:
        return settings.enabled
    return not any(
        p.names_targets(config.section(p)) for p in SOURCE_PLUGINS if p.section != PLUGIN.section
    )


def gives_way_to(config: Config, vms: Iterable[VMView]) -> VMView | None:
    """With ``enabled: auto``, the first VM another source reports (QMP
    discovery or libvirt found a real one): the demo gives way to it, as
    it is for a machine with nothing else to show. None when the demo is
    forced on or off, or every VM is the demo's."""
    if config.section(PLUGIN).enabled is not None:
        return None
    return next((vm for vm in vms if vm.source != SourceKind.DEMO), None)


def build(settings: DemoConfig, config: Config) -> list[Source]:
    if not demo_active(config):
        return []
    from svqtui.sources.demo.source import DemoSource

    return [DemoSource(seed=settings.seed)]


PLUGIN: SourcePlugin[DemoConfig] = SourcePlugin(
    section="demo",
    summary="synthetic VMs writing real eventfds through the real engine",
    default=DemoConfig(),
    parse=parse,
    build=build,
    names_targets=lambda settings: False,
    shipped="""\
# The embedded demo: synthetic VMs whose guest and device threads write real
# eventfds through the real engine. auto = on when no other source names a
# device or VM (devices, qmp sockets), and off for good once another source
# finds a VM (QMP discovery, libvirt); true/false force it. A seed makes it repeatable.
demo:
  enabled: auto
  seed: null
""",
)
