"""Device sources: where VMs, devices and queues come from. Each source is a
plug-in (svqtui.sources.registry): the demo, the vhost-user interposer, QMP."""

from __future__ import annotations

from svqtui.sources.base import Source, SourceContext

__all__ = ["Source", "SourceContext"]
