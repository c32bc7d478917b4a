"""The replay console (Textual pilots over a real recording of the demo):
the timeline, pause, step, seek, the next-stuck jump, a refused action, and
an SVG snapshot with every time frozen."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from textual.pilot import Pilot

from svqtui.model import Snapshot
from svqtui.recording.app import ReplayApp
from svqtui.recording.reader import Recording
from svqtui.recording.replay import ReplayRuntime
from tests.support.console import FROZEN_WALL, until
from tests.support.recording import Recorded, record_demo

REFRESHES = 30


class _FrozenTime:
    """Stands in for the time module inside svqtui.eventlog only (log line stamps)."""

    @staticmethod
    def time() -> float:
        return FROZEN_WALL


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Recorded]:
    where = tmp_path_factory.mktemp("rec")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("svqtui.eventlog.time", _FrozenTime)
        mp.chdir(where)  # the log lines name the files relative to it: no temporary path
        yield record_demo(where, REFRESHES, relative=True)


@pytest.fixture
def app(recorded: Recorded) -> Iterator[ReplayApp]:
    """The replay console, its clock not running (keys move it)."""
    runtime = ReplayRuntime(Recording.open(recorded.path))
    runtime.monitor.playing = False
    try:
        yield ReplayApp(runtime, live=False)
    finally:
        runtime.close()


async def _shown(pilot: Pilot[int], index: int) -> None:
    app = pilot.app
    assert isinstance(app, ReplayApp)
    live = app.replay.recording
    await until(
        pilot,
        lambda: app.snapshot is not None and app.snapshot.taken_at == live.frames[index].time_s,
        f"frame {index} on screen",
    )


async def test_step_seek_and_pause_move_the_timeline(app: ReplayApp) -> None:
    """`.` and `,` step one refresh, `]` and `[` seek 10 s, `p` plays and
    pauses; the status bar's timeline follows each."""
    async with app.run_test(size=(160, 50)) as pilot:
        await _shown(pilot, 0)
        assert app.status_bar.text.startswith("REPLAY ❚❚ x1 0:00.0/0:29.0")
        await pilot.press("full_stop", "full_stop")
        await _shown(pilot, 2)
        assert "0:02.0/0:29.0" in app.status_bar.text and " 3/30" in app.status_bar.text
        await pilot.press("comma")
        await _shown(pilot, 1)
        await pilot.press("right_square_bracket")
        await _shown(pilot, 11)
        await pilot.press("left_square_bracket")
        await _shown(pilot, 1)
        await pilot.press("plus", "plus")
        assert "x5" in app.status_bar.text
        await pilot.press("p")
        assert app.replay.monitor.playing
        await pilot.press("p")
        assert not app.replay.monitor.playing


async def test_next_stuck_jumps_to_the_stall(app: ReplayApp, recorded: Recorded) -> None:
    """`t` lands on the frame where the demo's queue went stuck, and the
    table shows that queue as stuck there."""
    first = next(i for i, s in enumerate(recorded.live) if any(r.stuck for r in s.rows.values()))
    async with app.run_test(size=(160, 50)) as pilot:
        await _shown(pilot, 0)
        await pilot.press("t")
        await _shown(pilot, first)
        assert app.snapshot is not None
        assert any(r.stuck for r in app.snapshot.rows.values())


async def test_an_action_is_refused_with_a_clear_word(app: ReplayApp) -> None:
    """`s` (shadow) on a replay changes nothing and says why: read-only."""
    async with app.run_test(size=(160, 50)) as pilot:
        await _shown(pilot, 0)
        await pilot.press("s")
        await until(
            pilot,
            lambda: any(
                "replay: recorded, read-only" in line for line in app.log_pane.lines_written
            ),
            "the refusal in the log",
        )


@pytest.fixture
def frozen_app(recorded: Recorded, monkeypatch: pytest.MonkeyPatch) -> Iterator[ReplayApp]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    runtime = ReplayRuntime(Recording.open(recorded.path))
    runtime.monitor.playing = False
    try:
        yield ReplayApp(runtime, live=False)
    finally:
        runtime.close()
        monkeypatch.undo()
        time.tzset()


def test_replay_console_svg(frozen_app: ReplayApp, snap_compare: Callable[..., bool]) -> None:
    """The replay console at 160x50 on the stall (after `t`): the timeline,
    the stuck queue, the recorded log."""

    async def at_stall(pilot: Pilot[int]) -> None:
        await _shown(pilot, 0)
        await pilot.press("t")
        monitor = frozen_app.replay.monitor
        await until(pilot, lambda: monitor.position > 0, "the stall")
        # the frame is published before the app applies it: wait for the screen
        await until(
            pilot,
            lambda: monitor.latest is not None and frozen_app.snapshot is monitor.latest,
            "the stall frame on screen",
        )
        await pilot.pause()
        await pilot.pause()

    assert snap_compare(frozen_app, terminal_size=(160, 50), run_before=at_stall)


async def test_playing_follows_the_recorded_pace(recorded: Recorded) -> None:
    """Live, at x10, the replay clock shows each frame in turn (one recorded
    second is 0.1 s) and stops on the last one."""
    runtime = ReplayRuntime(Recording.open(recorded.path))
    runtime.monitor.set_speed(10)
    app = ReplayApp(runtime)
    shown: list[float] = []
    when: list[float] = []

    def seen(snap: Snapshot) -> None:
        shown.append(snap.taken_at)
        when.append(time.monotonic())

    runtime.monitor.subscribe(seen)
    try:
        async with app.run_test(size=(160, 50)) as pilot:
            await until(pilot, lambda: runtime.monitor.at_end, "the end of the recording")
            await _shown(pilot, REFRESHES - 1)
            assert "■" in app.status_bar.text
    finally:
        runtime.close()
    assert shown == sorted(shown) and shown[-1] == runtime.recording.frames[-1].time_s
    assert len(set(shown)) == REFRESHES
    assert when[-1] - when[0] >= (REFRESHES - 1) / 10 * 0.9  # not faster than x10
