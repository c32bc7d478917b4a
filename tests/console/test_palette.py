"""The command palette (Ctrl+P): every key's command is there, and running
one does what the key does."""

from __future__ import annotations

import pytest
from textual.command import CommandList, CommandPalette
from textual.pilot import Pilot

from svqtui.console.app import SvqtuiApp
from svqtui.widgets.help_screen import HelpScreen
from tests.support.console import until

NET = "demo:web01/net0"
SIZE = (160, 50)


async def ready(pilot: Pilot[int], app: SvqtuiApp) -> None:
    await until(pilot, lambda: app.frames >= 1 and app.table.row_count == 10, "the first snapshot")


async def run_command(pilot: Pilot[int], app: SvqtuiApp, text: str) -> None:
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")
    await pilot.press(*text)
    await until(
        pilot, lambda: app.screen.query_one(CommandList).option_count > 0, f"a hit for {text!r}"
    )
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, CommandPalette), "the palette to close")


async def test_palette_lists_every_key(app: SvqtuiApp) -> None:
    """Opening the palette with no query shows a command for every key."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the palette")

        def titles() -> str:
            return " ".join(str(o.prompt) for o in app.screen.query_one(CommandList).options)

        def every_key() -> bool:
            return all(f"({k.shown})" in titles() for k in app.KEYS)

        await until(pilot, every_key, "every command")
        await pilot.press("escape")


async def test_palette_shadow_runs_the_shadow_action(app: SvqtuiApp) -> None:
    """ "Shadow (s)" from the palette flips the selected device's shadow mode."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_command(pilot, app, "Shadow (s)")
        await until(pilot, lambda: not app.snapshot.devices[NET].shadow, "net0 shadow off")


@pytest.mark.parametrize(
    ("command", "status"),
    [("Sort (o)", "sort kicks/s"), ("Pause (p)", "PAUSED"), ("Delay (d)", "every 0.5s")],
)
async def test_palette_view_commands(app: SvqtuiApp, command: str, status: str) -> None:
    """Sort, pause and delay from the palette change the status bar like their keys."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_command(pilot, app, command)
        await until(pilot, lambda: status in app.status_bar.text, status)


async def test_palette_help_and_inject(app: SvqtuiApp) -> None:
    """Help (?) opens help; Kick (k) injects a kick on the selected queue."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_command(pilot, app, "Kick (k)")
        await until(pilot, lambda: app.snapshot.rows[f"{NET}#0"].view.injected_kicks == 1, "a kick")
        await run_command(pilot, app, "Help (?)")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
