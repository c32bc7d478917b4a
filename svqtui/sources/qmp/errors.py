"""The QMP source's errors (base: ``QMPError``, a ``svqtui.errors.SourceError``)."""

from __future__ import annotations

from typing import Self

from svqtui.errors import ProtocolError, SourceError, SvqtuiError, wire_error


@wire_error("QMPError")
class QMPError(SourceError):
    """A QMP conversation with one QEMU failed (base of the QMP faults)."""


@wire_error("QMPUnreachable")
class QMPUnreachable(QMPError):
    """A QMP socket is missing, refuses connections or never greets."""


@wire_error("QMPConnectionLost")
class QMPConnectionLost(QMPError):
    """An established QMP connection closed or stopped answering."""


@wire_error("QMPProtocolViolation")
class QMPProtocolViolation(QMPError, ProtocolError):
    """The peer on a QMP socket sent something that is not QMP."""


@wire_error("QMPCommandFailed")
class QMPCommandFailed(QMPError):
    """QEMU answered a QMP command with an error."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"{command}: {desc} ({error_class})")

    @classmethod
    def from_wire(cls, message: str) -> Self:
        """The error with the peer's whole line as its text and ``desc``."""
        err = cls.__new__(cls)
        SvqtuiError.__init__(err, message)
        err.command, err.error_class, err.desc = "", "", message
        return err


@wire_error("VMDisconnected")
class VMDisconnected(QMPError):
    """An action was asked of a VM whose QMP connection is down."""
