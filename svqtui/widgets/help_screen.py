"""The `?` help screen: every key, the columns and the masking states, built
from the running app's key table (the same as its bindings) and the queue
table's columns."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from svqtui.console.keys import NAVIGATION, KeyTable, keys_of
from svqtui.widgets.queue_table import COLUMNS


def help_table(keys: KeyTable) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    table.add_row(Text("Keys", style="bold underline"), "")
    for k in keys:
        table.add_row(k.shown, k.help)
    for key, what in NAVIGATION:
        table.add_row(key, what)
    table.add_row("", "")
    table.add_row(Text("Columns", style="bold underline"), "")
    for c in COLUMNS:
        table.add_row(c.label, c.help)
    table.add_row("", "")
    table.add_row(Text("Tree", style="bold underline"), "")
    table.add_row("S", "the device is in shadow mode")
    table.add_row("!N", "N of the device's queues are stuck")
    table.add_row("DOWN", "the VM or device is disconnected")
    return table


class HelpScreen(ModalScreen[None]):
    """The running app's keys and the columns; Esc, q or ? closes it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss", "Close"),
        Binding("q", "dismiss", "Close", show=False),
        Binding("question_mark", "dismiss", "Close", show=False),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body") as body:
            body.border_title = f"{self.app.title} keys (Esc closes)"
            yield Static(help_table(keys_of(self.app)), id="help-text")

    async def action_dismiss(self, result: None = None) -> None:
        self.dismiss(result)
