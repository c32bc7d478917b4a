"""The lab harness's errors (base: ``svqtui.errors.LabError``)."""

from __future__ import annotations

from svqtui.errors import LabError, wire_error


@wire_error("GuestImageError")
class GuestImageError(LabError):
    """The guest kernel + initramfs could not be built (a Debian package is
    missing or unusable; the message names the apt package to install)."""


@wire_error("LabToolMissing")
class LabToolMissing(LabError):
    """A program the lab runs (QEMU, qemu-storage-daemon) is not installed."""


@wire_error("LabProcessError")
class LabProcessError(LabError):
    """A lab process did not start, or died, or left no socket where expected."""


@wire_error("GuestTimeout")
class GuestTimeout(LabError):
    """The guest did not print what was awaited on its serial console in time."""


@wire_error("GuestIOError")
class GuestIOError(LabError):
    """The guest reported failed I/O (SVQ-IO FAIL) or a setup error (SVQ-ERROR)."""


@wire_error("LabBusy")
class LabBusy(LabError):
    """A lab action was asked for while another one (e.g. a migration) is running."""


@wire_error("MigrationFailed")
class MigrationFailed(LabError):
    """Migrating the lab VM between its slots failed (the VM stays where it was)."""
