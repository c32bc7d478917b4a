"""Rate limiting of repeated log lines, per kind.

A peer can make the same line happen thousands of times a second (a QMP
STOP/RESUME flood, a listen socket that cannot accept). ``RateLimiter`` lets
``burst`` lines of one *kind* through per ``window_s`` window and counts the
rest; when a window with suppressed lines ends, ``summaries()`` yields one
line for it: "... and 5,123 more STOP/RESUME in 10 s". The number of kinds it
remembers is bounded, so kinds made from peer data cannot grow memory.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass

DEFAULT_BURST = 5
DEFAULT_WINDOW_S = 10.0
MAX_KINDS = 1024


@dataclass(slots=True)
class _Window:
    start: float
    passed: int = 0
    suppressed: int = 0


@dataclass(frozen=True, slots=True)
class Suppressed:
    """Lines of one kind held back during one window."""

    kind: str
    count: int
    window_s: float

    def line(self) -> str:
        return f"... and {self.count:,} more {self.kind} in {self.window_s:g} s"


class RateLimiter:
    """At most ``burst`` lines per kind per window; not thread-safe (the
    caller locks)."""

    def __init__(
        self,
        burst: int = DEFAULT_BURST,
        window_s: float = DEFAULT_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_kinds: int = MAX_KINDS,
    ) -> None:
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._max_kinds = max_kinds
        self._windows: collections.OrderedDict[str, _Window] = collections.OrderedDict()
        self._next_scan = float("-inf")  # summaries() scans at most once a second

    def allow(self, kind: str) -> bool:
        """Whether a line of ``kind`` may be written now (else it is counted)."""
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or (now - window.start >= self.window_s and not window.suppressed):
            # (an ended window that suppressed lines stays, still counting,
            # until summaries() reports it: no count is lost)
            window = self._windows[kind] = _Window(now)
            self._windows.move_to_end(kind)
            while len(self._windows) > self._max_kinds:
                self._windows.popitem(last=False)
        if window.passed < self.burst:
            window.passed += 1
            return True
        window.suppressed += 1
        return False

    def summaries(self) -> list[Suppressed]:
        """One entry per ended window that suppressed lines (each only once;
        found at most a second after the window ended)."""
        now = self._clock()
        if now < self._next_scan:
            return []
        self._next_scan = now + min(1.0, self.window_s)
        out: list[Suppressed] = []
        for kind, window in list(self._windows.items()):
            if now - window.start >= self.window_s:
                if window.suppressed:
                    out.append(Suppressed(kind, window.suppressed, self.window_s))
                del self._windows[kind]
        return out
