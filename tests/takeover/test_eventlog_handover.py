"""The event log's side of a takeover (svqtui.eventlog.EventLog:
``hand_over``, ``take_back``, ``continue_from``; docs/design.md#takeover)."""

from __future__ import annotations

from svqtui.eventlog import EventLog
from svqtui.model import LogEvent


def test_the_new_log_numbers_on_after_the_old_ones_lines() -> None:
    """N's own lines (logged before the takeover) are renumbered after O's
    last number; O's lines keep theirs; a reader asking from any of O's
    numbers gets exactly the lines after it."""
    old, new = EventLog(), EventLog()
    for i in range(5):
        old.info(f"o{i}")
    new.info("n0")
    new.info("n1")
    seq, lines = old.recent(3)
    assert seq == 5 and [e.text for e in lines] == ["o2", "o3", "o4"]
    new.continue_from(seq, lines)
    last, after = new.since(3)
    assert last == 7 and [e.text for e in after] == ["o3", "o4", "n0", "n1"]
    new.info("n2")
    last, after = new.since(7)
    assert last == 8 and [e.text for e in after] == ["n2"]


def test_the_old_log_stops_numbering_at_the_hand_over() -> None:
    """After ``hand_over`` O's lines reach its listeners (stderr) but get no
    number (N gives them out now); ``take_back`` numbers again."""
    log = EventLog()
    heard: list[LogEvent] = []
    log.subscribe(heard.append)
    log.info("a")
    log.info("b")
    seq, tail = log.hand_over(after=1)
    assert seq == 2 and [e.text for e in tail] == ["b"]
    log.info("c")
    assert log.since(0)[0] == 2 and [e.text for e in heard] == ["a", "b", "c"]
    log.take_back()
    log.info("d")
    assert log.since(2) == (3, [heard[-1]])
