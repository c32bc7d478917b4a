"""A recording of the demo replays what the monitor published: the same
snapshots (every field), the same stuck transitions at the same times, and
``--at`` finds the frame recorded nearest a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from svqtui.control.codec import encode_snapshot
from svqtui.recording.reader import Recording
from svqtui.recording.replay import ReplayRuntime
from tests.support.recording import Recorded, record_demo, stuck_transitions

REFRESHES = 40  # 10 s before the demo's stall, its 8 s, and the recovery


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return record_demo(tmp_path_factory.mktemp("rec"), REFRESHES)


def test_every_frame_is_the_published_snapshot(recorded: Recorded) -> None:
    """Each recorded frame decodes to the snapshot the monitor published, field for field."""
    with Recording.open(recorded.path) as rec:
        assert rec.damage is None
        assert len(rec) == REFRESHES
        for i, live in enumerate(recorded.live):
            assert encode_snapshot(rec.frame(i).snapshot) == encode_snapshot(live), i


def test_stuck_transitions_replay_at_the_same_times(recorded: Recorded) -> None:
    """The stall makes a queue stuck and then recover; the replay monitor,
    stepping through the file, shows the same transitions at the same times."""
    live = stuck_transitions(recorded.live)
    assert len(live) >= 2, "the demo's stall did not make a queue stuck and recover"
    runtime = ReplayRuntime(Recording.open(recorded.path))
    try:
        shown = []
        runtime.monitor.subscribe(shown.append)
        runtime.monitor.seek(0)
        while runtime.monitor.position < len(runtime.recording) - 1:
            runtime.monitor.step(1)
        assert stuck_transitions(shown) == live
        # and the jump key lands on each transition in turn
        runtime.monitor.seek(0)
        jumped = []
        while (i := runtime.monitor.next_stuck()) is not None:
            jumped.append(runtime.recording.frames[i].time_s)
        assert jumped == [t for t, _ in live]
    finally:
        runtime.close()


def test_at_gives_the_frame_recorded_nearest(recorded: Recorded) -> None:
    """--at T: the frame recorded nearest T seconds after the first (frames
    are one second apart: 12.4 s is frame 12, 12.6 s is frame 13)."""
    with Recording.open(recorded.path) as rec:
        assert rec.nearest(12.4) == 12
        assert rec.nearest(12.6) == 13
        assert rec.nearest(-5) == 0
        assert rec.nearest(10_000) == REFRESHES - 1
        assert rec.frame(rec.nearest(12.4)).snapshot.taken_at == recorded.live[12].taken_at


def test_the_log_is_recorded_with_its_frames(recorded: Recorded, tmp_path: Path) -> None:
    """The log lines written while recording (here: the incident notes) are in
    the file, and a replay's log at a frame holds exactly those up to it."""
    with Recording.open(recorded.path) as rec:
        events = rec.events_until(len(rec) - 1)
        assert any("recording: stuck" in e.text for e in events)
        runtime = ReplayRuntime(rec)
        runtime.monitor.seek(len(rec) - 1)
        _, shown = runtime.log.since(0)
        assert shown == events
        runtime.monitor.seek(0)
        _, shown = runtime.log.since(0)
        assert shown == rec.events_until(0)


def test_a_stuck_queue_writes_an_incident_file(recorded: Recorded) -> None:
    """The stall wrote one incident file named by host, time and cause, and
    it replays the moment the queue went stuck."""
    recorder = recorded.runtime.recorder
    assert recorder is not None
    stuck_files = [p for p in recorder.written if p.name.endswith("-stuck.svqrec")]
    assert len(stuck_files) == 1
    assert stuck_files[0].name.startswith(f"svqtui-{recorder.host}-")
    first_stuck = stuck_transitions(recorded.live)[0][0]
    with Recording.open(stuck_files[0]) as rec:
        assert rec.header["cause"] == "stuck"
        assert rec.damage is None
        assert first_stuck in rec.times
