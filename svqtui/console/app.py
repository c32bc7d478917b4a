"""The Textual console: layout, keys, and applying snapshots to the widgets.

The app only reads snapshots: it subscribes to its target's monitor, whose
own refresh clock (off the UI's event loop) posts each snapshot here; operator
actions run in thread workers, and their errors become one log line and a
notification. The widgets live in svqtui.widgets, one per file.

The operator keys are the class's ``KEYS`` table (svqtui.console.keys): a
subclass (the lab's console) extends it, and its bindings, help screen,
palette and modal check follow.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.events import Resize
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer

from svqtui.console.keys import CONSOLE_KEYS, NARROW_WIDTH, KeyTable, fit_footer
from svqtui.console.palette import SvqtuiCommands
from svqtui.console.selection import Scope, ScopeKind, SortMode
from svqtui.console.state_report import state_report
from svqtui.console.target import ConsoleTarget
from svqtui.engine import Link
from svqtui.engine.faults import Fault
from svqtui.errors import SvqtuiError
from svqtui.gc_policy import settle_after_start
from svqtui.model import DeviceView, QueueRow, Snapshot
from svqtui.thread_priority import lower_thread_priority
from svqtui.widgets.confirm_quit import ConfirmQuit
from svqtui.widgets.device_header import DeviceHeader
from svqtui.widgets.device_tree import DeviceTree
from svqtui.widgets.filter_input import FilterInput
from svqtui.widgets.help_screen import HelpScreen
from svqtui.widgets.log_pane import LogPane
from svqtui.widgets.queue_detail import QueueDetail
from svqtui.widgets.queue_table import QueueTable
from svqtui.widgets.status_bar import StatusBar, ViewState

DELAYS_S = (0.5, 1.0, 2.0, 5.0)
T = TypeVar("T")


def next_delay(current: float) -> float:
    """The next refresh delay of DELAYS_S after ``current``, wrapping around."""
    later = [d for d in DELAYS_S if d > current + 1e-9]
    return later[0] if later else DELAYS_S[0]


class SnapshotReady(Message):
    """The feed has a newer snapshot (the newest is taken when handled)."""


class SvqtuiApp(App[int]):
    """The svqtui console over a local Runtime or an attached headless svqtui."""

    CSS_PATH = Path(__file__).resolve().parent / "app.tcss"  # absolute: subclasses live elsewhere
    TITLE = "svqtui"
    KEYS: ClassVar[KeyTable] = CONSOLE_KEYS
    BINDINGS: ClassVar[list[BindingType]] = [
        *CONSOLE_KEYS.bindings(),
        Binding("ctrl+q", "request_quit", "Quit", show=False, priority=True),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]
    COMMANDS = App.COMMANDS | {SvqtuiCommands}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A subclass that extends KEYS gets bindings for its table (Textual
        # merges BINDINGS when the class is created, hence before super()).
        if "KEYS" in cls.__dict__:
            cls.BINDINGS = [*cls.__dict__.get("BINDINGS", []), *cls.KEYS.bindings()]
        super().__init_subclass__(**kwargs)

    def __init__(self, runtime: ConsoleTarget, *, live: bool = True) -> None:
        """``live=False``: refresh only on start and after actions (tests)."""
        super().__init__()
        self.runtime = runtime
        self.snapshot: Snapshot | None = None
        self.scope = Scope.all()
        self.filter_text = ""
        self.sort_mode = SortMode.NAME
        self.paused = False
        self.frames = 0  # snapshots applied to the screen
        self.holds: set[str] = set()  # queues held (masked) with `m`
        self._want_shadow: dict[str, bool] = {}  # toggles not yet in a snapshot
        self._next: Snapshot | None = None
        self._posted = False
        self._handoff = threading.Lock()
        self.live = live
        self._unsubscribe: Callable[[], None] | None = None

    # -- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="main"):
            yield DeviceTree(id="tree")
            with Vertical(id="right"):
                yield DeviceHeader(id="header")
                yield QueueTable(id="queues")
        yield LogPane(self.runtime.log, id="log")
        yield FilterInput(id="filter")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def table(self) -> QueueTable:
        return self.query_one("#queues", QueueTable)

    @property
    def device_tree(self) -> DeviceTree:
        return self.query_one("#tree", DeviceTree)

    @property
    def status_bar(self) -> StatusBar:
        return self.query_one("#status", StatusBar)

    @property
    def log_pane(self) -> LogPane:
        return self.query_one("#log", LogPane)

    @property
    def view_state(self) -> ViewState:
        return ViewState(
            self.runtime.monitor.interval_s, self.paused, self.sort_mode, self.filter_text
        )

    def on_mount(self) -> None:
        self.table.focus()
        self.log_pane.pull()
        self.status_bar.show(None, self.view_state)
        monitor = self.runtime.monitor
        self._unsubscribe = monitor.subscribe(self._deliver)
        if self.live:
            monitor.start()  # idempotent: a local Runtime has started it already
        if monitor.running and monitor.latest is not None:
            self._deliver(monitor.latest)  # the newest at once; the clock brings the next
        else:
            self.refresh_soon()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def refresh_soon(self) -> None:
        """Ask the monitor for an early snapshot (after an action, a resume).
        An unclocked monitor (tests) refreshes in the caller: do it off the UI."""
        monitor = self.runtime.monitor
        if monitor.running:
            monitor.refresh_soon()
        else:
            self.run_worker(monitor.refresh_soon, thread=True, group="refresh")

    def on_resize(self, event: Resize) -> None:
        self.screen.set_class(event.size.width < NARROW_WIDTH, "-narrow")
        for footer in self.screen.query(Footer):
            fit_footer(footer, event.size.width)

    # -- snapshots -----------------------------------------------------------------

    def _deliver(self, snap: Snapshot) -> None:
        """Monitor thread: keep the newest snapshot; post at most one message."""
        with self._handoff:
            self._next = snap
            if self._posted:
                return
            self._posted = True
        self.post_message(SnapshotReady())

    def on_snapshot_ready(self, _: SnapshotReady) -> None:
        with self._handoff:
            snap, self._next, self._posted = self._next, None, False
        if not self.is_running:  # shutting down: the widgets are going away
            return
        if snap is not None and not self.paused:
            self.apply(snap)
        else:
            self.log_pane.pull()

    def apply(self, snap: Snapshot) -> None:
        """Show ``snap`` everywhere (only what changed is redrawn)."""
        self.snapshot = snap
        for key, want in list(self._want_shadow.items()):
            dev = snap.devices.get(key)
            if dev is None or dev.shadow == want:
                del self._want_shadow[key]
        self.device_tree.update_from(snap)
        self._show_queues()
        self.status_bar.show(snap, self.view_state)
        self.log_pane.pull()
        screen = self.screen
        if isinstance(screen, QueueDetail):
            events = self.runtime.log.for_device(screen.device_key)
            screen.show(snap, events, screen.row_key in self.holds)
        self.frames += 1

    def _show_queues(self) -> None:
        if self.snapshot is None:
            return
        self.table.show(self.snapshot, self.scope, self.filter_text, self.sort_mode)
        self._show_header()

    def _show_header(self) -> None:
        if self.snapshot is not None:
            selected = self.snapshot.rows.get(self.table.cursor_key or "")
            self.query_one("#header", DeviceHeader).show(self.snapshot, self.scope, selected)

    @on(QueueTable.RowHighlighted)
    def _row_highlighted(self) -> None:
        self._show_header()

    @on(DeviceTree.ScopeChanged)
    def _scope_changed(self, event: DeviceTree.ScopeChanged) -> None:
        self.scope = event.scope
        self._show_queues()

    @on(DeviceTree.NodeSelected)
    def _tree_enter(self) -> None:
        self.table.focus()

    @on(QueueTable.RowSelected)
    def _row_selected(self, event: QueueTable.RowSelected) -> None:
        self.action_detail(event.key)

    @on(FilterInput.FilterChanged)
    def _filter_changed(self, event: FilterInput.FilterChanged) -> None:
        self.filter_text = event.text.strip()
        self._show_queues()
        self.status_bar.show(self.snapshot, self.view_state)
        if event.done:
            self.query_one(FilterInput).display = False
            self.screen.set_focus(self.table)

    # -- what the keys act on -------------------------------------------------------

    def selected_row(self) -> QueueRow | None:
        """The queue of the detail screen, else the one under the table cursor."""
        if self.snapshot is None:
            return None
        screen = self.screen
        key = screen.row_key if isinstance(screen, QueueDetail) else self.table.cursor_key
        return self.snapshot.rows.get(key) if key else None

    def selected_device(self) -> DeviceView | None:
        """The detail's device, the device picked in the tree, or the cursor row's."""
        if self.snapshot is None:
            return None
        screen = self.screen
        if isinstance(screen, QueueDetail):
            return self.snapshot.devices.get(screen.device_key)
        if self.scope.kind is ScopeKind.DEVICE and self.scope.key:
            return self.snapshot.devices.get(self.scope.key)
        row = self.selected_row()
        return self.snapshot.devices.get(row.device_key) if row else None

    def _device_name(self, device_key: str) -> str:
        for vm in self.snapshot.vms if self.snapshot else ():
            for dev in vm.devices:
                if dev.key == device_key:
                    return f"{vm.name}/{dev.name}"
        return device_key

    def _queue_name(self, row: QueueRow) -> str:
        return f"{self._device_name(row.device_key)} queue {row.view.index}"

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Operator keys do nothing behind a modal (help, quit question); "/"
        typed in the filter line is text."""
        if action == "filter" and isinstance(self.focused, FilterInput):
            return False
        operator = action in self.KEYS.actions or action == "clear_filter"
        if operator and isinstance(self.screen, ModalScreen):
            return action == "request_quit" and not isinstance(self.screen, ConfirmQuit)
        return True

    # -- running actions -------------------------------------------------------------

    def _act(
        self,
        what: str,
        fn: Callable[[], T],
        device_key: str | None = None,
        queue: int | None = None,
        undo: Callable[[], None] | None = None,
        done: Callable[[T], None] | None = None,
    ) -> None:
        """Run ``fn`` in a thread worker; report a failure as one line, or
        hand its result to ``done`` on the UI thread."""
        self.run_worker(
            partial(self._run_action, what, fn, device_key, queue, undo, done),
            thread=True,
            group="actions",
            exit_on_error=False,
        )

    def _run_action(
        self,
        what: str,
        fn: Callable[[], T],
        device_key: str | None,
        queue: int | None,
        undo: Callable[[], None] | None,
        done: Callable[[T], None] | None,
    ) -> None:
        try:
            result = fn()
        except SvqtuiError as err:
            message = f"{what}: {err}"
        except Exception as err:  # the console reports, it never shows a traceback
            message = f"{what}: unexpected {type(err).__name__}: {err}"
        else:
            self.refresh_soon()
            if done is not None:
                with contextlib.suppress(RuntimeError):  # the app has already exited
                    self.call_from_thread(done, result)
            return
        self.runtime.log.error(message, device_key, queue)
        with contextlib.suppress(RuntimeError):  # the app has already exited
            self.call_from_thread(self._action_failed, message, undo)

    def _action_failed(self, message: str, undo: Callable[[], None] | None) -> None:
        if undo is not None:
            undo()
        if not self.is_running:
            return
        self.log_pane.pull()
        self.notify(message, title="action failed", severity="error", timeout=8)

    def _need(self, what: str) -> None:
        self.notify(f"select {what} first (Tab moves between tree and table)", severity="warning")

    # -- keys ----------------------------------------------------------------------

    def action_shadow(self) -> None:
        dev = self.selected_device()
        if dev is None:
            self._need("a device")
            return
        on = not self._want_shadow.get(dev.key, dev.shadow)
        self._want_shadow[dev.key] = on
        if not on:
            self.holds = {k for k in self.holds if not k.startswith(f"{dev.key}#")}

        def undo() -> None:
            self._want_shadow.pop(dev.key, None)

        self._act(
            f"shadow {'on' if on else 'off'} for {self._device_name(dev.key)}",
            partial(self.runtime.set_shadow, dev.key, on),
            dev.key,
            undo=undo,
        )

    def action_mask(self) -> None:
        row = self.selected_row()
        if row is None:
            self._need("a queue")
            return
        key, hold = row.key, row.key not in self.holds
        (self.holds.add if hold else self.holds.discard)(key)

        def undo() -> None:
            (self.holds.discard if hold else self.holds.add)(key)

        self._act(
            f"{'mask' if hold else 'unmask'} {self._queue_name(row)}",
            partial(self.runtime.set_masked, row.device_key, row.view.index, hold),
            row.device_key,
            row.view.index,
            undo,
        )

    def _inject(self, link: Link) -> None:
        row = self.selected_row()
        if row is None:
            self._need("a queue")
            return
        self._act(
            f"inject a {link.name.lower()} on {self._queue_name(row)}",
            partial(self.runtime.inject, row.device_key, row.view.index, link),
            row.device_key,
            row.view.index,
        )

    def action_fault(self, name: str) -> None:
        """Arm a fault (svqtui.engine.faults names) on the selected queue, or clear."""
        row = self.selected_row()
        if row is None:
            self._need("a queue")
            return
        fault = None if name == "clear" else Fault.named(name)
        what = fault.describe() if fault else "clear faults"
        self._act(
            f"fault: {what} on {self._queue_name(row)}",
            partial(self.runtime.set_fault, row.device_key, row.view.index, fault),
            row.device_key,
            row.view.index,
        )

    def action_kick(self) -> None:
        self._inject(Link.KICK)

    def action_call(self) -> None:
        self._inject(Link.CALL)

    def action_reset(self) -> None:
        if isinstance(self.screen, QueueDetail) or self.scope.kind is ScopeKind.DEVICE:
            dev = self.selected_device()
            keys: list[str | None] = [dev.key] if dev else []
        elif self.scope.kind is ScopeKind.VM and self.snapshot is not None:
            keys = [
                d.key for vm in self.snapshot.vms if vm.key == self.scope.key for d in vm.devices
            ]
        else:
            keys = [None]
        if not keys:
            self._need("a device")
            return

        def reset() -> None:
            for key in keys:
                self.runtime.reset(key)

        where = (
            "every device"
            if keys == [None]
            else ", ".join(self._device_name(k or "") for k in keys)
        )
        self._act(f"reset counters of {where}", reset)
        self.notify(f"counters reset: {where}", timeout=3)

    def action_copy_state(self) -> None:
        row = self.selected_row()
        if row is None or self.snapshot is None:
            self._need("a queue")
            return
        text = state_report(self.snapshot, row)
        self.copy_to_clipboard(text)
        self.runtime.log.info(
            f"state of {self._queue_name(row)} (copied to the clipboard):\n{text}",
            row.device_key,
            row.view.index,
        )
        self.log_pane.pull()
        self.notify(f"state of {self._queue_name(row)} copied (and in the log)", timeout=3)

    def action_filter(self) -> None:
        if isinstance(self.screen, QueueDetail):
            self.pop_screen()
        filt = self.query_one(FilterInput)
        filt.display = True
        filt.value = self.filter_text
        # Focus now, not later: keys typed right after "/" must reach the filter.
        self.screen.set_focus(filt)

    def action_clear_filter(self) -> None:
        if self.filter_text:
            self.query_one(FilterInput).action_clear_filter()

    def action_sort(self) -> None:
        self.sort_mode = self.sort_mode.next()
        self._show_queues()
        self.status_bar.show(self.snapshot, self.view_state)

    def action_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            self.refresh_soon()
        self.status_bar.show(self.snapshot, self.view_state)

    def action_delay(self) -> None:
        delay = next_delay(self.runtime.monitor.interval_s)
        self.runtime.monitor.set_interval(delay)
        self.status_bar.show(self.snapshot, self.view_state)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_detail(self, row_key: str | None = None) -> None:
        key = row_key or self.table.cursor_key
        if self.snapshot is None or key is None or key not in self.snapshot.rows:
            self._need("a queue")
            return
        row = self.snapshot.rows[key]
        events = self.runtime.log.for_device(row.device_key)
        hold = key in self.holds
        self.push_screen(QueueDetail(row.device_key, row.view.index, self.snapshot, events, hold))

    def shadowed_real_devices(self) -> list[str]:
        """Real devices in shadow mode (quitting hands their paths back)."""
        snap = self.snapshot
        if snap is None:
            return []
        return [
            f"{vm.name}/{d.name}"
            for vm in snap.vms
            for d in vm.devices
            if d.real and (self._want_shadow.get(d.key, d.shadow))
        ]

    def action_request_quit(self) -> None:
        # Attached to a headless svqtui, quitting only detaches: nothing to ask.
        devices = self.shadowed_real_devices() if self.runtime.owns_devices else []
        if not devices:
            self.exit(0)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.exit(0)

        self.push_screen(ConfirmQuit(devices), answered)


def run_console(runtime: ConsoleTarget) -> int:
    """Run the console over a started runtime until the operator quits.

    The UI thread runs at a lower priority than the engine's (started
    before it, so unaffected): rendering yields the CPU to relaying."""
    lower_thread_priority()
    settle_after_start()
    SvqtuiApp(runtime).run()
    return 0
