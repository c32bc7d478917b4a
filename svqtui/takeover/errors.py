"""The takeover's errors (base: ``svqtui.errors.ControlError``). They are
raised and reported inside the process that hit them (one line each); the
handshake that will carry them between processes is not built yet."""

from __future__ import annotations

from svqtui.errors import ControlError


class TakeoverError(ControlError):
    """A takeover failed; the old process keeps serving."""


class TransportError(TakeoverError):
    """The hand-over stream broke its framing, lost fds, or closed early."""


class StateRefused(TakeoverError):
    """The state document is not understood (an unknown version, a bad
    field): refused whole, nothing applied."""
