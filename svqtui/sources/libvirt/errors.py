"""Errors of the libvirt source (base: ``svqtui.errors.SourceError``).

None of them is sent over the control socket: the source turns each into its
one status line (libvirt missing, daemon down, permission denied) or a
device's error text.
"""

from __future__ import annotations

from svqtui.errors import SourceError


class LibvirtSourceError(SourceError):
    """Base of the libvirt source's errors."""


class LibvirtUnavailable(LibvirtSourceError):
    """libvirt cannot be used: the Python bindings are missing, the daemon is
    down, or the connection is refused (the message says which)."""


class DomainXMLError(LibvirtSourceError):
    """A domain's XML is not what svqtui can read."""


class MonitorCommandFailed(LibvirtSourceError):
    """A QMP command sent through libvirt's monitor pass-through failed."""

    def __init__(self, command: str, desc: str) -> None:
        super().__init__(f"{command}: {desc}")
        self.command = command
        self.desc = desc
