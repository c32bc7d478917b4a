"""Every console key, pressed in a pilot over the real demo and engine:
each test checks the effect in the next snapshots and on screen."""

from __future__ import annotations

import io

from rich.console import Console
from textual import events
from textual.pilot import Pilot
from textual.widgets import Input, Static

from svqtui.console.app import SvqtuiApp
from svqtui.console.keys import CONSOLE_KEYS
from svqtui.model import MaskState
from svqtui.runtime import Runtime
from svqtui.sources.demo import DemoSource
from svqtui.widgets.confirm_quit import ConfirmQuit
from svqtui.widgets.help_screen import HelpScreen
from svqtui.widgets.queue_detail import QueueDetail
from svqtui.widgets.queue_table import COLUMN_KEYS, COLUMNS
from tests.support.console import RealDemo, demo_runtime, started, until

NET = "demo:web01/net0"
BLK = "demo:db01/blk0"
SIZE = (160, 50)


def cell(app: SvqtuiApp, key: str, column: str) -> str:
    row = app.table.plain_row(key)
    assert row is not None, f"{key} is not shown"
    return row[COLUMN_KEYS.index(column)]


async def ready(pilot: Pilot[int], app: SvqtuiApp) -> None:
    await until(pilot, lambda: app.frames >= 1 and app.table.row_count == 10, "the first snapshot")


async def test_s_toggles_shadow_of_the_selected_device(app: SvqtuiApp) -> None:
    """s on a net0 row turns net0's shadow off (kicks become "-"), s again on."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert app.table.cursor_key == f"{NET}#0"
        await pilot.press("s")
        await until(pilot, lambda: not app.snapshot.devices[NET].shadow, "shadow off")
        await until(pilot, lambda: cell(app, f"{NET}#0", "shadow") == "off", "shadow cell off")
        assert cell(app, f"{NET}#0", "kicks") == "-"
        assert app.snapshot.devices[BLK].shadow, "only the selected device changes"
        await pilot.press("s")
        await until(pilot, lambda: app.snapshot.devices[NET].shadow, "shadow back on")


async def test_m_holds_calls_as_pending_and_releases(app: SvqtuiApp, demo: DemoSource) -> None:
    """m masks the selected queue (MASKED), a call then latches (PENDING), m
    again unmasks (UNMASKED)."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        key = f"{NET}#0"
        await pilot.press("m")
        await until(pilot, lambda: cell(app, key, "mask") == "MASKED", "MASKED")
        demo.advance(2)  # the device answers: the call is held
        await until(pilot, lambda: cell(app, key, "mask") == "PENDING", "PENDING")
        assert app.snapshot.rows[key].view.mask is MaskState.PENDING
        await pilot.press("m")
        await until(pilot, lambda: cell(app, key, "mask") == "UNMASKED", "UNMASKED")


async def test_k_and_c_inject_notifications(app: SvqtuiApp) -> None:
    """k injects a kick and c a call on the selected queue (counters rise by one)."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("down")
        key = app.table.cursor_key
        assert key == f"{NET}#1"
        before = app.snapshot.rows[key].view
        await pilot.press("k")
        await until(
            pilot,
            lambda: app.snapshot.rows[key].view.injected_kicks == before.injected_kicks + 1,
            "an injected kick",
        )
        await pilot.press("c")
        await until(
            pilot,
            lambda: app.snapshot.rows[key].view.injected_calls == before.injected_calls + 1,
            "an injected call",
        )
        assert app.snapshot.rows[f"{NET}#0"].view.injected_kicks == 0


async def test_r_resets_counters(app: SvqtuiApp) -> None:
    """r with "all VMs" selected zeroes every queue's counters."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await until(  # the first snapshot shown may predate the fixture's demo ticks
            pilot, lambda: any(r.view.kicks for r in app.snapshot.rows.values()), "counted kicks"
        )
        await pilot.press("r")
        await until(
            pilot,
            lambda: all(r.view.kicks == 0 for r in app.snapshot.rows.values()),
            "zero kicks everywhere",
        )
        assert cell(app, f"{BLK}#1", "kicks") == "0"


