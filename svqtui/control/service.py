"""svqtui as a systemd service: what it tells the service manager, and when
(docs/design.md#service).

``ServiceNotifier`` wraps an svqtui.control.sd_notify.Notifier (or nothing,
outside a service manager): ``ready()`` once every listen socket is up and
the control socket serves, ``reloading()``/``ready()`` around a config
reload, ``stopping()`` before the sources stop, ``status()`` lines for
``systemctl status``. Its watchdog thread sends ``WATCHDOG=1`` every half
timeout, but only while ``healthy()`` holds (the engine's heartbeat is
fresh): a wedged relay engine stops feeding it and systemd restarts svqtui.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping

from svqtui.control.sd_notify import Notifier, monotonic_usec, watchdog_interval_s
from svqtui.eventlog import EventLog


class ServiceNotifier:
    """The service manager's view of one svqtui process (all no-ops without one)."""

    def __init__(
        self,
        notifier: Notifier | None,
        healthy: Callable[[], tuple[bool, str]],
        log: EventLog,
        watchdog_s: float | None = None,
    ) -> None:
        """``healthy()`` returns (fresh, why not); ``watchdog_s`` is the timeout."""
        self.notifier = notifier
        self._healthy = healthy
        self._log = log
        self.watchdog_s = watchdog_s if notifier is not None else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.fed = 0  # WATCHDOG=1 sent (tests, status)

    @classmethod
    def from_env(
        cls,
        healthy: Callable[[], tuple[bool, str]],
        log: EventLog,
        env: Mapping[str, str] = os.environ,
    ) -> ServiceNotifier:
        return cls(Notifier.from_env(env), healthy, log, watchdog_interval_s(env))

    def _send(self, *fields: str) -> None:
        if self.notifier is not None and not self.notifier.send(*fields):
            self._log.warning(f"service manager: {self.notifier.failed}")

    def ready(self, status: str) -> None:
        self._send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
        if self.watchdog_s and self._thread is None:
            self._thread = threading.Thread(target=self._feed, name="svqtui-watchdog", daemon=True)
            self._thread.start()

    def reloading(self) -> None:
        self._send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec()}", "STATUS=reloading")

    def status(self, text: str) -> None:
        self._send(f"STATUS={text}")

    def stopping(self) -> None:
        self._stop.set()
        self._send("STOPPING=1", "STATUS=stopping")
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(5)

    def _feed(self) -> None:
        assert self.watchdog_s is not None
        period = self.watchdog_s / 2
        starved = False
        while not self._stop.wait(period):
            fresh, why = self._healthy()
            if fresh:
                self._send("WATCHDOG=1")
                self.fed += 1
                if starved:
                    self._log.info("watchdog: the engine is alive again; feeding the watchdog")
                    starved = False
            elif not starved:
                starved = True
                self._log.error(f"watchdog: not fed: {why}")
                self._send(f"STATUS=watchdog not fed: {why}")
