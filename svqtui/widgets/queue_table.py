"""The queue table: one row per virtqueue of the selected scope.

A line-API widget (no per-cell Rich rendering): rows are keyed by
``QueueRow.key``; each refresh keeps the newest data of every row, formats
only the rows in the viewport, and repaints only the lines whose text
changed. Each painted row is a cached Strip of plain segments, redrawn when
its text, cursor or stripe changes. Rows out of view are formatted when
they scroll in, so 1,024 queues at 10 Hz cost about what one screenful does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from svqtui.console import format as fmt
from svqtui.console.selection import (
    Scope,
    SortMode,
    device_vms,
    everything,
    in_scope,
    matches,
    ordered_keys,
)
from svqtui.model import QueueRow, Snapshot

SPARK_WIDTH = 10
CELL_PAD = 1  # blank cells either side of a column
H_SCROLL = 4  # columns per Left/Right press


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
    Column(
        "suppression",
        "Ev",
        5,
        "ring notification suppression: E (EVENT_IDX), NI (guest's NO_INTERRUPT), "
        "NN (device's NO_NOTIFY), · none, - not read",
    ),
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
    Column(
        "stuck",
        "Stuck",
        60,
        "STUCK and why: the diagnosis in numbers (owed call or kick, suppression, mask, "
        "back-end not reading), else the stuck rule's reason; FAULT and what an "
        "operator-armed fault does",
    ),
)
COLUMN_KEYS = tuple(c.key for c in COLUMNS)

Plain = tuple[str, ...]


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
        fmt.suppression(q.ring),
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
        (
            f"{FAULT_WORD} {q.fault}"  # an armed fault, loud unless the queue is stuck
            if q.fault and not row.stuck
            else fmt.why_text(row.stuck, row.diagnosis)
        ),
    )


TOTAL_WIDTH = sum(c.width + 2 * CELL_PAD for c in COLUMNS)
MASK_STYLES = {k.value: Style.parse(v) for k, v in fmt.MASK_STYLES.items()}
STUCK_WORD = Style.parse("bold reverse red")
STUCK_NAME = Style.parse("bold red")
FAULT_WORD = "FAULT"  # an armed fault shows in the Stuck column while the queue is not stuck
FAULT = Style.parse("bold reverse magenta")
SHADOW_ON = Style.parse("bold cyan")
DIM = Style.parse("dim")
SPARK = Style.parse("cyan")
REVERSE = Style(reverse=True)


def cells(text: str) -> int:
    """``text``'s width in terminal cells (most cells are printable ASCII)."""
    return len(text) if text.isascii() and text.isprintable() else cell_len(text)


def fit(text: str, width: int) -> str:
    """Cut ``text`` to ``width`` cells, with an ellipsis when it was longer."""
    return set_cell_size(text, width - 1) + "…" if cells(text) > width else text


def cell_segments(column: Column, text: str, base: Style) -> list[Segment]:
    """One padded cell: its text cut or padded to the column width, styled
    by what it says (MASKED, STUCK, on...), over the row's base style."""
    edge = Segment(" " * CELL_PAD, base)
    key = column.key
    if key == "stuck" and text.startswith(FAULT_WORD + " "):
        shown = fit(text, column.width)
        rest = shown[len(FAULT_WORD) :] + " " * (column.width - cells(shown))
        word = Segment(shown[: len(FAULT_WORD)], base + FAULT)
        return [edge, word, Segment(rest, base), edge]
    if key == "stuck" and text and not text.startswith("why: "):
        shown = fit(f"STUCK {text}", column.width)
        rest = shown[5:] + " " * (column.width - cells(shown))
        return [edge, Segment(shown[:5], base + STUCK_WORD), Segment(rest, base), edge]
    text = fit(text, column.width)
    pad = " " * (column.width - cells(text))
    style = base
    if key == "mask" and text in MASK_STYLES:
        style = base + MASK_STYLES[text]
    elif key == "shadow":
        style = base + (SHADOW_ON if text == "on" else DIM)
    elif key == "rate":
        style = base + SPARK
    elif key == "queue" and text.startswith("!"):
        style = base + STUCK_NAME
    body = pad + text if column.numeric else text + pad
    return [edge, Segment(body, style), edge]


