"""The status bar: engine thread, relays/s, sources, refresh delay, pause,
sort and filter, in one line that is rewritten only when its text changes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from svqtui.console import format as fmt
from svqtui.console.selection import SortMode
from svqtui.model import Snapshot

FAULT_STYLE = "bold reverse magenta"  # an operator-armed fault: loud everywhere


@dataclass(frozen=True, slots=True)
class ViewState:
    """The console's own settings the status bar reports."""

    interval_s: float
    paused: bool = False
    sort: SortMode = SortMode.NAME
    filter_text: str = ""
    timeline: str = ""  # a replay's position (svqtui.recording.replay), else empty


def delay_text(seconds: float) -> str:
    return f"{seconds:g}s"


def status_text(snap: Snapshot | None, view: ViewState) -> Text:
    out = Text()
    if view.timeline:
        out.append(view.timeline, style="bold magenta")
        out.append(" │ ")
    if snap is None:
        out.append("waiting for the first snapshot…", style="dim")
    else:
        eng = snap.engine
        if eng.alive:
            out.append("engine alive", style="bold green")
        else:
            out.append("ENGINE DOWN", style="bold reverse red")
        out.append(f" {fmt.rate(eng.relays_per_s)} relays/s")
        if eng.backlog:
            out.append(f" backlog {eng.backlog}", style="yellow")
        if eng.polling is not None:  # spin share of a core, or "off"
            out.append(" poll " + ("off" if eng.polling == "off" else f"{eng.spin_share:.0%}"))
        up = sum(1 for s in snap.sources if s.connected)
        out.append(" │ sources ")
        style = "green" if up == len(snap.sources) else "bold red"
        out.append(f"{up}/{len(snap.sources)}", style=style)
        down = [s.name for s in snap.sources if not s.connected]
        if down:
            out.append(f" (down: {', '.join(down)})", style="red")
        faults = sum(1 for r in snap.rows.values() if r.view.fault)
        if faults:
            out.append(" │ ")
            out.append(f"FAULT on {faults} queue{'s' if faults > 1 else ''}", style=FAULT_STYLE)
    if not view.timeline:
        out.append(f" │ every {delay_text(view.interval_s)}")
    if view.paused:
        out.append(" │ ")
        out.append("PAUSED", style="bold reverse yellow")
    out.append(f" │ sort {view.sort.value}")
    if view.filter_text:
        out.append(" │ filter ")
        out.append(view.filter_text, style="bold")
    return out


class StatusBar(Widget):
    """One line of console status; a change repaints it without a layout pass."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._text = Text()

    def show(self, snap: Snapshot | None, view: ViewState) -> None:
        text = status_text(snap, view)
        if text != self._text or text.spans != self._text.spans:
            self._text = text
            self.refresh()

    def render(self) -> Text:
        return self._text

    @property
    def text(self) -> str:
        """The plain text shown (for tests)."""
        return self._text.plain
