"""The takeover's errors (base: ``svqtui.errors.ControlError``).

The old svqtui refuses a ``takeover`` request on the control socket with one
of the wire classes below (one line each, the new svqtui prints it and exits
1). The others are raised and reported inside the process that hit them."""

from __future__ import annotations

from svqtui.errors import ControlError, wire_error


@wire_error("TakeoverError")
class TakeoverError(ControlError):
    """A takeover failed; the old process keeps serving."""


class TransportError(TakeoverError):
    """The hand-over stream broke its framing, lost fds, or closed early."""


@wire_error("TakeoverStateRefused")
class StateRefused(TakeoverError):
    """The state document is not understood (an unknown version, a bad
    field): refused whole, nothing applied."""


@wire_error("TakeoverRunning")
class TakeoverRunning(TakeoverError):
    """A takeover of this svqtui is already running."""


@wire_error("TakeoverBusy")
class TakeoverBusy(TakeoverError):
    """A device did not reach a message boundary within the switch budget
    (a request awaits its reply, or a shadow switch runs): try again."""


class TakeoverAborted(TakeoverError):
    """The hand-over stopped before "released" (the peer failed, closed,
    refused or missed a step deadline): the old svqtui goes on serving."""
