"""The detail screen of one queue (Enter on a row): the diagnosis first, rate
history, counters, ring indices and where they come from, the ring's
suppression state and the oldest request decoded (and how in-flight is
derived), the fds and their identities, the device's notes and shadow note,
the VM's migration, and recent events."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.events import Resize
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Static

from svqtui.console import format as fmt
from svqtui.console.keys import fit_footer
from svqtui.model import DeviceView, LogEvent, QueueRow, Snapshot, VMView
from svqtui.virtio.split_ring import PACKED_NOT_DECODED
from svqtui.widgets.device_header import device_text, migration_text

EVENTS_SHOWN = 20
PLOT_ROWS = 4
EIGHTHS = " ▁▂▃▄▅▆▇█"


def rate_plot(history: Sequence[float], width: int, rows: int = PLOT_ROWS) -> Text:
    """The newest ``width`` samples as a ``rows``-high bar plot scaled from
    zero to the peak (so a steady rate looks steady), newest on the right."""
    samples = list(history)[-width:]
    peak = max(samples, default=0.0)
    lines = []
    for row in range(rows - 1, -1, -1):
        chars = []
        for v in samples:
            eighths = round(v / peak * rows * 8) if peak > 0 else 0
            chars.append(EIGHTHS[max(0, min(8, eighths - row * 8))])
        lines.append("".join(chars).rjust(width))
    return Text("\n".join(lines), style="cyan")


class RatePlot(Widget):
    """A bar plot of a queue's kicks+calls per second, one column per refresh."""

    DEFAULT_CSS = "RatePlot { height: 4; }"

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.history: Sequence[float] = ()

    def show(self, history: Sequence[float]) -> None:
        if history != self.history:
            self.history = history
            self.refresh()

    def render(self) -> Text:
        return rate_plot(self.history, max(1, self.size.width))


def _find(snap: Snapshot, device_key: str) -> tuple[VMView | None, DeviceView | None]:
    for vm in snap.vms:
        for dev in vm.devices:
            if dev.key == device_key:
                return vm, dev
    return None, None


def title_text(row: QueueRow, vm: VMView | None, dev: DeviceView) -> Text:
    out = device_text(vm, dev)
    out = Text.assemble((f"queue {row.view.index} of ", "bold"), out)
    if dev.shadow_note:
        out.append(f"\nshadow mode: {dev.shadow_note}", style="italic")
    if vm is not None and vm.migration is not None:
        out.append(f"\n{migration_text(vm)}", style="yellow")
    return out


def figures_table(row: QueueRow, hold: bool = False) -> Table:
    q = row.view
    table = Table.grid(padding=(0, 2))
    for _ in range(4):
        table.add_column(no_wrap=True)
    counted = q.kicks is not None
    table.add_row(
        "kicks",
        fmt.count(q.kicks),
        "kicks/s",
        fmt.rate(row.kick_rate, counted),
    )
    table.add_row(
        "calls", fmt.count(q.calls), "calls/s", fmt.rate(row.call_rate, q.calls is not None)
    )
    mask = fmt.mask_text(q.mask)
    if hold:
        mask.append(" (your hold: m releases)", style="bold")
    table.add_row("mask", mask, "held while masked", str(q.held))
    table.add_row(
        "shadow",
        fmt.shadow_text(q.shadow),
        "injected kicks/calls",
        f"{q.injected_kicks}/{q.injected_calls}",
    )
    table.add_row(
        "last kick",
        _ago(row.last_kick_age_s),
        "last call",
        _ago(row.last_call_age_s),
    )
    source = f" (from {q.ring_source})" if q.ring_source else " (no ring source)"
    table.add_row(
        "avail/used",
        f"{fmt.index(q.avail_idx)}/{fmt.index(q.used_idx)}{source}",
        "in flight",
        fmt.index(q.in_flight),
    )
    return table


