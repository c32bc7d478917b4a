"""The console's keys: one table read by the app's bindings, the `?` help
screen, the footer and the command palette, so they can never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding
from textual.widgets import Footer

NARROW_WIDTH = 120  # below this many columns the footer goes compact


@dataclass(frozen=True, slots=True)
class KeySpec:
    """One operator command: its key, app action, short label and help line."""

    key: str  # Textual key name ("s", "slash", "question_mark")
    shown: str  # how the key is written in help ("s", "/", "?")
    action: str  # App action name (without "action_")
    label: str  # footer / palette title
    help: str  # one line for the help screen and the palette
    footer: bool = True
    priority: bool = False  # checked before the focused widget sees the key


KEYS: tuple[KeySpec, ...] = (
    KeySpec(
        "s",
        "s",
        "shadow",
        "Shadow",
        "Shadow mode on/off for the selected device: svqtui's engine carries its notifications",
    ),
    KeySpec(
        "m",
        "m",
        "mask",
        "Mask",
        "Mask/unmask the selected queue (an operator hold: calls are latched as PENDING)",
    ),
    KeySpec("k", "k", "kick", "Kick", "Inject a kick (guest -> device) on the selected queue"),
    KeySpec("c", "c", "call", "Call", "Inject a call (device -> guest) on the selected queue"),
    KeySpec(
        "r",
        "r",
        "reset",
        "Reset",
        "Reset counters of the selected device (of every device when 'all VMs' is selected)",
    ),
    # priority: the keys typed right after "/" must reach the filter line, not the table
    KeySpec(
        "slash",
        "/",
        "filter",
        "Filter",
        "Filter queues by VM/device/queue text (Esc clears)",
        priority=True,
    ),
    KeySpec(
        "o", "o", "sort", "Sort", "Cycle the sort: name, kicks/s, calls/s, in-flight, stuck first"
    ),
    KeySpec("p", "p", "pause", "Pause", "Pause/resume the display"),
    KeySpec("d", "d", "delay", "Delay", "Cycle the refresh delay: 0.5, 1, 2, 5 s", footer=False),
    KeySpec("question_mark", "?", "help", "Help", "Show the keys, columns and states"),
    KeySpec(
        "q",
        "q",
        "request_quit",
        "Quit",
        "Quit (asks first while a real device is in shadow mode: quitting hands its path back)",
    ),
)

NAVIGATION: tuple[tuple[str, str], ...] = (
    ("Tab", "Move between the device tree, the queue table and the log (Shift+Tab back)"),
    ("Left/Right", "Tree -> table; table (scrolled fully left) -> tree; else scroll"),
    ("Up/Down", "Move the selection (PgUp/PgDn/Home/End too)"),
    ("Enter", "Detail of the selected queue (Esc goes back)"),
    ("Esc", "Back, or clear the filter"),
    ("Ctrl+P", "Command palette: every command above, by name"),
)


def bindings() -> list[Binding]:
    """The app-level bindings for every key in KEYS (help first in the footer)."""
    first = sorted(KEYS, key=lambda k: k.action != "help")
    return [
        Binding(k.key, k.action, k.label, show=k.footer, key_display=k.shown, priority=k.priority)
        for k in first
    ]


def fit_footer(footer: Footer, width: int) -> None:
    """Compact footer (and no palette hint) on narrow terminals, so the keys fit."""
    narrow = width < NARROW_WIDTH
    footer.compact = narrow
    footer.show_command_palette = not narrow
