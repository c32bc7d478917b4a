"""The console in lab mode: svqtui's console plus the lab's own keys.

``LabApp`` is the ordinary console (svqtui.console.app.SvqtuiApp) over the lab's
runtime, with three more keys, also in the command palette and the help screen,
that exist only here:

- ``M`` migrates the lab VM to its other slot (and back the next time);
- ``S`` stalls or resumes the back-end (qemu-storage-daemon SIGSTOP/SIGCONT);
- ``D`` drops the next call of the guest's busy queue (shadow mode on first):
  the guest's I/O stops, the queue turns STUCK with "device owes a call", and
  the cursor is put on that queue so the console's own ``c`` (inject a call)
  brings the guest back: the presenter's two-key script.

They extend the console's key table (``KEYS``), so the console's bindings,
help screen, command palette and modal check carry them with no lab-specific
code. They run in thread workers like every console action (a migration takes
seconds); the lab itself logs what happens to the event log, a failure is one
line there and a notification.
The console opens on the lab VM (its header shows the guest's health and the
last migration); a device selected in the tree when its VM migrates stays
selected: the selection moves to the lab VM's device on the new slot.
"""

from __future__ import annotations

from typing import ClassVar, Protocol

from svqtui.console.app import SvqtuiApp
from svqtui.console.keys import KeySpec, KeyTable
from svqtui.console.selection import Scope, ScopeKind
from svqtui.gc_policy import settle_after_start
from svqtui.lab.layout import SLOT_NAMES
from svqtui.lab.migration import MigrationResult
from svqtui.lab.scenario import DroppedCall
from svqtui.lab.source import VM_KEY
from svqtui.model import Snapshot
from svqtui.runtime import Runtime
from svqtui.thread_priority import lower_thread_priority

LAB_KEYS: tuple[KeySpec, ...] = (
    KeySpec(
        "M",
        "M",
        "lab_migrate",
        "Migrate",
        "Lab: live-migrate the VM to its other slot (lab-a <-> lab-b); shadow mode goes with it",
    ),
    KeySpec(
        "S",
        "S",
        "lab_stall",
        "Stall",
        "Lab: stall/resume the back-end (SIGSTOP/SIGCONT qemu-storage-daemon): watch STUCK",
    ),
    KeySpec(
        "D",
        "D",
        "lab_drop_call",
        "Drop call",
        "Lab: drop the next call of the guest's busy queue (shadow on first): its I/O stops, "
        "STUCK 'device owes a call'; then c (inject a call) on that queue brings it back",
    ),
)
LAB_DEVICES = frozenset(f"vu:lab-{name}" for name in SLOT_NAMES)


class LabControls(Protocol):
    """What the console needs of the lab (svqtui.lab.scenario.Lab)."""

    runtime: Runtime

    @property
    def busy(self) -> bool: ...

    def migrate(self) -> MigrationResult: ...

    def toggle_stall(self) -> bool: ...

    def drop_call(self) -> DroppedCall: ...


class LabApp(SvqtuiApp):
    """The console over the lab's runtime, with the lab's keys."""

    TITLE = "svqtui lab"
    KEYS: ClassVar[KeyTable] = SvqtuiApp.KEYS.extend(*LAB_KEYS)

    def __init__(self, lab: LabControls, *, live: bool = True) -> None:
        super().__init__(lab.runtime, live=live)
        self.lab = lab
        self._shown_vm = False  # the lab VM was selected once, when it first appeared

    # -- lab keys ----------------------------------------------------------------------

    def action_lab_migrate(self) -> None:
        if self.lab.busy:
            self.notify("the lab is busy (a migration?): try again when it is done", timeout=4)
            return
        self.notify("migrating the lab VM to its other slot…", timeout=3)

        def done(result: MigrationResult) -> None:
            self.notify(f"migrated {result.summary()}", title="migration completed", timeout=6)

        self._act("migrate the lab VM", self.lab.migrate, done=done)

    def action_lab_stall(self) -> None:
        if self.lab.busy:
            self.notify("the lab is busy (a migration?): try again when it is done", timeout=4)
            return

        def done(stalled: bool) -> None:
            text = "back-end stalled: S resumes it" if stalled else "back-end resumed"
            self.notify(text, timeout=4, severity="warning" if stalled else "information")

        self._act("stall/resume the back-end", self.lab.toggle_stall, done=done)

    def action_lab_drop_call(self) -> None:
        if self.lab.busy:
            self.notify("the lab is busy (a migration?): try again when it is done", timeout=4)
            return

        def done(dropped: DroppedCall) -> None:
            # the console's c acts on the cursor's queue: put it on the one to rescue
            self.table.move_to(dropped.row_key)
            self.table.focus()
            self.notify(
                f"dropping the next call of {dropped.device} queue {dropped.queue}: watch it "
                "turn STUCK (device owes a call); c injects the call",
                severity="warning",
                timeout=8,
            )

        self._act("drop the next call", self.lab.drop_call, done=done)

    # -- following the VM --------------------------------------------------------------

    def apply(self, snap: Snapshot) -> None:
        moved = self._moved_device(snap)
        super().apply(snap)
        if moved is not None:
            self.device_tree.select_scope(Scope.device(moved))
        elif not self._shown_vm and any(vm.key == VM_KEY for vm in snap.vms):
            # Start on the lab VM: its header has the guest's health and the migration.
            self._shown_vm = True
            if self.scope.kind is ScopeKind.ALL:
                self.device_tree.select_scope(Scope.vm(VM_KEY))

    def _moved_device(self, snap: Snapshot) -> str | None:
        """The lab VM's device now, if the selected lab device has just gone away."""
        scope = self.scope
        if scope.kind is not ScopeKind.DEVICE or scope.key not in LAB_DEVICES:
            return None
        if scope.key in snap.devices:
            return None
        for vm in snap.vms:
            if vm.key == VM_KEY and vm.devices:
                return vm.devices[0].key
        return None


def run_lab_console(lab: LabControls) -> int:
    """Run the lab console until the operator quits (see svqtui.console.app.run_console)."""
    lower_thread_priority()
    settle_after_start()
    LabApp(lab).run()
    return 0
