"""The console in lab mode (svqtui.lab.app), driven with Textual's pilot.

The lab here is a stand-in (``FakeLab``): a real migration needs two QEMUs and
seconds per step, which test_lab_scenario and test_lab_check cover for real;
these tests check what the console does with the lab's keys. The VM rows come
from a small source that reports the lab VM on slot a or b, through a real
runtime and monitor.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator

import pytest
from rich.console import Console
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot
from textual.widgets import Static

from svqtui.config import Config
from svqtui.console.app import SvqtuiApp
from svqtui.console.selection import Scope, ScopeKind
from svqtui.lab.app import LAB_KEYS, LabApp
from svqtui.lab.errors import MigrationFailed
from svqtui.lab.migration import MigrationResult, Mode
from svqtui.lab.scenario import DroppedCall
from svqtui.lab.source import VM_KEY
from svqtui.model import DeviceView, MaskState, QueueView, SourceKind, VMView
from svqtui.runtime import Runtime
from svqtui.widgets.help_screen import HelpScreen
from tests.support.console import started, until
from tests.support.fake_source import FakeSource

SIZE = (160, 50)


class SlotSource(FakeSource):
    """The shared fake source reporting the lab VM with the interposer device
    of its current slot."""

    def __init__(self) -> None:
        super().__init__("lab", kind=SourceKind.QMP)
        self.slot = "a"

    def _views(self) -> list[VMView]:
        key = f"vu:lab-{self.slot}"
        queues = tuple(
            QueueView(i, kicks=1, calls=1, mask=MaskState.UNMASKED, shadow=True) for i in (0, 1)
        )
        dev = DeviceView(key, "vblk0", "vhost-user-blk", SourceKind.VHOST_USER, queues=queues)
        return [VMView(VM_KEY, f"lab@{self.slot}", SourceKind.QMP, devices=(dev,))]


class FakeLab:
    """Stands in for svqtui.lab.scenario.Lab: records the actions asked of it."""

    def __init__(self, runtime: Runtime, source: SlotSource) -> None:
        self.runtime = runtime
        self.source = source
        self.calls: list[str] = []
        self.busy = False
        self.stalled = False
        self.fail: Exception | None = None
        self.called = threading.Event()

    def migrate(self) -> MigrationResult:
        self.calls.append("migrate")
        self.called.set()
        if self.fail is not None:
            raise self.fail
        src = self.source.slot
        self.source.slot = "b" if src == "a" else "a"
        dst = self.source.slot
        return MigrationResult(src, dst, True, Mode.LIVE, 700, 30, 3, 97 << 20, 1.1, 10)

    def toggle_stall(self) -> bool:
        self.calls.append("stall")
        self.called.set()
        self.stalled = not self.stalled
        return self.stalled

    def drop_call(self) -> DroppedCall:
        """The real one picks the busiest queue; here it is queue 1."""
        self.calls.append("drop-call")
        self.called.set()
        key = f"vu:lab-{self.source.slot}"
        return DroppedCall(key, f"lab-{self.source.slot}", 1, shadow_turned_on=False)


@pytest.fixture
def lab() -> Iterator[FakeLab]:
    source = SlotSource()
    runtime = Runtime(Config(refresh_s=0.1, max_queues=8), sources=[source])
    with started(runtime):
        yield FakeLab(runtime, source)


async def ready(pilot: Pilot[int], app: LabApp) -> None:
    await until(pilot, lambda: app.frames >= 1, "the first snapshot")


async def test_lab_keys_run_the_lab_actions(lab: FakeLab) -> None:
    """M migrates and S stalls/resumes, each through the lab (in a worker), with no
    error logged; the console opens on the lab VM, whose header carries its status."""
    app = LabApp(lab)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await until(pilot, lambda: app.scope == Scope.vm(VM_KEY), "the lab VM selected")
        await pilot.press("M")
        await until(pilot, lambda: lab.calls == ["migrate"], "the migration")
        await until(pilot, lambda: "vu:lab-b" in app.snapshot.devices, "the VM on slot b")
        await pilot.press("S")
        await until(pilot, lambda: lab.calls == ["migrate", "stall"] and lab.stalled, "a stall")
        await pilot.press("S")
        await until(pilot, lambda: lab.calls[-1] == "stall" and not lab.stalled, "the resume")
    _, events = lab.runtime.log.since(0)
    assert [e.text for e in events if e.level == "error"] == []


async def test_drop_call_puts_the_cursor_on_its_queue_so_c_injects_there(lab: FakeLab) -> None:
    """D asks the lab to drop a call and moves the table's cursor to the queue it
    armed (queue 1, not the first row), so the presenter's second key, the
    console's own c, injects the call into exactly that queue."""
    app = LabApp(lab)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await until(pilot, lambda: app.table.cursor_key == "vu:lab-a#0", "the first queue row")
        await pilot.press("D")
        await until(pilot, lambda: lab.calls == ["drop-call"], "the dropped call")
        await until(pilot, lambda: app.table.cursor_key == "vu:lab-a#1", "the cursor on queue 1")
        await pilot.press("c")
        await until(
            pilot,
            lambda: ("inject", "vu:lab-a", "1", "CALL") in lab.source.actions,
            "a call injected into queue 1",
        )
    assert [a for a in lab.source.actions if a[0] == "inject"] == [
        ("inject", "vu:lab-a", "1", "CALL")
    ]


