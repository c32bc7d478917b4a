"""The `/` filter line: narrows the queue table as you type; Enter keeps the
filter and returns to the table, Esc clears it."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterInput(Input):
    """A one-line filter; hidden until `/` is pressed."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False)
    ]

    class FilterChanged(Message):
        """The filter text changed (``done``: the operator left the line)."""

        def __init__(self, text: str, done: bool) -> None:
            super().__init__()
            self.text = text
            self.done = done

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="filter: VM, device, #queue, stuck, masked…", id=id)

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.post_message(self.FilterChanged(event.value, done=False))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.FilterChanged(event.value, done=True))

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.FilterChanged("", done=True))
