"""The monitor is the one refresh owner: control actions ask for early
snapshots, and the rate windows stay evenly spaced whatever clients do."""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

from svqtui.engine import EngineSnapshot
from svqtui.model import QueueView, VMView
from svqtui.runtime import Runtime
from tests.support.control import make_config, serve
from tests.support.fake_source import FakeSource

RATE = 1000.0  # kicks per second the source reports, by construction
INTERVAL_S = 0.2


class SteadySource(FakeSource):
    """The shared fake whose one queue's kick total grows at exactly RATE per
    second of CLOCK_MONOTONIC: any correct rate window reads RATE."""

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        self.queue = QueueView(index=0, kicks=int(time.monotonic() * RATE), calls=0)
        return super().collect(engine)


def test_ten_actions_a_second_leave_the_true_rate_and_even_windows(tmp_path: Path) -> None:
    """A headless-style server hit by 10 control actions a second still reports
    the source's true rate in every snapshot, and the sparkline history grows
    by one sample per refresh interval, not per action."""
    config = dataclasses.replace(make_config(tmp_path / "c.sock"), refresh_s=INTERVAL_S)
    runtime = Runtime(config, sources=[SteadySource()])
    rates: list[float] = []
    with serve(runtime) as served:
        runtime.monitor.subscribe(
            lambda snap: rates.extend(r.kick_rate for r in snap.rows.values())
        )
        stop = threading.Event()

        def hammer() -> None:
            with served.client() as client:
                while not stop.wait(0.1):
                    client.shadow("d", True)  # an action: an early snapshot each time

        thread = threading.Thread(target=hammer)
        started = time.monotonic()
        thread.start()
        time.sleep(3.0)
        stop.set()
        thread.join()
        elapsed = time.monotonic() - started
        history = runtime.monitor.latest.rows["d#0"].history if runtime.monitor.latest else ()
        actions = len(runtime.sources[0].actions)  # type: ignore[attr-defined]
    assert actions >= 20, "the hammer ran"
    settled = [r for r in rates[3:] if r]  # after the first short window
    assert settled and all(abs(r - RATE) / RATE < 0.2 for r in settled), settled
    # one history sample per interval (history holds up to 60): far fewer than actions
    assert len(history) <= elapsed / INTERVAL_S + 3
    assert len(history) < actions
