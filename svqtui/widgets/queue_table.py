"""The queue table: one row per virtqueue of the selected scope.

Rows are keyed by ``QueueRow.key`` and updated in place: each refresh diffs
the wanted rows against the shown ones (add/remove only what changed),
re-orders only when the order changed, and rewrites only the cells whose text
changed, of only the rows in (or near) the viewport. Rows scrolled out of
view keep their newest data and are written when they scroll back in, so
1,024 queues at 10 Hz cost about what one screenful does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from svqtui.model import MaskState, QueueRow, Snapshot
from svqtui.widgets import format as fmt
from svqtui.widgets.selection import Scope, SortMode, device_vms, in_scope, matches, ordered

SPARK_WIDTH = 10
VIEW_MARGIN = 8  # rows above and below the viewport kept current
BULK_REMOVE = 16  # removing more rows than this rebuilds the table instead


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    help: str
    numeric: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("queue", "Queue", 14, "VM/device #queue index; a leading ! marks a stuck queue"),
    Column("mask", "Mask", 8, "UNMASKED, MASKED, or PENDING (masked with a call latched)"),
    Column("kicks", "Kicks", 7, "guest -> device notifications counted (- without shadow)", True),
    Column("calls", "Calls", 7, "device -> guest notifications counted (- without shadow)", True),
    Column("kick_rate", "Kick/s", 6, "kicks per second over the last refresh", True),
    Column("call_rate", "Call/s", 6, "calls per second over the last refresh", True),
    Column("rate", "Rate", SPARK_WIDTH, "sparkline of recent kicks+calls per second"),
    Column("shadow", "Shadow", 6, "on when svqtui's engine carries this queue's notifications"),
    Column("in_flight", "In-fl", 5, "requests in flight: avail index - used index", True),
    Column("avail", "Avail", 5, "the ring's avail index (guest side), when known", True),
    Column("used", "Used", 5, "the ring's used index (device side), when known", True),
    Column("kick_age", "Kicked", 6, "time since the last kick (how long ago)", True),
    Column("call_age", "Called", 6, "time since the last call (how long ago)", True),
    Column("stuck", "Stuck", 60, "STUCK and the reason, from the stuck rules of config.yaml"),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)

Plain = tuple[str, ...]


class LabelCell(Text):
    """The queue-name cell; it carries its row key so a sort can find it."""

    row_key: str = ""

    @classmethod
    def make(cls, plain: str, row_key: str, stuck: bool) -> LabelCell:
        cell = cls(plain, style="bold red reverse" if stuck else "")
        cell.row_key = row_key
        return cell


def queue_label(row: QueueRow) -> str:
    mark = "!" if row.stuck else ""
    return f"{mark}{row.vm_name}/{row.device_name} #{row.view.index}"


def plain_cells(row: QueueRow) -> Plain:
    """Every cell of a row as plain text; styles follow from the text."""
    q = row.view
    counted = q.kicks is not None
    return (
        queue_label(row),
        q.mask.value if q.mask else fmt.UNKNOWN,
        fmt.count(q.kicks),
        fmt.count(q.calls),
        fmt.rate(row.kick_rate, counted),
        fmt.rate(row.call_rate, q.calls is not None),
        fmt.sparkline(row.history, SPARK_WIDTH) if counted else fmt.UNKNOWN,
        "on" if q.shadow else "off",
        fmt.index(q.in_flight),
        fmt.index(q.avail_idx),
        fmt.index(q.used_idx),
        fmt.age(row.last_kick_age_s),
        fmt.age(row.last_call_age_s),
        row.stuck or "",
    )


def render_cell(column: int, plain: str, row_key: str) -> str | Text:
    """The cell object for a column's plain text (style chosen from the text)."""
    spec = COLUMNS[column]
    if spec.key == "queue":
        return LabelCell.make(plain, row_key, plain.startswith("!"))
    if spec.key == "mask":
        if plain == fmt.UNKNOWN:
            return plain

        return fmt.mask_text(MaskState(plain))
    if spec.key == "shadow":
        return fmt.shadow_text(plain == "on")
    if spec.key == "stuck":
        return fmt.stuck_text(plain or None)
    if spec.key == "rate":
        return Text(plain, style="cyan")
    if spec.numeric:
        return fmt.right(plain)
    return plain


