"""The console's keys: one ``KeyTable`` per app class, read by the app's
bindings, the `?` help screen, the footer, the command palette and the
modal check, so they can never disagree.

The console's own table is ``CONSOLE_KEYS`` (``SvqtuiApp.KEYS``); an app
subclass adds keys by extending it (``KEYS = SvqtuiApp.KEYS.extend(...)``)
and gets their bindings from the table. ``keys_of(app)`` is the running app's
table.
"""

from __future__ import annotations

from collections.abc import Iterator
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


class KeyClash(ValueError):
    """A key table would bind one key, or name one action, twice."""


@dataclass(frozen=True, slots=True)
class KeyTable:
    """An app's operator keys, in help and palette order."""

    specs: tuple[KeySpec, ...]

    def __post_init__(self) -> None:
        for what, names in (
            ("key", [k.key for k in self.specs]),
            ("action", [k.action for k in self.specs]),
        ):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise KeyClash(f"{what} listed twice in a key table: {', '.join(twice)}")

    def __iter__(self) -> Iterator[KeySpec]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def extend(self, *specs: KeySpec) -> KeyTable:
        """This table plus ``specs`` (after it); raises KeyClash on a reused key or action."""
        return KeyTable((*self.specs, *specs))

    @property
    def actions(self) -> frozenset[str]:
        return frozenset(k.action for k in self.specs)

    def bindings(self) -> list[Binding]:
        """The app-level bindings for every key (help first in the footer)."""
        first = sorted(self.specs, key=lambda k: k.action != "help")
        return [
            Binding(
                k.key, k.action, k.label, show=k.footer, key_display=k.shown, priority=k.priority
            )
            for k in first
        ]


CONSOLE_KEYS = KeyTable(
    (
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
            "f",
            "f",
            "fault('drop-call')",
            "Drop call",
            "Fault: drop the next call of the selected queue (shadow mode; counted as dropped)",
            footer=False,
        ),
        KeySpec(
            "x",
            "x",
            "fault('drop-kick')",
            "Drop kick",
            "Fault: drop the next kick of the selected queue (shadow mode; counted as dropped)",
            footer=False,
        ),
        KeySpec(
            "e",
            "e",
            "fault('delay-call')",
            "Delay calls",
            "Fault: delay every call of the selected queue by 500 ms until cleared",
            footer=False,
        ),
        KeySpec(
            "u",
            "u",
            "fault('dup-call')",
            "Dup call",
            "Fault: write the next call of the selected queue twice",
            footer=False,
        ),
        KeySpec(
            "F",
            "F",
            "fault('clear')",
            "Clear faults",
            "Clear every fault of the selected queue (a delayed call is delivered at once)",
            footer=False,
        ),
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
            "o",
            "o",
            "sort",
            "Sort",
            "Cycle the sort: name, kicks/s, calls/s, in-flight, stuck first",
        ),
        KeySpec(
            "y",
            "y",
            "copy_state",
            "Copy state",
            "Copy the selected queue's full state as text (diagnosis, ring, oldest request) "
            "to the clipboard and the log, for a bug report",
            footer=False,
        ),
        KeySpec("p", "p", "pause", "Pause", "Pause/resume the display"),
        KeySpec(
            "d", "d", "delay", "Delay", "Cycle the refresh delay: 0.5, 1, 2, 5 s", footer=False
        ),
        KeySpec("question_mark", "?", "help", "Help", "Show the keys, columns and states"),
        KeySpec(
            "q",
            "q",
            "request_quit",
            "Quit",
            "Quit (asks first while a real device is in shadow mode: quitting hands its path back)",
        ),
    )
)

NAVIGATION: tuple[tuple[str, str], ...] = (
    ("Tab", "Move between the device tree, the queue table and the log (Shift+Tab back)"),
    ("Left/Right", "Tree -> table; table (scrolled fully left) -> tree; else scroll"),
    ("Up/Down", "Move the selection (PgUp/PgDn/Home/End too)"),
    ("Enter", "Detail of the selected queue (Esc goes back)"),
    ("Esc", "Back, or clear the filter"),
    ("Ctrl+P", "Command palette: every command above, by name"),
)


def keys_of(app: object) -> KeyTable:
    """The key table of the running ``app`` (its ``KEYS``: the console's, or a
    subclass's extension of it)."""
    table = getattr(app, "KEYS", None)
    if not isinstance(table, KeyTable):
        raise TypeError(f"{type(app).__name__} has no svqtui key table (KEYS)")
    return table


def fit_footer(footer: Footer, width: int) -> None:
    """Compact footer (and no palette hint) on narrow terminals, so the keys fit."""
    narrow = width < NARROW_WIDTH
    footer.compact = narrow
    footer.show_command_palette = not narrow
