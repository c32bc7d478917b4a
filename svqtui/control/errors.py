"""The control socket's errors (base: ``svqtui.errors.ControlError``)."""

from __future__ import annotations

from svqtui.errors import ControlError, wire_error


@wire_error("ControlProtocolError")
class ControlProtocolError(ControlError):
    """A message on the control socket breaks its protocol (not JSON, too long,
    an unknown command, a missing or mistyped argument), from either side."""


@wire_error("ControlUnreachable")
class ControlUnreachable(ControlError):
    """``svqtui ctl`` cannot reach the control socket (no svqtui serving it)."""


@wire_error("ControlSocketInUse")
class ControlSocketInUse(ControlError):
    """Another svqtui is already serving this control socket."""


@wire_error("AttachTargetInvalid")
class AttachTargetInvalid(ControlError):
    """An ``--attach``/``--host`` target is not a socket path nor a valid
    ``ssh://[user@]host[:port][/path]`` URL (a usage error: exit 2)."""


@wire_error("SshTransportLost")
class SshTransportLost(ControlUnreachable):
    """The OpenSSH client carrying a remote control socket could not start,
    or exited (its own last stderr line is in the message)."""


class UnsafeRuntimePath(ControlError):
    """A runtime path (the control socket's directory, its lock file) that
    another user could swap: a symlink, a foreign owner, a writable parent.
    Raised and reported where svqtui starts; never sent."""


class UntrustedServer(ControlError):
    """The process serving a control socket runs as neither root nor this
    user (SO_PEERCRED): the client sends it nothing. Raised in the client;
    never sent."""


@wire_error("ControlBusy")
class ControlBusy(ControlError):
    """The control server has no slot for this request now (too many clients,
    too many followers, or too many actions waiting on one device)."""


@wire_error("ControlIdleTimeout")
class ControlIdleTimeout(ControlError):
    """A control connection sent nothing for too long and was closed."""
