"""The vhost-user interposer's errors: its wire-format faults (``ProtocolError``)
and its own failures (``VhostUserError``), both ``svqtui.errors.SourceError``."""

from __future__ import annotations

from svqtui.errors import ProtocolError, SourceError, wire_error


@wire_error("VhostUserError")
class VhostUserError(SourceError):
    """The vhost-user interposer could not do what was asked (base class)."""


@wire_error("MessageTooLarge")
class MessageTooLarge(ProtocolError):
    """A vhost-user message announced a payload above the protocol's bound."""


@wire_error("TooManyFds")
class TooManyFds(ProtocolError):
    """A vhost-user message carried more file descriptors than allowed (8)."""


@wire_error("BadHeader")
class BadHeader(ProtocolError):
    """A vhost-user header is invalid: wrong version, unknown flag bits or request 0."""


@wire_error("TruncatedMessage")
class TruncatedMessage(ProtocolError):
    """A vhost-user peer closed its socket in the middle of a message."""


@wire_error("BadPayload")
class BadPayload(ProtocolError):
    """A vhost-user payload (or its fd count) does not fit its request type."""


@wire_error("BackendUnavailable")
class BackendUnavailable(VhostUserError):
    """The real vhost-user back-end's socket cannot be reached."""


@wire_error("ListenError")
class ListenError(VhostUserError):
    """The interposer cannot listen on a device's socket path."""


@wire_error("ShadowSwitchError")
class ShadowSwitchError(VhostUserError):
    """Switching a device's notification fds (shadow on/off) failed."""


@wire_error("NotConnected")
class NotConnected(VhostUserError):
    """The interposed device has no front-end connected right now."""


@wire_error("DeviceLimitExceeded")
class DeviceLimitExceeded(VhostUserError):
    """A front-end made svqtui exceed one of its device's limits (rings,
    memory regions, fds): that connection is closed, the others go on."""
