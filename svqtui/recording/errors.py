"""Errors of the flight recorder and of replay (base: ``svqtui.errors``)."""

from __future__ import annotations

from svqtui.errors import ActionError, ControlError, SvqtuiError, wire_error


class RecordingError(SvqtuiError):
    """A recording cannot be read (not a recording, a newer major version)."""


class RecordingDamaged(RecordingError):
    """A recording is damaged (a bad checksum, a truncated record) from some point on."""

    def __init__(self, message: str, frame: int | None = None) -> None:
        super().__init__(message)
        self.frame = frame  # the first frame that cannot be decoded, when known


@wire_error("RecorderOff")
class RecorderOff(ControlError):
    """``svqtui ctl record dump`` asked a svqtui that keeps no recording window."""


@wire_error("RecorderBusy")
class RecorderBusy(ControlError):
    """The recorder could not write a dump in time (its writer is behind or failing)."""


@wire_error("RecordingWriteFailed")
class RecordingWriteFailed(ControlError):
    """A dump could not be written (a full filesystem, a dying disk, a bad path)."""


@wire_error("ReplayReadOnly")
class ReplayReadOnly(ActionError):
    """An action on a replayed device: a recording cannot change anything."""