def diagnosis_text(row: QueueRow) -> Text:
    """The first line of the detail: why the queue is stuck, in numbers."""
    if row.diagnosis:
        out = Text("why: ", style="bold")
        out.append(row.diagnosis, style="bold red" if row.stuck else "bold yellow")
        return out
    if row.stuck:
        return Text.assemble(("why: ", "bold"), ("no rule names a cause", "dim"))
    return Text("why: nothing owed or stalled", style="dim")


def _flags(value: int | None, bit_name: str) -> str:
    if value is None:
        return "?"
    return f"{value:#x}" + (f" ({bit_name})" if value & 1 else "")


def _u16(value: int | None) -> str:
    return "?" if value is None else str(value)


def ring_lines(row: QueueRow) -> list[str]:
    """The ring's suppression state, the oldest request decoded, and how
    in-flight is derived (plain lines: the detail and the copied state)."""
    q = row.view
    ring = q.ring
    if ring is None:
        note = q.in_flight_note or "this source does not read the ring itself"
        return [f"ring      not read: {note}"]
    features = [
        name
        for on, name in (
            (ring.event_idx, "EVENT_IDX"),
            (ring.indirect_desc, "INDIRECT_DESC"),
            (ring.packed, "packed"),
        )
        if on
    ]
    size = ring.size or "unknown"
    if ring.packed:
        return [
            f"ring      packed, size {size}; features {', '.join(features)}",
            f"          {PACKED_NOT_DECODED}: no suppression state, in-flight count "
            "or oldest request",
        ]
    lines = [f"ring      split, size {size}; features {', '.join(features) or 'none'}"]
    if ring.error:
        lines.append(f"          {ring.error}")
    event_u = f"  used_event {_u16(ring.used_event)}" if ring.event_idx else ""
    event_a = f"  avail_event {_u16(ring.avail_event)}" if ring.event_idx else ""
    lines.append(
        f"avail     idx {_u16(ring.avail_idx)}  flags {_flags(ring.avail_flags, 'NO_INTERRUPT')}"
        + event_u
        + ("  (guest: call me once used passes it)" if ring.event_idx else "")
    )
    lines.append(
        f"used      idx {_u16(ring.used_idx)}  flags {_flags(ring.used_flags, 'NO_NOTIFY')}"
        + event_a
        + ("  (device: kick me once avail passes it)" if ring.event_idx else "")
    )
    if q.oldest_head is not None:
        what = q.oldest.describe() if q.oldest is not None else "not decoded"
        age = f", {fmt.age(row.oldest_age_s)} old" if row.oldest_age_s is not None else ""
        lines.append(
            f"oldest    head {q.oldest_head} at avail position {_u16(q.oldest_position)}: "
            f"{what}{age}"
        )
    else:
        lines.append("oldest    none in flight")
    note = q.in_flight_note or (
        "avail ring positions used.idx..avail.idx-1 (exact: VIRTIO_F_IN_ORDER negotiated)"
    )
    lines.append(f"in flight {note}")
    return lines


def ring_text(row: QueueRow) -> Text:
    out = Text()
    for i, line in enumerate(ring_lines(row)):
        if i:
            out.append("\n")
        out.append(line[:10], style="bold")
        out.append(line[10:])
    return out


def fds_text(row: QueueRow) -> Text:
    q = row.view
    out = Text()
    out.append("kick fd  ", style="bold")
    out.append(q.kick_fd or "unknown to this source")
    out.append("\ncall fd  ", style="bold")
    out.append(q.call_fd or "unknown to this source")
    if row.stuck:
        out.append("\n")
        out.append_text(fmt.stuck_text(row.stuck))
    if q.fault or q.dropped or q.duplicated or q.delayed:
        out.append("\nfault: ", style="bold reverse magenta")
        out.append(q.fault or "none armed now")
        out.append(f" (dropped {q.dropped}, duplicated {q.duplicated}, delayed {q.delayed})")
    if q.error:
        out.append("\nerror: ", style="bold red")
        out.append(q.error)
    return out