async def test_r_on_a_device_resets_only_that_device(app: SvqtuiApp) -> None:
    """r with a device picked in the tree resets that device alone."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.device_tree.focus()
        await pilot.press("down", "down")  # all VMs -> web01 -> net0
        await until(pilot, lambda: app.table.row_count == 8, "net0's 8 queues")
        await pilot.press("r")
        await until(
            pilot, lambda: all(r.view.kicks == 0 for r in app.snapshot.rows_of(NET)), "net0 reset"
        )
        assert all(r.view.kicks for r in app.snapshot.rows_of(BLK))


async def test_slash_filters_and_escape_clears(app: SvqtuiApp) -> None:
    """/ then text narrows the rows; Enter keeps the filter; Esc clears it."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press(*"blk0")
        await until(pilot, lambda: app.table.row_count == 2, "two blk0 rows")
        assert app.table.shown_keys == [f"{BLK}#0", f"{BLK}#1"]
        await pilot.press("enter")
        assert app.focused is app.table
        assert "filter blk0" in app.status_bar.text
        await pilot.press("escape")
        await until(pilot, lambda: app.table.row_count == 10, "all rows back")
        assert "filter" not in app.status_bar.text


async def test_keys_typed_right_after_slash_reach_the_filter(app: SvqtuiApp) -> None:
    """Keys queued together with "/" (fast typing) go to the filter line, not
    to the table (where k would inject a kick); "/" inside the filter is text."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        for key, char in [("slash", "/"), *((c, c) for c in "web01"), ("slash", "/"), ("k", "k")]:
            app.post_message(events.Key(key, char))
        await until(pilot, lambda: app.filter_text == "web01/k", "the typed filter")
        assert app.snapshot.rows[f"{NET}#0"].view.injected_kicks == 0
        assert app.table.row_count == 0


async def test_filter_matches_queue_numbers_and_states(app: SvqtuiApp) -> None:
    """The filter matches "#N" and state words such as "masked"."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("slash", *"net0 #3", "enter")
        await until(pilot, lambda: app.table.shown_keys == [f"{NET}#3"], "net0 queue 3 only")


async def test_o_cycles_the_sort(app: SvqtuiApp, demo: DemoSource) -> None:
    """o sorts by kicks/s (largest first), then calls/s, in-flight, stuck, name."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        names = app.table.shown_keys
        await pilot.press("o")
        assert "sort kicks/s" in app.status_bar.text

        def by_kick_rate() -> bool:
            rows = app.snapshot.rows
            rates = [rows[k].kick_rate for k in app.table.shown_keys]
            return rates == sorted(rates, reverse=True) and len(rates) == 10

        demo.advance(3)
        await until(pilot, by_kick_rate, "rows by kicks/s")
        for label in ("calls/s", "in-flight", "stuck first", "name"):
            await pilot.press("o")
            assert f"sort {label}" in app.status_bar.text
        assert app.table.shown_keys == names


async def test_p_pauses_the_display(app: SvqtuiApp, runtime: Runtime, demo: DemoSource) -> None:
    """p freezes the table (a newer snapshot is not shown); p again resumes."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        key = f"{NET}#0"
        await pilot.press("p")
        assert "PAUSED" in app.status_bar.text
        shown, frames = cell(app, key, "kicks"), app.frames
        demo.advance(5)
        app._deliver(runtime.monitor.refresh())  # as the feed would, with new counters
        await pilot.pause()
        assert app.snapshot is not None
        assert cell(app, key, "kicks") == shown
        assert app.frames == frames
        await pilot.press("p")
        assert "PAUSED" not in app.status_bar.text
        await until(pilot, lambda: cell(app, key, "kicks") != shown, "the display to move again")


