"""Replay: a recording as the console's target (svqtui.console.target).

``ReplayMonitor`` has the monitor's interface (``subscribe``, ``refresh_soon``,
``latest``...) and publishes recorded snapshots on its own clock, as far
apart as they were recorded divided by the speed; it can pause, step, seek
by time, and jump to the next event or stuck transition. ``ReplayLog`` is
the event log as it was at the shown frame. ``ReplayRuntime`` is the
``ConsoleTarget``: every action raises ``ReplayReadOnly``.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable

from svqtui.config import Config
from svqtui.engine import Link
from svqtui.engine.faults import Fault
from svqtui.eventlog import EventLog
from svqtui.model import LogEvent, Snapshot
from svqtui.recording.errors import RecordingDamaged, ReplayReadOnly
from svqtui.recording.reader import Recording
from svqtui.subscribers import Subscribers

SPEEDS = (0.5, 1.0, 2.0, 5.0, 10.0)
READ_ONLY = "replay: recorded, read-only"
STOP_TIMEOUT_S = 5.0


class ReplayLog(EventLog):
    """The event log of a replay: ``reset`` makes it the log as it was at a
    frame (its sequence numbers start again, and ``generation`` counts that)."""

    def __init__(self, maxlen: int = 2000) -> None:
        super().__init__(maxlen)
        self.generation = 0

    def reset(self, events: list[LogEvent]) -> None:
        with self._lock:
            self._events.clear()
            self._seq = 0
            for event in events:
                self._seq += 1
                self._events.append((self._seq, event))
            self.generation += 1


def clock_text(seconds: float) -> str:
    """0:07.5, 12:03.0, 1:02:03.0"""
    seconds = max(seconds, 0.0)
    whole = int(seconds)
    tenths = int((seconds - whole) * 10)
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}.{tenths}" if h else f"{m}:{s:02d}.{tenths}"


class ReplayMonitor:
    """Publishes a recording's snapshots on a replay clock (see module doc)."""

    def __init__(self, recording: Recording, log: ReplayLog) -> None:
        self.recording = recording
        self.log = log
        self.latest: Snapshot | None = None
        self.position = 0
        self.speed = 1.0
        self.playing = True
        first_interval = 1.0
        if recording.frames:
            with contextlib.suppress(RecordingDamaged):
                first_interval = recording.frame(0).snapshot.interval_s
        self.interval_s = first_interval
        self._subscribers = Subscribers()
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown = -1  # the frame last published

    # -- the monitor interface the console uses ---------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="svqtui-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(STOP_TIMEOUT_S)

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def refresh_soon(self, wait: bool = False, timeout: float = 5.0) -> Snapshot | None:
        """Show the current frame again (nothing changes in a recording)."""
        return self._publish(self.position, force=True)

    def set_interval(self, seconds: float) -> None:
        """A recording keeps its own intervals: the speed keys change the pace."""

    # -- where the replay is -------------------------------------------------------------

    @property
    def at_end(self) -> bool:
        return self.position >= len(self.recording) - 1

    def offset_s(self) -> float:
        return self.recording.offset_s(self.position) if self.recording.frames else 0.0

    def timeline(self, width: int = 20) -> str:
        """``▶ x1 0:12.5/1:00.0 ━━━━──── 13/600`` for the status bar."""
        n = len(self.recording)
        total = self.recording.duration_s
        done = self.offset_s() / total if total else 1.0
        filled = round(done * width)
        state = "▶" if self.playing and not self.at_end else ("■" if self.at_end else "❚❚")
        return (
            f"REPLAY {state} x{self.speed:g} {clock_text(self.offset_s())}/{clock_text(total)} "
            f"{'━' * filled}{'─' * (width - filled)} {self.position + 1}/{n}"
        )

    # -- moving ---------------------------------------------------------------------------

    def pause(self, paused: bool | None = None) -> bool:
        """Pause (or resume; toggle with None); returns whether it plays now."""
        with self._lock:
            self.playing = (not self.playing) if paused is None else not paused
            if self.playing and self.at_end:
                self.seek(0, keep_playing=True)
        self._wake.set()
        return self.playing

    def set_speed(self, speed: float) -> None:
        self.speed = min(max(speed, SPEEDS[0]), SPEEDS[-1])
        self._wake.set()

    def faster(self) -> float:
        later = [s for s in SPEEDS if s > self.speed + 1e-9]
        self.set_speed(later[0] if later else SPEEDS[-1])
        return self.speed

    def slower(self) -> float:
        earlier = [s for s in SPEEDS if s < self.speed - 1e-9]
        self.set_speed(earlier[-1] if earlier else SPEEDS[0])
        return self.speed

    def step(self, frames: int) -> int:
        """Pause and move ``frames`` refreshes (back when negative)."""
        self.playing = False
        return self.seek(self.position + frames)

    def seek_by(self, seconds: float) -> int:
        """Move ``seconds`` of recorded time (back when negative)."""
        if not self.recording.frames:
            return 0
        return self.seek(self.recording.nearest(self.offset_s() + seconds), keep_playing=True)

    def seek_to(self, offset_s: float) -> int:
        return self.seek(self.recording.nearest(offset_s), keep_playing=True)

    def next_event(self) -> int | None:
        """Pause at the next frame with log events; None if there is none."""
        for i in range(self.position + 1, len(self.recording)):
            if self.recording.frames[i].events:
                self.playing = False
                return self.seek(i)
        return None

    def next_stuck(self) -> int | None:
        """Pause at the next frame where a queue goes stuck or recovers."""
        try:
            now = self.recording.stuck_keys(self.position)
            for i in range(self.position + 1, len(self.recording)):
                keys = self.recording.stuck_keys(i)
                if keys != now:
                    self.playing = False
                    return self.seek(i)
        except RecordingDamaged as err:
            self._damaged(err)
        return None

    def seek(self, index: int, keep_playing: bool = False) -> int:
        """Show frame ``index`` (clamped); the log becomes the log as it was."""
        with self._lock:
            if not self.recording.frames:
                return 0
            index = min(max(index, 0), len(self.recording) - 1)
            forward_by_one = index == self._shown + 1
            self.position = index
            if not keep_playing:
                self.playing = False
            if not forward_by_one:
                self.log.reset(self.recording.events_until(index))
            self._publish(index, force=True, log_done=not forward_by_one)
        self._wake.set()
        return self.position

    # -- publishing ---------------------------------------------------------------------

    def _publish(self, index: int, force: bool = False, log_done: bool = False) -> Snapshot | None:
        with self._lock:
            if not self.recording.frames:
                return None
            try:
                frame = self.recording.frame(index)
            except RecordingDamaged as err:
                self._damaged(err)
                return self.latest
            if not log_done and index == self._shown + 1:
                for event in frame.events:
                    self.log.replay(event)
            elif not log_done and index != self._shown:
                self.log.reset(self.recording.events_until(index))
            if index == self._shown and not force:
                return self.latest
            self._shown = index
            self.position = index
            self.latest = frame.snapshot
            self.interval_s = frame.snapshot.interval_s
        self._subscribers.publish(frame.snapshot)
        return frame.snapshot

    def _damaged(self, err: RecordingDamaged) -> None:
        """Replay up to the damage: the frames from the bad one on are dropped."""
        bad = err.frame if err.frame is not None else self.position
        del self.recording.frames[max(bad, 1) :]
        self.recording.damage = str(err)
        self.log.error(f"replay: {err}; replaying up to there")
        self.position = min(self.position, len(self.recording) - 1)

    def _run(self) -> None:
        if self._shown < 0:
            self.seek(self.position, keep_playing=True)
        next_at = time.monotonic()
        while not self._stop.is_set():
            with self._lock:
                playing = self.playing and not self.at_end
                if playing:
                    times = self.recording.times
                    gap = times[self.position + 1] - times[self.position]
                    due = max(gap, 0.0) / self.speed
            if not playing:
                self._wake.wait()
                self._wake.clear()
                next_at = time.monotonic()
                continue
            deadline = next_at + due
            if self._wake.wait(max(0.0, deadline - time.monotonic())):
                self._wake.clear()
                next_at = time.monotonic()  # a seek, a pause, a new speed: start the gap again
                continue
            with self._lock:
                if self.playing and not self.at_end:
                    self._publish(self.position + 1)
            next_at = deadline
            if self.at_end:
                self.playing = False


class ReplayRuntime:
    """The console's target on a recording: a replay monitor, no actions."""

    def __init__(self, recording: Recording, config: Config | None = None) -> None:
        self.recording = recording
        self.config = config or Config()
        self.log = ReplayLog()
        self.monitor = ReplayMonitor(recording, self.log)
        if recording.damage:
            self.log.error(f"replay: {recording.damage}; replaying up to there")

    @property
    def owns_devices(self) -> bool:
        return False

    def _read_only(self, what: str) -> ReplayReadOnly:
        return ReplayReadOnly(f"{READ_ONLY}: cannot {what}")

    def set_shadow(self, device_key: str, on: bool) -> None:
        raise self._read_only(f"turn shadow mode {'on' if on else 'off'}")

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        raise self._read_only("mask" if masked else "unmask")

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        raise self._read_only(f"inject a {link.name.lower()}")

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        raise self._read_only("arm a fault" if fault else "clear faults")

    def reset(self, device_key: str | None = None) -> None:
        raise self._read_only("reset counters")

    def close(self) -> None:
        self.monitor.stop()
        self.recording.close()