class QueueTable(DataTable[str | Text]):
    """The queues of the selected scope, filtered and sorted, updated in place."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("left", "left_or_tree", "Left", show=False)]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self._plain: dict[str, Plain] = {}  # what each shown row's cells say
        self._latest: dict[str, QueueRow] = {}  # newest data of each shown row
        self._written: dict[str, QueueRow] = {}  # the data its cells were written from
        self._order: list[str] = []
        self.cells_written = 0  # for tests and the benchmark

    def on_mount(self) -> None:
        for c in COLUMNS:
            label = Text(c.label, justify="right") if c.numeric else c.label
            self.add_column(label, width=c.width, key=c.key)

    # -- what is selected ----------------------------------------------------

    @property
    def cursor_key(self) -> str | None:
        """The row key under the cursor, or None when the table is empty."""
        if not self.row_count:
            return None
        row = min(self.cursor_row, self.row_count - 1)
        return self.coordinate_to_cell_key(Coordinate(row, 0)).row_key.value

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def plain_row(self, key: str) -> Plain | None:
        """The text a row's cells show now (None if the row is not shown)."""
        self._write_window()
        return self._plain.get(key)

    def move_to(self, key: str) -> None:
        if key in self._plain:
            self.move_cursor(row=self.get_row_index(key), scroll=True)

    # -- updates ---------------------------------------------------------------

    def show(self, snap: Snapshot, scope: Scope, text: str, sort: SortMode) -> None:
        """Show the rows of ``snap`` in ``scope`` matching ``text``, sorted."""
        vm_of = device_vms(snap) if scope.kind.value == "vm" else {}
        rows = [r for r in snap.rows.values() if in_scope(r, scope, vm_of) and matches(r, text)]
        self._latest = {r.key: r for r in rows}
        order = ordered(rows, sort)
        cursor = self.cursor_key
        gone = [k for k in self._plain if k not in self._latest]
        if len(gone) > BULK_REMOVE:
            self._rebuild(order)
        else:
            for key in gone:
                self.remove_row(key)
                self._forget(key)
            for key in order:
                if key not in self._plain:
                    self._add(key)
            if order != self._order:
                rank = {k: i for i, k in enumerate(order)}
                self.sort("queue", key=lambda cell: rank[cell.row_key])
        self._order = order
        if cursor is not None and cursor in self._latest:
            index = self.get_row_index(cursor)
            if index != self.cursor_row:
                self.move_cursor(row=index, animate=False)
        self._write_window()

    def _forget(self, key: str) -> None:
        self._plain.pop(key, None)
        self._written.pop(key, None)

    def _add(self, key: str) -> None:
        row = self._latest[key]
        plain = plain_cells(row)
        self.add_row(*(render_cell(i, p, key) for i, p in enumerate(plain)), key=key)
        self._plain[key] = plain
        self._written[key] = row
        self.cells_written += len(plain)

    def _rebuild(self, order: list[str]) -> None:
        """Clear and re-add: cheaper than removing many rows one by one."""
        self.clear()
        self._plain.clear()
        self._written.clear()
        for key in order:
            self._add(key)

    def _window(self) -> range:
        top = round(self.scroll_y)
        height = self.size.height or 50
        return range(max(0, top - VIEW_MARGIN), min(len(self._order), top + height + VIEW_MARGIN))

    def _write_window(self) -> None:
        """Bring the cells of the rows in and near the viewport up to date."""
        for i in self._window():
            key = self._order[i]
            row = self._latest.get(key)
            if row is None or self._written.get(key) is row:
                continue
            self._written[key] = row
            new = plain_cells(row)
            old = self._plain[key]
            for col, (a, b) in enumerate(zip(old, new, strict=True)):
                if a != b:
                    self.update_cell(key, COLUMN_KEYS[col], render_cell(col, b, key))
                    self.cells_written += 1
            self._plain[key] = new

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        self._write_window()

    def action_left_or_tree(self) -> None:
        """Left scrolls the table; at its left edge it goes back to the tree."""
        if self.scroll_x > 0:
            self.action_cursor_left()
        else:
            self.screen.focus_previous()