async def test_d_cycles_the_refresh_delay(app: SvqtuiApp, runtime: Runtime) -> None:
    """d steps the refresh delay 0.5 -> 1 -> 2 -> 5 -> 0.5 s (status bar and monitor)."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert "every 0.2s" in app.status_bar.text
        for expected in (0.5, 1.0, 2.0, 5.0, 0.5):
            await pilot.press("d")
            assert f"every {expected:g}s" in app.status_bar.text
            assert runtime.monitor.interval_s == expected
            assert app.runtime.monitor.interval_s == expected
        await until(pilot, lambda: app.snapshot.interval_s == 0.5, "a snapshot at 0.5 s")


async def test_q_quits_without_asking_for_the_demo(app: SvqtuiApp) -> None:
    """q quits at once when no real device is in shadow mode."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, "the app to exit")
    assert app.return_value == 0


async def test_q_asks_first_when_a_real_device_is_shadowed() -> None:
    """With a real device shadowed (RealDemo stands in for an interposed
    device), q asks; n stays; q then y quits."""
    source = RealDemo(seed=3, autorun=False)
    with started(demo_runtime(source)) as rt:
        app = SvqtuiApp(rt)
        async with app.run_test(size=SIZE) as pilot:
            await ready(pilot, app)
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), "the question")
            question = app.screen
            assert isinstance(question, ConfirmQuit)
            assert question.devices == ["web01/net0", "db01/blk0"]
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit), "it to close")
            assert app.is_running
            await pilot.press("s")  # keys still work after the question
            await until(pilot, lambda: not app.snapshot.devices[NET].shadow, "net0 shadow off")
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, ConfirmQuit), "the question again")
            assert app.screen.devices == ["db01/blk0"]  # type: ignore[attr-defined]
            await pilot.press("y")
            await until(pilot, lambda: not app.is_running, "the app to exit")
        assert app.return_value == 0


async def test_question_mark_shows_help(app: SvqtuiApp) -> None:
    """? shows every key and column; operator keys do nothing behind it; Esc closes."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help screen")
        console = Console(width=120, record=True, file=io.StringIO())
        console.print(app.screen.query_one("#help-text", Static).content)
        text = " ".join(console.export_text().split())
        for spec in CONSOLE_KEYS:
            assert " ".join(spec.help.split()) in text
        for column in COLUMNS:
            assert column.help in text
        await pilot.press("s")
        await pilot.pause()
        assert not app._want_shadow, "s behind the help screen started no action"
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen), "help to close")


async def test_enter_opens_the_queue_detail(app: SvqtuiApp) -> None:
    """Enter shows the detail of the row under the cursor: fds, notes, ring
    source; k there injects on that queue, m holds it; Esc goes back."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("down", "down", "enter")
        await until(pilot, lambda: isinstance(app.screen, QueueDetail), "the detail screen")
        detail = app.screen
        assert isinstance(detail, QueueDetail)
        assert detail.row_key == f"{NET}#2"
        await until(pilot, lambda: "guest eventfd" in detail.text("detail-fds"), "fd identities")
        title = detail.text("detail-title")
        assert "queue 2 of web01/net0" in title
        assert "note: synthetic device" in title
        assert "(from demo)" in detail.text("detail-figures")
        await pilot.press("k")
        await until(
            pilot, lambda: app.snapshot.rows[f"{NET}#2"].view.injected_kicks == 1, "a kick on q2"
        )
        await pilot.press("m")  # the operator's hold is named as such
        await until(pilot, lambda: "your hold" in detail.text("detail-figures"), "the hold")
        await until(pilot, lambda: "injected a kick" in detail.text("detail-events"), "the event")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, QueueDetail), "back to the table")


async def test_detail_shows_the_diagnosis_first_and_the_ring(
    app: SvqtuiApp, demo: DemoSource
) -> None:
    """The detail's first line is the diagnosis ("why: ..."); the ring part of
    the queue whose kick the demo loses shows its event indices and the oldest
    request decoded, with how in-flight is derived. (The diagnosis itself needs
    seconds of monitor time: tests/sources/test_demo.py checks it on a frozen
    clock.)"""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        demo.advance(420 - demo._tick + 140)  # 7 s into the blk0 queue 0 kick-lost episode
        app.runtime.monitor.refresh_soon(wait=True)
        await pilot.pause()
        app.action_detail(f"{BLK}#0")
        await until(pilot, lambda: isinstance(app.screen, QueueDetail), "the detail screen")
        detail = app.screen
        assert isinstance(detail, QueueDetail)
        await until(pilot, lambda: "avail_event" in detail.text("detail-ring"), "the ring")
        ring = detail.text("detail-ring")
        assert "EVENT_IDX" in ring and "oldest    head" in ring and "in flight" in ring
        assert any(w in ring for w in ("READ sector", "WRITE sector", "FLUSH"))
        body = detail.query_one("#detail-body")
        assert body.children[0].id == "detail-diagnosis"
        assert detail.text("detail-diagnosis").startswith("why: ")


