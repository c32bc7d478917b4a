"""The quit confirmation: asked when a real device is in shadow mode, since
quitting takes svqtui's engine out of that device's notification path."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def quit_question(devices: list[str]) -> str:
    names = ", ".join(devices)
    return (
        f"{names} {'is' if len(devices) == 1 else 'are'} in shadow mode.\n"
        "Quitting hands the notification path back (the back-end gets the "
        "front-end's own eventfds again). Quit?"
    )


class ConfirmQuit(ModalScreen[bool]):
    """Yes/no; y or Enter quits, n or Esc stays."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Quit"),
        Binding("n,escape", "answer(False)", "Stay"),
    ]

    def __init__(self, devices: list[str]) -> None:
        super().__init__()
        self.devices = devices

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-dialog"):
            yield Static(quit_question(self.devices), id="quit-question")
            with Horizontal(id="quit-buttons"):
                yield Button("Quit (y)", variant="error", id="quit-yes")
                yield Button("Stay (n)", variant="primary", id="quit-no")

    def on_mount(self) -> None:
        self.query_one("#quit-no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "quit-yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