def history_caption(history: Sequence[float]) -> str:
    if not history:
        return "rate history: none yet (one sample per refresh)"
    avg = sum(history) / len(history)
    return (
        f"kicks+calls/s over the last {len(history)} refreshes: "
        f"min {fmt.rate(min(history))}, avg {fmt.rate(avg)}, max {fmt.rate(max(history))}, "
        f"now {fmt.rate(history[-1])}"
    )


def events_text(events: list[LogEvent], queue: int) -> Text:
    mine = [e for e in events if e.queue_index in (None, queue)][-EVENTS_SHOWN:]
    if not mine:
        return Text("no events for this queue or its device yet", style="dim")
    out = Text()
    for i, e in enumerate(mine):
        if i:
            out.append("\n")
        out.append(time.strftime("%H:%M:%S ", time.localtime(e.time_s)), style="dim")
        style = "bold red" if e.level == "error" else ("yellow" if e.level == "warning" else "")
        where = "" if e.queue_index is None else f"[q{e.queue_index}] "
        out.append(where + e.text, style=style)
    return out


class QueueDetail(Screen[None]):
    """Everything svqtui knows about one queue, live."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(
        self,
        device_key: str,
        index: int,
        snap: Snapshot | None = None,
        events: list[LogEvent] | None = None,
        hold: bool = False,
    ) -> None:
        super().__init__()
        self.device_key = device_key
        self.index = index
        self._initial = (snap, events or [], hold)
        self._shown: dict[str, str] = {}
        self._plain: dict[str, str] = {}

    def on_resize(self, event: Resize) -> None:
        fit_footer(self.query_one(Footer), event.size.width)

    def on_mount(self) -> None:
        fit_footer(self.query_one(Footer), self.app.size.width)
        snap, events, hold = self._initial
        if snap is not None:
            self.show(snap, events, hold)

    @property
    def row_key(self) -> str:
        return f"{self.device_key}#{self.index}"

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="detail-body"):
            yield Static(id="detail-diagnosis")
            yield Static(id="detail-title")
            yield Static(id="detail-figures")
            yield Static(id="detail-ring")
            yield Static(id="detail-history-caption")
            yield RatePlot(id="detail-history")
            yield Static(id="detail-fds")
            events = Static(id="detail-events")
            events.border_title = "recent events (device and queue)"
            yield events
        yield Footer()

    def _set(self, widget_id: str, content: Text | Table) -> None:
        if isinstance(content, Text):
            key, plain = content.markup, content.plain
        else:
            cells = _table_plain(content)
            key, plain = repr(cells), " ".join(cells)
        if self._shown.get(widget_id) != key:
            self._shown[widget_id] = key
            self._plain[widget_id] = plain
            self.query_one(f"#{widget_id}", Static).update(content)

    def text(self, widget_id: str) -> str:
        """The plain text a part of the screen shows (for tests)."""
        return self._plain.get(widget_id, "")

    def show(self, snap: Snapshot, events: list[LogEvent], hold: bool = False) -> None:
        row = snap.rows.get(self.row_key)
        vm, dev = _find(snap, self.device_key)
        if row is None or dev is None:
            self._set(
                "detail-title", Text(f"{self.row_key} is gone (Esc goes back)", style="bold red")
            )
            return
        self._set("detail-diagnosis", diagnosis_text(row))
        self._set("detail-title", title_text(row, vm, dev))
        self._set("detail-figures", figures_table(row, hold))
        self._set("detail-ring", ring_text(row))
        self._set("detail-history-caption", Text(history_caption(row.history)))
        self.query_one(RatePlot).show(row.history)
        self._set("detail-fds", fds_text(row))
        self._set("detail-events", events_text(events, self.index))


def _table_plain(table: Table) -> list[str]:
    columns = [list(column.cells) for column in table.columns]
    cells: list[str] = []
    for row in zip(*columns, strict=True):
        cells.extend(c.plain if isinstance(c, Text) else str(c) for c in row)
    return cells


def _ago(seconds: float | None) -> str:
    """ "0.3s ago", or "never" when nothing was seen (or cannot be counted)."""
    return "never" if seconds is None else f"{fmt.age(seconds)} ago"
