"""Device sources: where VMs, devices and queues come from (demo, vhost-user, QMP)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from svqtui.sources.base import Source, SourceContext

if TYPE_CHECKING:
    from svqtui.config import Config

__all__ = ["Source", "SourceContext", "build_sources"]


def build_sources(config: Config) -> list[Source]:
    """The sources config.yaml asks for, in display order."""
    sources: list[Source] = []
    if config.demo_active:
        from svqtui.sources.demo import DemoSource

        sources.append(DemoSource(seed=config.demo.seed))
    if config.devices:
        from svqtui.sources.vhost_user import VhostUserSource

        sources.append(VhostUserSource(config.devices))
    if config.qmp.sockets or config.qmp.discover:
        from svqtui.sources.qmp import QMPSource

        sources.append(QMPSource(config.qmp))
    return sources
