"""Errors of actions on a source's devices (base: ``svqtui.errors.ActionError``).

Every source raises these for the same faults, and the control socket and the
console report them alike, whichever source a device comes from.
"""

from __future__ import annotations

from svqtui.errors import ActionError, wire_error


@wire_error("ActionUnsupported")
class ActionUnsupported(ActionError):
    """The selected device's source cannot do this (e.g. shadow via QMP without
    x-vhost-enable-shadow-vq)."""


@wire_error("UnknownDevice")
class UnknownDevice(ActionError):
    """No source knows a device or queue by that name."""


@wire_error("QueueOutOfRange")
class QueueOutOfRange(UnknownDevice):
    """The device exists but has no queue with that index."""
