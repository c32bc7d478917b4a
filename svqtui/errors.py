"""svqtui's error bases, one per layer, and the wire registry of error classes.

Every error carries what failed, where, and what to do, so the console and the
batch modes can print it as one line (``str(err)``) without a traceback. The
precise (leaf) classes live next to the code that raises them; this module
holds only the bases::

    SvqtuiError                       svqtui.errors
    +-- ConfigError                   config.yaml (the layer's only class)
    +-- EngineError                   svqtui.engine.errors
    +-- SourceError                   a device source
    |   +-- ProtocolError             a peer broke vhost-user or QMP
    |   +-- VhostUserError            svqtui.sources.vhost_user.errors
    |   +-- QMPError                  svqtui.sources.qmp.errors
    +-- ActionError                   svqtui.sources.errors (unknown device...)
    +-- ControlError                  svqtui.control.errors (the control socket)
    |   +-- TakeoverError             svqtui.takeover.errors (handing over to a new svqtui)
    +-- IOLoopError                   svqtui.io_loop (blocking calls onto it)
    +-- LabError                      svqtui.lab.errors

The control socket carries an error as a wire name and its message. Wire
names are given once, by ``@wire_error("Name")`` on the class, and never
change when a class is renamed or moved (they began as the class names, which
older consoles look up). ``from_wire`` never fails: a name it does not know
(a newer server's class) decodes to the nearest base it does know, from the
lineage the server sends along, else to ``SvqtuiError``; the message is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar, Self, TypeVar

E = TypeVar("E", bound="type[SvqtuiError]")

#: Wire name -> class, filled by ``@wire_error`` as modules are imported.
WIRE_ERRORS: dict[str, type[SvqtuiError]] = {}


class WireNameTaken(Exception):
    """Two error classes claim one wire name (a programming error, at import)."""


def wire_error(name: str) -> Callable[[E], E]:
    """Register an error class under the stable wire name ``name``."""

    def register(cls: E) -> E:
        other = WIRE_ERRORS.get(name)
        same = other is not None and (other.__module__, other.__qualname__) == (
            cls.__module__,
            cls.__qualname__,
        )  # the same class defined again (a module reloaded) keeps its name
        if other is not None and not same:
            raise WireNameTaken(
                f"wire error name {name!r} is taken by {other.__module__}.{other.__qualname__}"
            )
        WIRE_ERRORS[name] = cls
        cls.wire_name = name
        return cls

    return register


def wire_lineage(cls: type[SvqtuiError]) -> list[str]:
    """The wire names of ``cls`` and its registered bases, nearest first."""
    names: list[str] = []
    for klass in cls.__mro__:
        name = klass.__dict__.get("wire_name")
        if isinstance(name, str) and WIRE_ERRORS.get(name) is klass and name not in names:
            names.append(name)
    return names


def from_wire(name: str, message: str, lineage: Iterable[str] = ()) -> SvqtuiError:
    """The error a peer sent: the class registered as ``name``, else the first
    known name of ``lineage`` (the peer's bases, nearest first), else
    ``SvqtuiError``; always with ``message``."""
    for candidate in (name, *lineage):
        cls = WIRE_ERRORS.get(candidate) if isinstance(candidate, str) else None
        if cls is not None:
            return cls.from_wire(message)
    return SvqtuiError(message)


@wire_error("SvqtuiError")
class SvqtuiError(Exception):
    """Base class of every error svqtui reports to an operator."""

    #: The stable name this class travels under (set by ``@wire_error``).
    wire_name: ClassVar[str]

    @classmethod
    def from_wire(cls, message: str) -> Self:
        """This error rebuilt from its one-line message (a control-socket reply)."""
        return cls(message)


@wire_error("ConfigError")
class ConfigError(SvqtuiError):
    """config.yaml is unreadable, malformed or invalid."""

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        what = f"{key}: {message}" if key else message
        super().__init__(_one_line(f"{where}: {what}"))

    @classmethod
    def from_wire(cls, message: str) -> Self:
        """The error with the peer's whole line as its message (path and line
        are inside that text; they are not sent apart)."""
        err = cls.__new__(cls)
        SvqtuiError.__init__(err, message)
        err.path, err.line, err.key, err.message = "", None, None, message
        return err


def _one_line(text: str) -> str:
    """``text`` as one printable line: newlines become spaces, other control
    characters (from a config's own bytes) their escapes."""
    text = " ".join(text.splitlines())
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@wire_error("EngineError")
class EngineError(SvqtuiError):
    """The relay engine could not do what was asked."""


@wire_error("SourceError")
class SourceError(SvqtuiError):
    """A device source (demo, vhost-user interposer, QMP) failed."""


@wire_error("ProtocolError")
class ProtocolError(SourceError):
    """A peer sent a message that breaks its protocol (vhost-user, QMP)."""


@wire_error("ActionError")
class ActionError(SvqtuiError):
    """An action (shadow, mask, kick...) names something that is not there or
    asks a source for what it cannot do."""


@wire_error("ControlError")
class ControlError(SvqtuiError):
    """A request on the control socket could not be carried out."""


@wire_error("IOLoopError")
class IOLoopError(SvqtuiError):
    """Work handed to the I/O loop thread did not complete."""


@wire_error("LabError")
class LabError(SvqtuiError):
    """The lab harness (guest image, QEMU guest, qemu-storage-daemon) failed."""
