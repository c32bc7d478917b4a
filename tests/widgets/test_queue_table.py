"""The queue table updates in place: keyed rows, only changed cells
reformatted, only rows in the viewport formatted, order changed only when
the sort says so, the cursor following its queue."""

from __future__ import annotations

from rich.style import Style
from textual.app import App, ComposeResult

from svqtui.console.selection import Scope, SortMode
from svqtui.widgets.queue_table import COLUMN_KEYS, COLUMNS, QueueTable, row_strip
from tests.support.console import synthetic_snapshot


class Host(App[None]):
    def compose(self) -> ComposeResult:
        yield QueueTable(id="queues")


async def test_unchanged_snapshot_writes_no_cells() -> None:
    """Showing an equal snapshot again rewrites nothing; one changed queue
    rewrites only that row's changed cells."""
    app = Host()
    async with app.run_test(size=(200, 40)) as pilot:
        table = app.query_one(QueueTable)
        snap = synthetic_snapshot(devices=2, queues=4, tick=1)
        table.show(snap, Scope.all(), "", SortMode.NAME)
        await pilot.pause()
        assert table.row_count == 8
        first = table.cells_written
        assert first == 8 * len(COLUMNS)
        table.show(synthetic_snapshot(devices=2, queues=4, tick=1), Scope.all(), "", SortMode.NAME)
        assert table.cells_written == first
        table.show(synthetic_snapshot(devices=2, queues=4, tick=2), Scope.all(), "", SortMode.NAME)
        changed = table.cells_written - first
        # kicks, calls, avail and used change in every row; nothing else does
        # (a one-sample history is a full block at any rate)
        assert changed == 8 * 4
        assert table.plain_row("syn:vm0/dev1#3")[COLUMN_KEYS.index("kicks")] == "8"


async def test_only_rows_near_the_viewport_are_written() -> None:
    """With 1,024 queues and 20 visible rows, an update formats about a
    screenful; scrolling down brings the rows there up to date."""
    app = Host()
    async with app.run_test(size=(200, 24)) as pilot:
        table = app.query_one(QueueTable)
        table.show(
            synthetic_snapshot(devices=64, queues=16, tick=1), Scope.all(), "", SortMode.NAME
        )
        await pilot.pause()
        assert table.row_count == 1024
        before = table.cells_written
        table.show(
            synthetic_snapshot(devices=64, queues=16, tick=2), Scope.all(), "", SortMode.NAME
        )
        written_rows = (table.cells_written - before) / 4
        assert 0 < written_rows <= 24
        last = table.shown_keys[-1]
        assert table.plain_row(last) is None  # never in view: never formatted
        table.action_last()
        await pilot.pause()
        assert table.plain_row(last)[COLUMN_KEYS.index("avail")] == "2"


async def test_rows_keep_their_keys_and_cursor_across_sorts() -> None:
    """Sorting moves rows without re-adding them, and the cursor follows its queue."""
    app = Host()
    async with app.run_test(size=(200, 40)) as pilot:
        table = app.query_one(QueueTable)
        snap = synthetic_snapshot(devices=2, queues=4, tick=1)
        table.show(snap, Scope.all(), "", SortMode.NAME)
        await pilot.pause()
        table.move_to("syn:vm0/dev1#1")
        written = table.cells_written
        table.show(snap, Scope.all(), "", SortMode.KICKS)
        assert table.cells_written == written, "a re-sort rewrites no cells"
        assert table.shown_keys[:2] == ["syn:vm0/dev0#3", "syn:vm0/dev1#3"]
        assert table.cursor_key == "syn:vm0/dev1#1"
        assert table.get_row_index("syn:vm0/dev1#1") == table.cursor_row


async def test_scope_and_filter_add_and_remove_rows() -> None:
    """Narrowing removes rows, widening adds them back with current data."""
    app = Host()
    async with app.run_test(size=(200, 40)) as pilot:
        table = app.query_one(QueueTable)
        snap = synthetic_snapshot(devices=40, queues=2, tick=3)
        table.show(snap, Scope.all(), "", SortMode.NAME)
        await pilot.pause()
        table.show(snap, Scope.device("syn:vm3/dev7"), "", SortMode.NAME)  # bulk removal
        assert table.shown_keys == ["syn:vm3/dev7#0", "syn:vm3/dev7#1"]
        assert table.row_count == 2
        table.show(snap, Scope.vm("syn:vm3"), "#1", SortMode.NAME)
        assert table.shown_keys == ["syn:vm3/dev6#1", "syn:vm3/dev7#1"]
        table.show(synthetic_snapshot(devices=40, queues=2, tick=4), Scope.all(), "", SortMode.NAME)
        assert table.row_count == 80
        assert table.plain_row("syn:vm0/dev0#0")[COLUMN_KEYS.index("kicks")] == "4"


async def test_stuck_rows_are_marked_in_words() -> None:
    """A stuck queue's name starts with "!" and its Stuck cell says STUCK and why."""
    app = Host()
    async with app.run_test(size=(200, 40)):
        table = app.query_one(QueueTable)
        snap = synthetic_snapshot(devices=2, queues=2, stuck=frozenset({"syn:vm0/dev0#1"}))
        table.show(snap, Scope.all(), "", SortMode.NAME)
        row = table.plain_row("syn:vm0/dev0#1")
        assert row[0] == "!vm0/dev0 #1"
        assert row[COLUMN_KEYS.index("stuck")] == "no call for 9s"
        painted = row_strip(row, Style()).text
        assert "STUCK no call for 9s" in painted