async def test_y_copies_the_queue_state(app: SvqtuiApp) -> None:
    """y puts the selected queue's full state on the clipboard and in the log:
    its name, the diagnosis line, the ring's flags and the oldest request."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("down")
        await pilot.press("y")
        text = app.clipboard
        assert text.startswith("svqtui queue state at ")
        assert "web01/net0 queue 1" in text
        for label in ("why ", "stuck ", "ring ", "avail     idx", "used      idx", "in flight"):
            assert label in text, label
        await until(
            pilot,
            lambda: any("copied to the clipboard" in line for line in app.log_pane.lines_written),
            "the state in the log",
        )


async def test_a_failing_action_is_one_log_line(app: SvqtuiApp) -> None:
    """m on a queue without shadow fails: one ERROR line naming the action and
    what to do, and a notification; the console goes on."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("s")
        await until(pilot, lambda: not app.snapshot.devices[NET].shadow, "shadow off")
        await pilot.press("m")
        await until(
            pilot,
            lambda: any(
                "ERROR mask web01/net0 queue 0" in line for line in app.log_pane.lines_written
            ),
            "the error line",
        )
        line = next(x for x in app.log_pane.lines_written if "ERROR" in x)
        assert "press s first" in line
        assert "\n" not in line and "Traceback" not in line
        assert any("press s first" in n.message for n in app._notifications)
        assert f"{NET}#0" not in app.holds, "the failed hold was undone"


async def test_arrows_and_tab_move_between_tree_and_table(app: SvqtuiApp) -> None:
    """Left from the table goes to the tree, Right back; moving in the tree
    scopes the table to a VM or a device."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        assert app.focused is app.table
        await pilot.press("left")
        assert app.focused is app.device_tree
        await pilot.press("down")  # web01
        await until(pilot, lambda: app.table.row_count == 8, "web01's queues")
        await pilot.press("down", "down", "down")  # net0, db01, blk0
        await until(pilot, lambda: app.table.shown_keys == [f"{BLK}#0", f"{BLK}#1"], "blk0")
        await pilot.press("right")
        assert app.focused is app.table
        await pilot.press("s")  # the device picked in the tree
        await until(pilot, lambda: not app.snapshot.devices[BLK].shadow, "blk0 shadow off")
        assert app.snapshot.devices[NET].shadow
        await pilot.press("shift+tab")
        assert app.focused is app.device_tree


async def test_f_drops_the_next_call_loudly_and_capital_f_clears(
    app: SvqtuiApp, demo: DemoSource
) -> None:
    """f arms "drop the next call" on the selected queue: the Stuck column and
    the status bar say FAULT; the demo's next call is counted as dropped and
    the fault disarms itself; F clears a delay fault armed with e."""
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        key = app.table.cursor_key
        assert key is not None
        await pilot.press("f")
        await until(pilot, lambda: app.snapshot.rows[key].view.fault is not None, "the fault")
        assert cell(app, key, "stuck") == "FAULT drop the next call"
        await until(pilot, lambda: "FAULT on 1 queue" in app.status_bar.text, "status bar")
        demo.advance(4)
        await until(pilot, lambda: app.snapshot.rows[key].view.dropped >= 1, "a dropped call")
        assert app.snapshot.rows[key].view.fault is None  # disarmed after one
        await pilot.press("e")
        await until(pilot, lambda: app.snapshot.rows[key].view.fault, "the delay fault")
        assert app.snapshot.rows[key].view.fault == "delay calls 500 ms"
        await pilot.press("F")
        await until(pilot, lambda: app.snapshot.rows[key].view.fault is None, "faults cleared")
