"""The replay console: svqtui's console on a recording, plus the timeline keys.

``ReplayApp`` is the ordinary console (svqtui.console.app.SvqtuiApp) over a
``ReplayRuntime``; it extends the key table (so bindings, help, palette and
footer carry the new keys) with:

- ``,`` / ``.``  one refresh back / forward (pauses);
- ``[`` / ``]``  10 seconds back / forward;
- ``n``          the next frame with a log event;
- ``t``          the next stuck transition (a queue goes stuck or recovers);
- ``-`` / ``+``  slower / faster (x0.5 ... x10).

``p`` pauses and resumes the replay clock. The status bar starts with the
timeline. Actions that would change a device (shadow, mask, kick, call,
reset) are refused by the target with "replay: recorded, read-only".
"""

from __future__ import annotations

from typing import ClassVar

from svqtui.console.app import SvqtuiApp
from svqtui.console.keys import KeySpec, KeyTable
from svqtui.gc_policy import settle_after_start
from svqtui.model import Snapshot
from svqtui.recording.replay import ReplayRuntime
from svqtui.thread_priority import lower_thread_priority
from svqtui.widgets.status_bar import ViewState

SEEK_S = 10.0

REPLAY_KEYS: tuple[KeySpec, ...] = (
    KeySpec("comma", ",", "replay_back", "-1", "Replay: one refresh back (pauses)", footer=False),
    KeySpec("full_stop", ".", "replay_forward", "+1", "Replay: one refresh forward (pauses)"),
    KeySpec(
        "left_square_bracket", "[", "replay_rewind", "-10s", "Replay: 10 seconds back", footer=False
    ),
    KeySpec("right_square_bracket", "]", "replay_skip", "+10s", "Replay: 10 seconds forward"),
    KeySpec("n", "n", "replay_next_event", "Next event", "Replay: jump to the next log event"),
    KeySpec(
        "t",
        "t",
        "replay_next_stuck",
        "Next stuck",
        "Replay: jump to the next stuck transition (a queue goes stuck or recovers)",
    ),
    KeySpec("minus", "-", "replay_slower", "Slower", "Replay: slower (down to x0.5)", footer=False),
    KeySpec("plus", "+", "replay_faster", "Faster", "Replay: faster (up to x10)", footer=False),
)


class ReplayApp(SvqtuiApp):
    """The console on a recording (see the module doc)."""

    TITLE = "svqtui replay"
    KEYS: ClassVar[KeyTable] = SvqtuiApp.KEYS.extend(*REPLAY_KEYS)

    def __init__(self, runtime: ReplayRuntime, *, live: bool = True) -> None:
        super().__init__(runtime, live=live)
        self.replay = runtime
        self._log_generation = runtime.log.generation

    @property
    def view_state(self) -> ViewState:
        base = super().view_state
        return ViewState(
            base.interval_s,
            False,
            base.sort,
            base.filter_text,
            timeline=self.replay.monitor.timeline(),
        )

    def on_mount(self) -> None:
        super().on_mount()
        if self.replay.recording.damage:
            self.notify(self.replay.recording.damage, title="damaged recording", severity="warning")

    def apply(self, snap: Snapshot) -> None:
        if self.replay.log.generation != self._log_generation:
            self._log_generation = self.replay.log.generation
            self.log_pane.restart()  # the log as it was at this moment, from its start
        super().apply(snap)

    def _moved(self) -> None:
        self.status_bar.show(self.snapshot, self.view_state)

    # -- the replay keys --------------------------------------------------------------

    def action_pause(self) -> None:
        playing = self.replay.monitor.pause()
        self.notify("replay playing" if playing else "replay paused", timeout=2)
        self._moved()

    def action_delay(self) -> None:
        self.notify("a replay keeps its recorded pace: + and - change its speed", timeout=4)

    def action_replay_back(self) -> None:
        self.replay.monitor.step(-1)
        self._moved()

    def action_replay_forward(self) -> None:
        self.replay.monitor.step(1)
        self._moved()

    def action_replay_rewind(self) -> None:
        self.replay.monitor.seek_by(-SEEK_S)
        self._moved()

    def action_replay_skip(self) -> None:
        self.replay.monitor.seek_by(SEEK_S)
        self._moved()

    def action_replay_next_event(self) -> None:
        if self.replay.monitor.next_event() is None:
            self.notify("no later log event in this recording", timeout=3)
        self._moved()

    def action_replay_next_stuck(self) -> None:
        if self.replay.monitor.next_stuck() is None:
            self.notify("no later stuck transition in this recording", timeout=3)
        self._moved()

    def action_replay_slower(self) -> None:
        self.replay.monitor.slower()
        self._moved()

    def action_replay_faster(self) -> None:
        self.replay.monitor.faster()
        self._moved()


def run_replay_console(runtime: ReplayRuntime) -> int:
    """Run the replay console until the operator quits."""
    lower_thread_priority()
    settle_after_start()
    ReplayApp(runtime).run()
    return 0
