"""The subscriber list every monitor keeps (the local Monitor, an attached
console's remote monitors, the replay monitor): callbacks handed each new
snapshot, on the publishing thread, each isolated from the others."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from svqtui.model import Snapshot

Callback = Callable[[Snapshot], None]


class Subscribers:
    """``add`` a callback (it must not block), ``publish`` a snapshot to all.
    A callback that raises is reported through ``on_error`` and the others
    still get the snapshot."""

    def __init__(self, on_error: Callable[[Exception], None] | None = None) -> None:
        self._callbacks: list[Callback] = []
        self._lock = threading.Lock()
        self._on_error = on_error

    def add(self, callback: Callback) -> Callable[[], None]:
        """Subscribe; returns the unsubscribe function."""
        with self._lock:
            self._callbacks.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def publish(self, snap: Snapshot) -> None:
        with self._lock:
            callbacks = list(self._callbacks)
        for callback in callbacks:
            try:
                callback(snap)
            except Exception as err:  # one consumer must not starve the others
                if self._on_error is None:
                    raise
                self._on_error(err)
