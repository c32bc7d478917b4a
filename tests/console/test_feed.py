"""The snapshot feed thread: refreshes off the UI loop on a cadence or on
demand, pauses, and survives a failing refresh."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from svqtui.console.feed import SnapshotFeed
from svqtui.model import Snapshot
from tests.support.console import synthetic_snapshot
from tests.support.wait import wait_until

TIMEOUT_S = 10.0


class Recorder:
    def __init__(self, fail_first: int = 0) -> None:
        self.snaps: list[Snapshot] = []
        self.errors: list[Exception] = []
        self.calls = 0
        self.threads: set[str] = set()
        self.fail_first = fail_first

    def refresh(self) -> Snapshot:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
        if self.calls <= self.fail_first:
            raise RuntimeError("source exploded")
        return synthetic_snapshot(1, 1, tick=self.calls)


@pytest.fixture
def make_feed() -> Iterator[Callable[..., tuple[SnapshotFeed, Recorder]]]:
    feeds: list[SnapshotFeed] = []

    def make(periodic: bool = True, fail_first: int = 0) -> tuple[SnapshotFeed, Recorder]:
        rec = Recorder(fail_first)
        feed = SnapshotFeed(rec.refresh, rec.snaps.append, rec.errors.append, 0.01, periodic)
        feeds.append(feed)
        feed.start()
        return feed, rec

    yield make
    for feed in feeds:
        feed.stop()


def test_periodic_feed_refreshes_in_its_own_thread(make_feed: Callable[..., tuple]) -> None:
    """Snapshots keep coming, produced by the feed thread (not the caller's)."""
    feed, rec = make_feed()
    wait_until(lambda: len(rec.snaps) >= 5, what="five snapshots")
    assert rec.threads == {"svqtui-feed"}
    assert feed.refreshes >= 5


def test_on_demand_feed_refreshes_when_poked(make_feed: Callable[..., tuple]) -> None:
    """Non-periodic: one refresh at start, then one per poke."""
    feed, rec = make_feed(periodic=False)
    wait_until(lambda: len(rec.snaps) == 1, what="the first snapshot")
    feed.poke()
    wait_until(lambda: len(rec.snaps) == 2, what="the poked snapshot")
    feed.stop()
    assert rec.calls == 2


def test_paused_feed_does_not_refresh(make_feed: Callable[..., tuple]) -> None:
    """While paused, pokes do not refresh; resuming does."""
    feed, rec = make_feed(periodic=False)
    wait_until(lambda: len(rec.snaps) == 1, what="the first snapshot")
    feed.paused = True
    feed.poke()
    feed.poke()
    feed.stop()  # joins the thread: every poke has been seen
    assert rec.calls == 1


def test_a_failing_refresh_is_reported_once_and_the_feed_goes_on(
    make_feed: Callable[..., tuple],
) -> None:
    """Three failures give one error report; then snapshots flow again."""
    _, rec = make_feed(fail_first=3)
    wait_until(lambda: len(rec.snaps) >= 2, what="snapshots after the failures")
    assert len(rec.errors) == 1
    assert "source exploded" in str(rec.errors[0])
