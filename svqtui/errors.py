"""The exception classes svqtui raises: one precise class per failure kind.

Every error carries what failed, where, and what to do, so the console and the
batch modes can print it as one line (``str(err)``) without a traceback.
"""

from __future__ import annotations


class SvqtuiError(Exception):
    """Base class of every error svqtui reports to an operator."""


class ConfigError(SvqtuiError):
    """config.yaml is unreadable, malformed or invalid."""

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        where = f"{path}:{line}" if line is not None else path
        what = f"{key}: {message}" if key else message
        super().__init__(f"{where}: {what}")


class EngineError(SvqtuiError):
    """The relay engine could not do what was asked."""


class EngineStartError(EngineError):
    """The engine could not be created or its thread did not start."""


class EngineNotRunning(EngineError):
    """A command was sent to an engine whose thread is not running."""


class EngineTimeout(EngineError):
    """The engine thread did not apply a command in time (is it wedged?)."""


class EngineFull(EngineError):
    """Every queue slot of the engine is in use."""


class UnknownQueue(EngineError):
    """A queue slot that is not (or no longer) in the engine."""


class SourceError(SvqtuiError):
    """A device source (demo, vhost-user interposer, QMP) failed."""


class ProtocolError(SourceError):
    """A peer sent a message that breaks its protocol (vhost-user, QMP)."""


class ControlError(SvqtuiError):
    """A request on the control socket could not be carried out."""


class ActionUnsupported(SvqtuiError):
    """The selected device's source cannot do this (e.g. shadow via QMP without
    x-vhost-enable-shadow-vq)."""


class UnknownDevice(SvqtuiError):
    """No source knows a device or queue by that name."""


class ControlProtocolError(ControlError):
    """A message on the control socket breaks its protocol (not JSON, too long,
    an unknown command, a missing or mistyped argument), from either side."""


class ControlUnreachable(ControlError):
    """``svqtui ctl`` cannot reach the control socket (no svqtui serving it)."""


class ControlSocketInUse(ControlError):
    """Another svqtui is already serving this control socket."""


class QueueOutOfRange(UnknownDevice):
    """The device exists but has no queue with that index."""


class LabError(SvqtuiError):
    """The lab harness (guest image, QEMU guest, qemu-storage-daemon) failed."""


class GuestImageError(LabError):
    """The guest kernel + initramfs could not be built (a Debian package is
    missing or unusable; the message names the apt package to install)."""


class LabToolMissing(LabError):
    """A program the lab runs (QEMU, qemu-storage-daemon) is not installed."""


class LabProcessError(LabError):
    """A lab process did not start, or died, or left no socket where expected."""


class GuestTimeout(LabError):
    """The guest did not print what was awaited on its serial console in time."""


class GuestIOError(LabError):
    """The guest reported failed I/O (SVQ-IO FAIL) or a setup error (SVQ-ERROR)."""


class QMPError(SourceError):
    """A QMP conversation with one QEMU failed (base of the QMP faults)."""


class QMPUnreachable(QMPError):
    """A QMP socket is missing, refuses connections or never greets."""


class QMPConnectionLost(QMPError):
    """An established QMP connection closed or stopped answering."""


class QMPProtocolViolation(QMPError, ProtocolError):
    """The peer on a QMP socket sent something that is not QMP."""


class QMPCommandFailed(QMPError):
    """QEMU answered a QMP command with an error."""

    def __init__(self, command: str, error_class: str, desc: str) -> None:
        self.command = command
        self.error_class = error_class
        self.desc = desc
        super().__init__(f"{command}: {desc} ({error_class})")


class VMDisconnected(QMPError):
    """An action was asked of a VM whose QMP connection is down."""


class VhostUserError(SourceError):
    """The vhost-user interposer could not do what was asked (base class)."""


class MessageTooLarge(ProtocolError):
    """A vhost-user message announced a payload above the protocol's bound."""


class TooManyFds(ProtocolError):
    """A vhost-user message carried more file descriptors than allowed (8)."""


class BadHeader(ProtocolError):
    """A vhost-user header is invalid: wrong version, unknown flag bits or request 0."""


class TruncatedMessage(ProtocolError):
    """A vhost-user peer closed its socket in the middle of a message."""


class BadPayload(ProtocolError):
    """A vhost-user payload (or its fd count) does not fit its request type."""


class BackendUnavailable(VhostUserError):
    """The real vhost-user back-end's socket cannot be reached."""


class ListenError(VhostUserError):
    """The interposer cannot listen on a device's socket path."""


class ShadowSwitchError(VhostUserError):
    """Switching a device's notification fds (shadow on/off) failed."""


class NotConnected(VhostUserError):
    """The interposed device has no front-end connected right now."""


class LabBusy(LabError):
    """A lab action was asked for while another one (e.g. a migration) is running."""


class MigrationFailed(LabError):
    """Migrating the lab VM between its slots failed (the VM stays where it was)."""
