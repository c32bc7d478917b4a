"""The key table is extensible: an app subclass adds a key by extending
``KEYS``, and its binding, the help screen, the command palette and the modal
check all follow from the running app's table (over the real demo runtime)."""

from __future__ import annotations

import io
from typing import ClassVar

import pytest
from rich.console import Console
from textual.binding import Binding
from textual.command import CommandList, CommandPalette
from textual.widgets import Static

from svqtui.console.app import SvqtuiApp
from svqtui.console.keys import CONSOLE_KEYS, KeyClash, KeySpec, KeyTable, keys_of
from svqtui.runtime import Runtime
from svqtui.widgets.help_screen import HelpScreen
from tests.support.console import until

SIZE = (160, 50)
EXTRA = KeySpec("z", "z", "extra", "Extra", "Count one extra press (a subclass's own key)")


class ExtraApp(SvqtuiApp):
    """The console plus one key, declared only in its table."""

    KEYS: ClassVar[KeyTable] = SvqtuiApp.KEYS.extend(EXTRA)

    def __init__(self, runtime: Runtime) -> None:
        super().__init__(runtime)
        self.presses = 0

    def action_extra(self) -> None:
        self.presses += 1


def test_extend_rejects_a_reused_key_or_action() -> None:
    """Extending the table with a key or an action it already has raises KeyClash;
    extending leaves the original table as it was."""
    with pytest.raises(KeyClash, match=r"key listed twice in a key table: s$"):
        CONSOLE_KEYS.extend(KeySpec("s", "s", "other", "Other", "reuses s"))
    with pytest.raises(KeyClash, match=r"action listed twice in a key table: shadow$"):
        CONSOLE_KEYS.extend(KeySpec("z", "z", "shadow", "Shadow", "reuses shadow"))
    assert len(ExtraApp.KEYS) == len(CONSOLE_KEYS) + 1
    assert "extra" not in CONSOLE_KEYS.actions and "extra" in ExtraApp.KEYS.actions


def test_keys_of_needs_a_key_table() -> None:
    """keys_of reads an app's KEYS and refuses an object without a KeyTable."""
    assert keys_of(ExtraApp) is ExtraApp.KEYS
    with pytest.raises(TypeError, match="no svqtui key table"):
        keys_of(object())


def test_the_subclass_gets_a_binding_for_its_key_only() -> None:
    """The subclass's bindings include x -> extra; the console's do not."""

    def actions(app: type[SvqtuiApp]) -> dict[str, str]:
        merged = app._merged_bindings  # what Textual built from the class's BINDINGS
        assert merged is not None
        return {key: bs[-1].action for key, bs in merged.key_to_bindings.items()}

    plain = {b.key: b.action for b in SvqtuiApp.BINDINGS if isinstance(b, Binding)}
    assert "z" not in plain and plain["s"] == "shadow"
    assert actions(ExtraApp)["z"] == "extra"
    assert actions(ExtraApp)["s"] == "shadow"


async def test_the_added_key_runs_and_shows_everywhere(runtime: Runtime) -> None:
    """x runs the subclass's action; the help screen lists it, and behind the
    help screen z does nothing; the palette offers "Extra (z)" and runs it."""
    app = ExtraApp(runtime)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.frames >= 1, "the first snapshot")
        await pilot.press("z")
        await until(pilot, lambda: app.presses == 1, "the key's action")

        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        console = Console(width=160, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#help-text", Static).content)
        assert EXTRA.help in " ".join(console.export_text().split())
        await pilot.press("z")
        await pilot.pause(0.1)
        assert app.presses == 1, "z behind the help screen ran nothing"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "help closed")

        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
        await pilot.press(*"Extra (z)")
        await until(
            pilot, lambda: app.screen.query_one(CommandList).option_count > 0, "a palette hit"
        )
        await pilot.press("enter")
        await until(pilot, lambda: app.presses == 2, "the action from the palette")
