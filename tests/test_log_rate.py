"""svqtui.log_rate and the EventLog's use of it: floods become a few lines and one summary."""

from __future__ import annotations

from svqtui.eventlog import EventLog
from svqtui.log_rate import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_burst_then_one_summary_per_window() -> None:
    """5 lines of a kind pass per 10 s window; the other 5,123 are counted and
    reported once, as "... and 5,123 more KIND in 10 s", when the window ends."""
    clock = Clock()
    log = EventLog(limiter=RateLimiter(burst=5, window_s=10, clock=clock))
    for _ in range(5_128):
        log.info("qmp vm: VM paused (STOP)", kind="qmp vm STOP/RESUME")
    _, events = log.since(0)
    assert len(events) == 5
    clock.t = 10.5
    log.flush()
    _, events = log.since(0)
    assert events[-1].text == "... and 5,123 more qmp vm STOP/RESUME in 10 s"
    log.flush()
    assert len(log.since(0)[1]) == 6, "a summary is written once"


def test_kinds_are_limited_separately_and_lines_without_kind_never() -> None:
    """A flood of one kind does not silence another kind or unkinded lines."""
    clock = Clock()
    log = EventLog(limiter=RateLimiter(burst=2, window_s=10, clock=clock))
    for _ in range(100):
        log.info("a", kind="A")
    log.info("b", kind="B")
    for _ in range(10):
        log.info("plain")
    texts = [e.text for e in log.since(0)[1]]
    assert texts.count("a") == 2 and texts.count("b") == 1 and texts.count("plain") == 10


def test_remembered_kinds_are_bounded() -> None:
    """Kinds made from peer data cannot grow the limiter without bound."""
    limiter = RateLimiter(max_kinds=16)
    for i in range(10_000):
        limiter.allow(f"kind {i}")
    assert len(limiter._windows) == 16


def test_lines_are_made_safe() -> None:
    """A line quoting a peer's escape sequence is stored escaped."""
    log = EventLog()
    log.error("qmp \x1b]0;pwned\x07vm: gone")
    assert log.since(0)[1][0].text == "qmp \\x1b]0;pwned\\x07vm: gone"


def test_replayed_events_are_made_safe() -> None:
    """An event replayed from an attached svqtui (which could be anyone
    answering on the control socket) is stored escaped too."""
    from svqtui.model import LogEvent

    log = EventLog()
    log.replay(LogEvent(0.0, "info", "\x1b[2Jspoofed\u202e"))
    assert log.since(0)[1][0].text == "\\x1b[2Jspoofed\\u202e"
