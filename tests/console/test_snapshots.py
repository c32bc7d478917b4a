"""SVG snapshots of the console on the seeded demo, at 80x24 and 160x50.

The demo runs in lock-step through the real engine, and the monitor reads a
clock that steps one second per refresh, so every figure on screen is exact.
Replaced for byte-stable pictures: the monitor's clocks, the engine's
last-notification stamps (FrozenAgeDemo), the event log's wall clock, and
the time zone. The demo is advanced into its stall window, so one queue is
STUCK on screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from textual.pilot import Pilot

from svqtui.console.app import SvqtuiApp
from svqtui.sources.demo import STALL_EVERY_TICKS, STALL_TICKS
from tests.support.console import FROZEN_WALL, frozen_runtime, prime, started, until

STALL_STARTS = STALL_EVERY_TICKS - STALL_TICKS


class _FrozenTime:
    """Stands in for the time module inside svqtui.eventlog only."""

    @staticmethod
    def time() -> float:
        return FROZEN_WALL


@pytest.fixture
def frozen_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[SvqtuiApp]:
    """The console over a primed, frozen-clock demo (refreshes only on start)."""
    monkeypatch.setattr("svqtui.eventlog.time", _FrozenTime)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    runtime, demo = frozen_runtime(seed=7)
    try:
        with started(runtime):
            prime(runtime, demo, samples=12, ticks=4, skip=STALL_STARTS + 5)
            yield SvqtuiApp(runtime, live=False)
    finally:
        monkeypatch.undo()
        time.tzset()


async def _first_frame(pilot: Pilot[int]) -> None:
    app = pilot.app
    assert isinstance(app, SvqtuiApp)
    await until(pilot, lambda: app.frames >= 1, "the first snapshot")


def test_main_screen_80x24(frozen_app: SvqtuiApp, snap_compare: Callable[..., bool]) -> None:
    """The console at 80x24: tree, header, queue table, log, status, keys."""
    assert snap_compare(frozen_app, terminal_size=(80, 24), run_before=_first_frame)


def test_main_screen_160x50(frozen_app: SvqtuiApp, snap_compare: Callable[..., bool]) -> None:
    """The console at 160x50, with every column and the stuck reason."""
    assert snap_compare(frozen_app, terminal_size=(160, 50), run_before=_first_frame)


def test_help_screen_80x24(frozen_app: SvqtuiApp, snap_compare: Callable[..., bool]) -> None:
    """The ? help screen at 80x24."""
    assert snap_compare(
        frozen_app, terminal_size=(80, 24), run_before=_first_frame, press=["question_mark"]
    )
