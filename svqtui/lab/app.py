"""The console in lab mode: svqtui's console plus the lab's own keys.

``LabApp`` is the ordinary console (svqtui.console.app.SvqtuiApp) over the lab's
runtime, with two more keys, also in the command palette and the help screen,
that exist only here:

- ``M`` migrates the lab VM to its other slot (and back the next time);
- ``S`` stalls or resumes the back-end (qemu-storage-daemon SIGSTOP/SIGCONT).

They run in thread workers (a migration takes seconds); the lab itself logs
what happens to the event log, a failure is one line there and a notification.
The console opens on the lab VM (its header shows the guest's health and the
last migration); a device selected in the tree when its VM migrates stays
selected: the selection moves to the lab VM's device on the new slot.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial
from typing import ClassVar, Protocol

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from svqtui.console.app import SvqtuiApp
from svqtui.console.feed import lower_thread_priority
from svqtui.console.keys import KeySpec
from svqtui.console.selection import Scope, ScopeKind
from svqtui.errors import SvqtuiError
from svqtui.lab.layout import SLOT_NAMES
from svqtui.lab.migration import MigrationResult
from svqtui.lab.source import VM_KEY
from svqtui.model import Snapshot
from svqtui.runtime import Runtime
from svqtui.widgets.help_screen import HelpScreen, help_table

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
)
LAB_ACTIONS = frozenset(k.action for k in LAB_KEYS)
LAB_DEVICES = frozenset(f"vu:lab-{name}" for name in SLOT_NAMES)


class LabControls(Protocol):
    """What the console needs of the lab (svqtui.lab.scenario.Lab)."""

    runtime: Runtime

    @property
    def busy(self) -> bool: ...

    def migrate(self) -> MigrationResult: ...

    def toggle_stall(self) -> bool: ...


class LabCommands(Provider):
    """The lab's commands in the palette: Migrate (M), Stall (S)."""

    async def discover(self) -> Hits:
        for spec in LAB_KEYS:
            yield DiscoveryHit(_title(spec), partial(self._run, spec), help=spec.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec in LAB_KEYS:
            title = _title(spec)
            score = max(matcher.match(title), matcher.match(spec.help) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, spec), help=spec.help)

    async def _run(self, spec: KeySpec) -> None:
        await self.app.run_action(spec.action)


def _title(spec: KeySpec) -> str:
    return f"{spec.label} ({spec.shown})"


class LabHelpScreen(HelpScreen):
    """The help screen with the lab's keys first."""

    def compose(self) -> ComposeResult:
        table = help_table()
        lab = Text("Lab keys\n", style="bold underline")
        for spec in LAB_KEYS:
            lab.append(f"{spec.shown:<12}", style="bold cyan")
            lab.append(f"{spec.help}\n")
        with VerticalScroll(id="help-body") as body:
            body.border_title = "svqtui lab keys (Esc closes)"
            yield Static(lab, id="help-lab")
            yield Static(table, id="help-text")


class LabApp(SvqtuiApp):
    """The console over the lab's runtime, with the lab's keys."""

    TITLE = "svqtui lab"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding(k.key, k.action, k.label, key_display=k.shown) for k in LAB_KEYS
    ]
    COMMANDS = SvqtuiApp.COMMANDS | {LabCommands}

    def __init__(self, lab: LabControls, *, live: bool = True) -> None:
        super().__init__(lab.runtime, live=live)
        self.lab = lab
        self._shown_vm = False  # the lab VM was selected once, when it first appeared

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in LAB_ACTIONS and isinstance(self.screen, ModalScreen):
            return False
        return super().check_action(action, parameters)

    def action_help(self) -> None:
        self.push_screen(LabHelpScreen())

    # -- lab keys ----------------------------------------------------------------------

    def action_lab_migrate(self) -> None:
        if self.lab.busy:
            self.notify("the lab is busy (a migration?): try again when it is done", timeout=4)
            return
        self.notify("migrating the lab VM to its other slot…", timeout=3)

        def done(result: MigrationResult) -> None:
            self.notify(f"migrated {result.summary()}", title="migration completed", timeout=6)

        self._lab_act("migrate the lab VM", self.lab.migrate, done)

    def action_lab_stall(self) -> None:
        if self.lab.busy:
            self.notify("the lab is busy (a migration?): try again when it is done", timeout=4)
            return

        def done(stalled: bool) -> None:
            text = "back-end stalled: S resumes it" if stalled else "back-end resumed"
            self.notify(text, timeout=4, severity="warning" if stalled else "information")

        self._lab_act("stall/resume the back-end", self.lab.toggle_stall, done)

    def _lab_act(self, what: str, fn: Callable[[], object], done: Callable[..., None]) -> None:
        self.run_worker(
            partial(self._run_lab_action, what, fn, done),
            thread=True,
            group="lab",
            exit_on_error=False,
        )

    def _run_lab_action(
        self, what: str, fn: Callable[[], object], done: Callable[..., None]
    ) -> None:
        try:
            result = fn()
        except SvqtuiError as err:
            message = f"{what}: {err}"
        except Exception as err:  # the console reports, it never shows a traceback
            message = f"{what}: unexpected {type(err).__name__}: {err}"
        else:
            self.feed.poke()
            with contextlib.suppress(RuntimeError):  # the app has already exited
                self.call_from_thread(done, result)
            return
        self.runtime.log.error(message)
        with contextlib.suppress(RuntimeError):
            self.call_from_thread(self._lab_failed, message)

    def _lab_failed(self, message: str) -> None:
        if self.is_running:
            self.log_pane.pull()
            self.notify(message, title="lab action failed", severity="error", timeout=8)

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
    LabApp(lab).run()
    return 0
