"""The vhost-user interposer: svqtui between QEMU and a real vhost-user back-end.

Modules, one concern each: ``codec`` (wire format), ``channel`` (one socket on
the I/O loop), ``interposer`` (forwarding one connection, shadow switch),
``shadow`` (per-vring fds and the engine relay), ``rings`` (the memory table and
ring indices), ``fdident`` (eventfd identities), ``device`` (listening and the
device's view), ``source`` (the Source interface).
"""

from svqtui.sources.vhost_user.source import VhostUserSource

__all__ = ["VhostUserSource"]
