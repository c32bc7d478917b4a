"""The log pane: what happened (sources, actions, errors), one line each,
read from the shared EventLog by sequence number so nothing is shown twice."""

from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import RichLog

from svqtui.eventlog import EventLog
from svqtui.model import HOST_SEP, LogEvent

LEVEL_STYLES = {"error": "bold red", "warning": "yellow", "info": ""}
LEVEL_WORDS = {"error": "ERROR ", "warning": "warn  ", "info": ""}


def event_line(event: LogEvent) -> Text:
    """ "HH:MM:SS [ERROR ][device: ]text", naming the device when the text does not."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time_s))
    line = Text(f"{stamp} ", style="dim")
    style = LEVEL_STYLES.get(event.level, "")
    word = LEVEL_WORDS.get(event.level, f"{event.level} ")
    if word:
        line.append(word, style=style)
    if event.device_key:
        # "demo:db01/blk0" -> "db01/blk0"; "HOST|demo:db01/blk0" -> the same
        # (the text of a host's event starts with its host already)
        where = event.device_key.rsplit(HOST_SEP, 1)[-1].split(":", 1)[-1]
        if where not in event.text:
            line.append(f"{where}: ", style=f"{style} bold".strip())
    line.append(event.text, style=style)
    return line


class LogPane(RichLog):
    """The newest events of the EventLog, oldest at the top."""

    def __init__(self, log: EventLog, *, id: str | None = None) -> None:
        super().__init__(id=id, max_lines=500, wrap=False, markup=False, auto_scroll=True)
        self.event_log = log
        self._seq = 0
        self.lines_written: list[str] = []  # plain text of every line (tests)
        self.border_title = "log"

    def restart(self) -> None:
        """Forget every line: the log is read again from its start (a replay
        that jumped to another moment, svqtui.recording.replay.ReplayLog)."""
        self.clear()
        self.lines_written.clear()
        self._seq = 0

    def pull(self) -> int:
        """Append events added since the last pull; return how many."""
        self._seq, events = self.event_log.since(self._seq)
        for event in events:
            line = event_line(event)
            self.write(line)
            self.lines_written.append(line.plain)
            if len(self.lines_written) > 500:
                del self.lines_written[:100]
        return len(events)
