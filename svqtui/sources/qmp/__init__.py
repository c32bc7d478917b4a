"""The QMP source package: VMs, virtio devices, vhost state and live migration
as QEMU's QMP monitor reports them.

Modules, one concern each: ``client`` (one QMP connection, precise errors),
``devices`` (replies -> device and queue views; which queue commands a round
sends), ``migration`` (query-migrate and events), ``session`` (one VM: poll,
listen, reconnect, on the I/O loop) and ``source`` (the ``Source``: the
set of sessions, rediscovery, actions). Process discovery is
svqtui.sources.discovery.
"""

from __future__ import annotations

from svqtui.sources.qmp.session import Timing
from svqtui.sources.qmp.source import QMPSource

__all__ = ["QMPSource", "Timing"]
