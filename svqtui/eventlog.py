"""The event log: what happened, one line each, shared by every thread.

Sources and actions append; the console's log pane, the detail view and
``--headless`` (stderr) read. Bounded, so a noisy device cannot eat memory.

Every line is made safe on the way in (``svqtui.text_safety.safe_text``: no
control characters or escape sequences, bounded length), whoever wrote it:
much of what is logged quotes peers. A line given a ``kind`` is rate-limited
per kind (``svqtui.log_rate``): a flood becomes a few lines and one "... and
N more KIND in 10 s" when its window ends (at the next line, or ``flush()``,
which the monitor calls on every refresh).
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable

from svqtui.log_rate import RateLimiter
from svqtui.model import LogEvent
from svqtui.text_safety import safe_text

Listener = Callable[[LogEvent], None]


class EventLog:
    """A thread-safe ring of LogEvents with sequence numbers for readers."""

    def __init__(self, maxlen: int = 2000, limiter: RateLimiter | None = None) -> None:
        self._lock = threading.Lock()
        self._limiter = limiter or RateLimiter()
        self._events: collections.deque[tuple[int, LogEvent]] = collections.deque(maxlen=maxlen)
        self._seq = 0
        self._numbering = True  # False: handed over, lines reach the listeners only
        self._listeners: list[Listener] = []

    def add(
        self,
        level: str,
        text: str,
        device_key: str | None = None,
        queue_index: int | None = None,
        *,
        kind: str | None = None,
    ) -> LogEvent | None:
        """Append a line (made safe). With ``kind``: only if that kind is
        within its rate (returns None when the line was counted instead)."""
        self.flush()
        if kind is not None:
            with self._lock:
                allowed = self._limiter.allow(kind)
            if not allowed:
                return None
        event = LogEvent(time.time(), level, text, device_key, queue_index)
        self.replay(event)
        return event

    def flush(self) -> None:
        """Write the "... and N more" line of every rate window that ended."""
        with self._lock:
            ended = self._limiter.summaries()
        for gone in ended:
            self.replay(LogEvent(time.time(), "warning", gone.line(), None, None))

    def replay(self, event: LogEvent) -> None:
        """Append an event (also one that happened in an attached headless
        svqtui, keeping its time), its text made safe."""
        safe = safe_text(event.text)
        if safe != event.text:
            event = dataclasses.replace(event, text=safe)
        with self._lock:
            if self._numbering:
                self._seq += 1
                self._events.append((self._seq, event))
            listeners = list(self._listeners)
        for listener in listeners:
            listener(event)

    def info(
        self,
        text: str,
        device_key: str | None = None,
        queue_index: int | None = None,
        *,
        kind: str | None = None,
    ) -> None:
        self.add("info", text, device_key, queue_index, kind=kind)

    def warning(
        self,
        text: str,
        device_key: str | None = None,
        queue_index: int | None = None,
        *,
        kind: str | None = None,
    ) -> None:
        self.add("warning", text, device_key, queue_index, kind=kind)

    def error(
        self,
        text: str,
        device_key: str | None = None,
        queue_index: int | None = None,
        *,
        kind: str | None = None,
    ) -> None:
        self.add("error", text, device_key, queue_index, kind=kind)

    def since(self, seq: int) -> tuple[int, list[LogEvent]]:
        """Events after sequence number ``seq``, and the newest sequence number."""
        with self._lock:
            return self._seq, [e for s, e in self._events if s > seq]

    def recent(self, limit: int) -> tuple[int, list[LogEvent]]:
        """The newest sequence number and the last ``limit`` events."""
        with self._lock:
            return self._seq, [e for _, e in list(self._events)[-limit:]]

    # -- a takeover (docs/design.md#takeover): the numbering goes on in the new svqtui

    def hand_over(self, after: int) -> tuple[int, list[LogEvent]]:
        """Stop numbering (the old svqtui at "released": later lines reach
        the listeners, stderr, only, so no reader of this log sees a number
        the new svqtui gives out); the last number and the events after ``after``."""
        with self._lock:
            self._numbering = False
            return self._seq, [e for s, e in self._events if s > after]

    def take_back(self) -> None:
        """The takeover failed after ``hand_over``: number lines again."""
        with self._lock:
            self._numbering = True

    def continue_from(self, seq: int, earlier: list[LogEvent]) -> None:
        """The new svqtui: ``earlier`` (the old svqtui's last lines, the
        newest numbered ``seq``) come first, then this log's own lines,
        numbered on from ``seq``; listeners are not called for ``earlier``."""
        with self._lock:
            own = [e for _, e in self._events]
            self._events.clear()
            first = seq - len(earlier) + 1
            for i, event in enumerate(earlier):
                self._events.append((first + i, event))
            for i, event in enumerate(own):
                self._events.append((seq + 1 + i, event))
            self._seq = seq + len(own)

    def for_device(self, device_key: str, limit: int = 50) -> list[LogEvent]:
        with self._lock:
            found = [e for _, e in self._events if e.device_key == device_key]
        return found[-limit:]

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` for every new event, from the adding thread."""
        with self._lock:
            self._listeners.append(listener)
