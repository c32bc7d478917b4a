"""Where the lab's files live and the svqtui configuration it runs with.

The lab VM moves between two *slots*, ``a`` and ``b``. Each slot has its own
qemu-storage-daemon export of the one shared disk, its own svqtui interposer
device (``lab-a``/``lab-b``: QEMU connects to the interposer's ``listen``
socket, the interposer to the export) and the QMP sockets of the QEMU that runs
there: one for svqtui's QMP source (named for svqtui, so a discovering svqtui
elsewhere takes that one too) and one for the lab's own commands (migrate,
quit). A migration goes from the current slot to the other; the slot left
behind is reused for the way back.

``lab_config`` is the svqtui configuration of the lab: both interposer devices,
no demo, no discovery (other QEMUs on the host are not part of the demo), a
short refresh and a short stuck threshold so the demo (and ``--check``) shows
a stall within a couple of seconds.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from svqtui.config import Config, StuckConfig
from svqtui.errors import LabError
from svqtui.sources.demo.settings import DemoConfig
from svqtui.sources.qmp.settings import QMPConfig
from svqtui.sources.vhost_user.settings import VhostUserDevice
from svqtui.unix_socket import check_path, fits

VM_NAME = "svq-lab"
SLOT_NAMES = ("a", "b")
STUCK_AFTER_S = 1.5
REFRESH_S = 0.5
QMP_POLL_S = 0.5
# A temporary lab directory and its longest socket name: what a base directory must fit.
ROOM = "svqtui-lab-xxxxxxxx/" + "x" * 28


@dataclass(frozen=True, slots=True)
class Slot:
    """One place the lab VM can run: an export, an interposer device, QMP sockets."""

    name: str  # "a" or "b"
    workdir: Path

    @property
    def device(self) -> str:
        """The interposer device's name (config.yaml ``devices[].name``)."""
        return f"lab-{self.name}"

    @property
    def device_key(self) -> str:
        return f"vu:{self.device}"

    @property
    def vm_name(self) -> str:
        """QEMU's ``-name`` (also names its QMP socket and serial log in the workdir)."""
        return f"{VM_NAME}-{self.name}"

    @property
    def export_id(self) -> str:
        return f"exp-{self.name}"

    @property
    def listen(self) -> Path:
        """The interposer's socket: QEMU's vhost-user chardev connects here."""
        return self.workdir / f"{self.device}.sock"

    @property
    def backend(self) -> Path:
        """qemu-storage-daemon's export socket: the interposer connects here."""
        return self.workdir / f"qsd-{self.name}.sock"

    @property
    def control_qmp(self) -> Path:
        """The lab's own QMP socket (QemuVM's ``spec.qmp_socket``)."""
        return self.workdir / f"{self.vm_name}.qmp"

    @property
    def svqtui_qmp(self) -> Path:
        """The QMP socket svqtui's QMP source watches."""
        return self.workdir / f"{self.vm_name}-svqtui.qmp"

    @property
    def serial_log(self) -> Path:
        return self.workdir / f"{self.vm_name}.serial"

    def device_config(self, shadow: bool = False) -> VhostUserDevice:
        return VhostUserDevice(
            name=self.device,
            listen=str(self.listen),
            backend=str(self.backend),
            shadow=shadow,
            kind="blk",
        )


@dataclass(frozen=True, slots=True)
class LabLayout:
    """The lab's work directory: disk image, sockets, logs; ``temporary`` if the lab made it."""

    workdir: Path
    temporary: bool = False

    @property
    def slots(self) -> tuple[Slot, Slot]:
        return Slot(SLOT_NAMES[0], self.workdir), Slot(SLOT_NAMES[1], self.workdir)

    def slot(self, name: str) -> Slot:
        for slot in self.slots:
            if slot.name == name:
                return slot
        raise LabError(f"no lab slot {name!r} (slots: {', '.join(SLOT_NAMES)})")

    def other(self, slot: Slot) -> Slot:
        a, b = self.slots
        return b if slot.name == a.name else a

    @property
    def disk_image(self) -> Path:
        return self.workdir / "disk.img"

    @property
    def storage_log(self) -> Path:
        return self.workdir / "qsd.log"

    @classmethod
    def create(cls, workdir: Path | None = None) -> LabLayout:
        """Use ``workdir`` (created if missing), or a fresh temporary directory with
        socket paths short enough for unix sockets. Raises ``LabError`` when the
        directory cannot be made, ``SocketPathTooLong`` when its paths are too long
        for sockets."""
        if workdir is None:
            base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
            if not fits(os.path.join(base, ROOM)) or not os.access(base, os.W_OK):
                base = tempfile.gettempdir()
            try:
                path = Path(tempfile.mkdtemp(prefix="svqtui-lab-", dir=base))
            except OSError as err:
                raise LabError(
                    f"cannot create a lab directory in {base}: {err.strerror}: pass --workdir DIR"
                ) from None
            layout = cls(path, temporary=True)
            layout.check_paths()
            return layout
        layout = cls(workdir.resolve())
        layout.check_paths()
        try:
            layout.workdir.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise LabError(f"cannot create the lab directory {workdir}: {err.strerror}") from None
        return layout

    def check_paths(self) -> None:
        """``SocketPathTooLong`` if a socket path does not fit a unix socket address,
        ``LabError`` if it would break QEMU's option syntax."""
        for slot in self.slots:
            for path in (slot.listen, slot.backend, slot.control_qmp, slot.svqtui_qmp):
                check_path(path, "lab", "use a shorter --workdir")
        if "," in str(self.workdir):
            raise LabError(f"{self.workdir}: QEMU option values cannot contain ','")


def lab_config(
    layout: LabLayout,
    *,
    shadow: bool = False,
    stuck_after_s: float = STUCK_AFTER_S,
    refresh_s: float = REFRESH_S,
) -> Config:
    """svqtui's configuration for the lab: the two interposer devices (both start
    in shadow mode when ``shadow``), demo off, discovery off, no QMP sockets (the
    lab attaches each QEMU's QMP socket itself while that QEMU runs)."""
    return Config(
        path=f"<lab {layout.workdir}>",
        refresh_s=refresh_s,
        stuck=StuckConfig(after_s=stuck_after_s),
        max_queues=64,
        control_socket=str(layout.workdir / "control.sock"),
        sections={
            "demo": DemoConfig(enabled=False),
            "devices": tuple(slot.device_config(shadow) for slot in layout.slots),
            "qmp": QMPConfig(sockets=(), discover=False, poll_s=QMP_POLL_S),
        },
    )