def row_strip(plain: Plain, base: Style) -> Strip:
    """One painted row. Neighbouring cells in the row's base style are one
    segment (most cells: ~15 segments instead of 45), as Textual's filters,
    crops and terminal writes cost per segment."""
    segments: list[Segment] = []
    for column, text in zip(COLUMNS, plain, strict=True):
        for segment in cell_segments(column, text, base):
            if segments and segments[-1].style is segment.style:  # mostly ``base``
                segments[-1] = Segment(segments[-1].text + segment.text, segment.style)
            else:
                segments.append(segment)
    return Strip(segments, TOTAL_WIDTH)


def header_strip(base: Style) -> Strip:
    segments: list[Segment] = []
    for column in COLUMNS:
        label = column.label
        pad = " " * (column.width - cell_len(label))
        body = pad + label if column.numeric else label + pad
        segments += [
            Segment(" " * CELL_PAD, base),
            Segment(body, base),
            Segment(" " * CELL_PAD, base),
        ]
    return Strip(segments, TOTAL_WIDTH)


class QueueTable(ScrollView, can_focus=True):
    """The queues of the selected scope, filtered and sorted, updated in place."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "queue-table--header",
        "queue-table--cursor",
        "queue-table--even",
        "queue-table--stuck",
    }
    DEFAULT_CSS = """
    QueueTable {
        background: $surface;
        color: $foreground;
        & > .queue-table--header { text-style: bold; background: $panel; }
        & > .queue-table--even { background: $surface-lighten-1 50%; }
        & > .queue-table--stuck { background: $error 25%; }
        & > .queue-table--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus > .queue-table--cursor {
            background: $block-cursor-background;
            color: $block-cursor-foreground;
            text-style: $block-cursor-text-style;
        }
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
        Binding("enter", "select", "Detail", show=False),
        Binding("left", "left_or_tree", "Left", show=False),
        Binding("right", "scroll_columns(1)", "Right", show=False),
    ]

    class RowHighlighted(Message):
        """The cursor moved to another queue."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    class RowSelected(Message):
        """Enter (or a click on the cursor row): open this queue's detail."""

        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._latest: Mapping[str, QueueRow] = {}  # newest data of each shown row
        self._written: dict[str, QueueRow] = {}  # the data its text was made from
        self._plain: dict[str, Plain] = {}  # what each row's cells say
        self._strips: dict[str, tuple[Plain, tuple[object, ...], Strip]] = {}
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self.cursor_row = 0
        self.cells_written = 0  # cells whose text changed and was formatted
        self._style_memo: tuple[str, Style] | None = None  # (theme, own rich style)
        self.virtual_size = Size(TOTAL_WIDTH, 1)

    # -- what is selected ----------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_key(self) -> str | None:
        """The row key under the cursor, or None when the table is empty."""
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    @property
    def shown_keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def plain_row(self, key: str) -> Plain | None:
        """The text a row's cells show (None if the row is not shown)."""
        return self._plain.get(key) if key in self._index else None

    def move_to(self, key: str) -> None:
        if key in self._index:
            self._set_cursor(self._index[key])

    # -- updates ---------------------------------------------------------------

    def show(self, snap: Snapshot, scope: Scope, text: str, sort: SortMode) -> None:
        """Show the rows of ``snap`` in ``scope`` matching ``text``, sorted."""
        self._style_memo = None  # styles follow the app within one refresh
        if everything(scope, text):
            self._latest = snap.rows  # a snapshot is never changed: no copy
        else:
            vm_of = device_vms(snap) if scope.kind.value == "vm" else {}
            self._latest = {
                k: r for k, r in snap.rows.items() if in_scope(r, scope, vm_of) and matches(r, text)
            }
        order = ordered_keys(self._latest, sort)
        if order != self._order:
            cursor = self.cursor_key
            self._order = order
            self._index = {k: i for i, k in enumerate(order)}
            for gone in [k for k in self._plain if k not in self._index]:
                self._forget(gone)
            self.virtual_size = Size(TOTAL_WIDTH, len(order) + 1)
            row = self._index.get(cursor, self.cursor_row) if cursor else 0
            self.cursor_row = max(0, min(row, len(order) - 1))
            self._update_visible()
            self.refresh()
            if cursor != self.cursor_key and self.cursor_key is not None:
                self.post_message(self.RowHighlighted(self.cursor_key))
            self._scroll_to_cursor()
        else:
            for index in self._update_visible():
                self.refresh_line(index + 1)

    def _forget(self, key: str) -> None:
        self._plain.pop(key, None)
        self._written.pop(key, None)
        self._strips.pop(key, None)

    def _visible(self) -> range:
        top = round(self.scroll_y)
        page = max(1, self.scrollable_content_region.height - 1 or 50)
        return range(top, min(len(self._order), top + page))

    def _update_visible(self) -> list[int]:
        """Bring the visible rows' text up to date; the indices that changed."""
        return [i for i in self._visible() if self._refresh_plain(self._order[i])]

    def _refresh_plain(self, key: str) -> bool:
        row = self._latest.get(key)
        if row is None or self._written.get(key) is row:
            return False
        self._written[key] = row
        new = plain_cells(row)
        old = self._plain.get(key)
        if new == old:
            return False
        self._plain[key] = new
        self.cells_written += (
            len(new) if old is None else sum(a != b for a, b in zip(old, new, strict=True))
        )
        return True

    # -- painting --------------------------------------------------------------------

    def _base(self, index: int, key: str) -> tuple[tuple[object, ...], Style]:
        stuck = bool(self._latest[key].stuck) if key in self._latest else False
        kind: tuple[object, ...]
        names: tuple[str, ...]
        if index == self.cursor_row:
            kind, names = ("cursor", self.has_focus), ("queue-table--cursor",)
        elif stuck:
            kind, names = ("stuck",), ("queue-table--stuck",)
        elif index % 2:
            kind, names = ("odd",), ()
        else:
            kind, names = ("even",), ("queue-table--even",)
        style = self.get_component_rich_style(*names) if names else self._own_style()
        if kind[0] == "cursor" and self.app.no_color:
            style += REVERSE  # NO_COLOR strips backgrounds: keep the cursor visible
        return (*kind, self.app.theme), style

    def _own_style(self) -> Style:
        """``self.rich_style``, kept until the next ``show()``, theme or style
        update: it walks every ancestor's styles, and each painted line needs it."""
        theme = self.app.theme
        if self._style_memo is None or self._style_memo[0] != theme:
            self._style_memo = (theme, self.rich_style)
        return self._style_memo[1]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_memo = None

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        own = self._own_style()
        if y == 0:
            strip = header_strip(self.get_component_rich_style("queue-table--header"))
        else:
            index = scroll_y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, own)
            key = self._order[index]
            self._refresh_plain(key)
            plain = self._plain[key]
            kind, style = self._base(index, key)
            cached = self._strips.get(key)
            if cached is not None and cached[0] == plain and cached[1] == kind:
                strip = cached[2]
            else:
                strip = row_strip(plain, style)
                self._strips[key] = (plain, kind, strip)
        return strip.crop_extend(scroll_x, scroll_x + width, own)

    def _on_focus(self, event: events.Focus) -> None:
        self.refresh()

    def _on_blur(self, event: events.Blur) -> None:
        self.refresh()

    # -- the cursor ------------------------------------------------------------------

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _set_cursor(self, row: int) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        old, self.cursor_row = self.cursor_row, row
        if old != row:
            self.refresh_line(old + 1)
            self.refresh_line(row + 1)
            self.post_message(self.RowHighlighted(self._order[row]))
        self._scroll_to_cursor()

    def _scroll_to_cursor(self) -> None:
        top, page = round(self.scroll_y), self._page()
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + page:
            self.scroll_to(y=self.cursor_row - page + 1, animate=False)

    def action_cursor_up(self) -> None:
        self._set_cursor(self.cursor_row - 1)

    def action_cursor_down(self) -> None:
        self._set_cursor(self.cursor_row + 1)

    def action_page_up(self) -> None:
        self._set_cursor(self.cursor_row - self._page())

    def action_page_down(self) -> None:
        self._set_cursor(self.cursor_row + self._page())

    def action_first(self) -> None:
        self._set_cursor(0)

    def action_last(self) -> None:
        self._set_cursor(len(self._order) - 1)

    def action_select(self) -> None:
        if self.cursor_key is not None:
            self.post_message(self.RowSelected(self.cursor_key))

    def action_scroll_columns(self, direction: int) -> None:
        self.scroll_to(x=self.scroll_x + direction * H_SCROLL, animate=False)

    def action_left_or_tree(self) -> None:
        """Left scrolls the table; at its left edge it goes back to the tree."""
        if self.scroll_x > 0:
            self.action_scroll_columns(-1)
        else:
            self.screen.focus_previous()

    def on_click(self, event: events.Click) -> None:
        if event.y < 1:
            return
        row = round(self.scroll_y) + event.y - 1
        if row >= len(self._order):
            return
        if row == self.cursor_row:
            self.action_select()
        else:
            self._set_cursor(row)