async def test_a_failed_migration_is_one_error_line(lab: FakeLab) -> None:
    """A lab error (e.g. migrating while the back-end is stalled) becomes one line
    in the event log naming the action, not a traceback."""
    lab.fail = MigrationFailed("the back-end is stalled: resume it (S) before migrating")
    app = LabApp(lab)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("M")

        def errors() -> list[str]:
            return [e.text for e in lab.runtime.log.since(0)[1] if e.level == "error"]

        await until(pilot, lambda: errors() != [], "the error line")
    assert errors() == [
        "migrate the lab VM: the back-end is stalled: resume it (S) before migrating"
    ]


async def test_busy_lab_and_modal_screens_take_no_lab_action(lab: FakeLab) -> None:
    """While the lab is busy (a migration runs) M and S ask nothing of it; the
    help screen lists them, and behind it they do nothing either."""
    app = LabApp(lab)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        lab.busy = True
        await pilot.press("M", "S")
        await pilot.pause(0.2)
        lab.busy = False
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        await pilot.press("M")
        await pilot.pause(0.2)
        console = Console(width=160, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#help-text", Static).content)
        text = " ".join(console.export_text().split())
        assert all(" ".join(k.help.split()) in text for k in LAB_KEYS)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "help closed")
        await pilot.press("S")
        await until(pilot, lambda: lab.calls == ["stall"], "the stall after the help closed")


async def test_palette_has_the_lab_commands_only_in_lab_mode(lab: FakeLab) -> None:
    """ "Migrate (M)" is in the palette of the lab console and runs the migration;
    the ordinary console has no lab command and no M binding."""
    app = LabApp(lab)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"Migrate (M)")
        await until(
            pilot, lambda: app.screen.query_one(CommandList).option_count > 0, "a palette hit"
        )
        await pilot.press("enter")
        await until(pilot, lambda: lab.calls == ["migrate"], "the migration from the palette")
    plain = [b for b in SvqtuiApp.BINDINGS if isinstance(b, Binding)]
    assert plain and not any(b.action.startswith("lab_") or b.key in "MS" for b in plain)
    assert not SvqtuiApp.KEYS.actions & {k.action for k in LAB_KEYS}


async def test_a_selected_lab_device_stays_selected_across_a_migration(lab: FakeLab) -> None:
    """With the lab VM's device picked in the tree, a migration (the device key
    changes from vu:lab-a to vu:lab-b) moves the selection to the new device
    instead of falling back to all VMs."""
    app = LabApp(lab)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await until(pilot, lambda: app.scope == Scope.vm(VM_KEY), "the lab VM selected")
        app.device_tree.select_scope(Scope.device("vu:lab-a"))
        await until(pilot, lambda: app.scope == Scope.device("vu:lab-a"), "lab-a selected")
        await pilot.press("M")
        await until(pilot, lambda: app.scope == Scope.device("vu:lab-b"), "lab-b selected")
        assert app.scope.kind is ScopeKind.DEVICE
