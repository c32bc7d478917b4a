"""When each step of one takeover happened (docs/design.md#takeover).

Both processes log one line per takeover with every step's time in ms
relative to N's ``takeover`` request: N sends its ``time.monotonic()`` with
the request (``requested_at``), and CLOCK_MONOTONIC is the same clock in
every process of the machine, so O's steps and N's compare directly. N's
line also places its own start (the process's start time, and when its
runtime was up) before the request: negative figures."""

from __future__ import annotations

import os
import time

#: A ``requested_at`` further than this from O's clock is not trusted (not
#: the same machine's monotonic clock): O counts from the request's arrival.
MAX_SKEW_S = 60.0


def process_started_at() -> float | None:
    """This process's start on the ``time.monotonic()`` clock (10 ms
    resolution; None when /proc says nothing)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])  # field 22: starttime
        since_boot = time.clock_gettime(time.CLOCK_BOOTTIME)
        hz = os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
    return time.monotonic() - (since_boot - ticks / hz)


class Timeline:
    """Named steps with their times, printed relative to the request."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.origin: float | None = None
        self.marks: list[tuple[str, float]] = []

    def mark(self, step: str, at: float | None = None) -> float:
        now = time.monotonic() if at is None else at
        self.marks.append((step, now))
        return now

    def set_origin(self, requested_at: object) -> None:
        """N's ``requested_at`` if plausible, else now (the request arrived)."""
        now = time.monotonic()
        ok = isinstance(requested_at, float | int) and not isinstance(requested_at, bool)
        if ok and abs(now - float(requested_at)) < MAX_SKEW_S:  # type: ignore[arg-type]
            self.origin = float(requested_at)  # type: ignore[arg-type]
        else:
            self.origin = now

    def line(self) -> str:
        origin = self.origin if self.origin is not None else (self.marks or [("", 0.0)])[0][1]
        steps = ", ".join(f"{step} {1000 * (t - origin):+.1f}" for step, t in self.marks)
        return (
            f"takeover timeline ({self.who}, ms from the request at monotonic {origin:.3f}): "
            f"{steps}"
        )
