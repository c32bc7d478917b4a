"""The snapshot feed: a plain thread that calls a ``refresh()`` every
interval and hands each result on. It is the refresh clock of an attached
console's remote monitor (svqtui.control.attach), which fetches snapshots
from a headless svqtui; a local console subscribes to its Monitor instead,
which has a clock of its own (docs/design.md#data-flow).

The feed never waits for its consumer: delivering is a non-blocking callback
(the console coalesces: if it is behind, it renders only the newest snapshot).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from svqtui.model import Snapshot
from svqtui.thread_priority import lower_thread_priority

STOP_TIMEOUT_S = 5.0
FIRST_RATES_S = 0.25  # the second refresh comes this soon, so rates show at once


class SnapshotFeed:
    """Refreshes on a fixed cadence (``periodic``) or only when poked."""

    def __init__(
        self,
        refresh: Callable[[], Snapshot],
        deliver: Callable[[Snapshot], None],
        on_error: Callable[[Exception], None],
        interval_s: float,
        periodic: bool = True,
    ) -> None:
        self._refresh = refresh
        self._deliver = deliver
        self._on_error = on_error
        self.interval_s = interval_s
        self.periodic = periodic
        self.paused = False
        self.refreshes = 0  # snapshots delivered
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="svqtui-feed", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    def poke(self) -> None:
        """Refresh now (after an action, a delay change, a resume)."""
        self._wake.set()

    def set_interval(self, seconds: float) -> None:
        self.interval_s = seconds
        self.poke()

    def _run(self) -> None:
        lower_thread_priority()
        failing = False
        next_t = time.monotonic() - max(0.0, self.interval_s - FIRST_RATES_S)
        while not self._stop.is_set():
            if not self.paused:
                try:
                    snap = self._refresh()
                except Exception as err:  # the feed must outlive a failing refresh
                    if not failing:
                        self._on_error(err)
                    failing = True
                else:
                    failing = False
                    self.refreshes += 1
                    self._deliver(snap)
            if self.periodic:
                next_t = max(next_t + self.interval_s, time.monotonic() + 0.001)
                if self._wake.wait(max(0.0, next_t - time.monotonic())):
                    next_t = time.monotonic()
            else:
                self._wake.wait()
            self._wake.clear()
