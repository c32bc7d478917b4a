"""The relay engine's errors (base: ``svqtui.errors.EngineError``)."""

from __future__ import annotations

from svqtui.errors import EngineError, wire_error


@wire_error("EngineStartError")
class EngineStartError(EngineError):
    """The engine could not be created or its thread did not start."""


@wire_error("EngineNotRunning")
class EngineNotRunning(EngineError):
    """A command was sent to an engine whose thread is not running."""


@wire_error("EngineTimeout")
class EngineTimeout(EngineError):
    """The engine thread did not apply a command in time (is it wedged?)."""


@wire_error("EngineFull")
class EngineFull(EngineError):
    """Every queue slot of the engine is in use."""


@wire_error("BadFault")
class BadFault(EngineError):
    """A fault that does not exist or an amount out of range."""


@wire_error("UnknownQueue")
class UnknownQueue(EngineError):
    """A queue slot that is not (or no longer) in the engine."""


@wire_error("BadFd")
class BadFd(EngineError):
    """An fd given to the engine is open but not an eventfd or a pipe (the
    engine reads 8-byte counters from sources and writes them to
    destinations), or its flags cannot be made nonblocking."""


@wire_error("FdInUse")
class FdInUse(EngineError):
    """A source fd is already the source of another link: two readers of one
    fd would each miss notifications, and removing either link would stop
    watching the fd for both."""
