"""``svqtui --attach``: the console as a client of a headless svqtui.

``RemoteRuntime`` gives the console what a local Runtime gives it (see
svqtui.console.target.ConsoleTarget), over the control socket: snapshots and log
events are fetched every refresh, actions are forwarded. The engine and the
interposers stay in the headless process, so detaching (quitting) leaves every
device and its shadow state as it is. A lost connection is shown in the status
bar and the log, and retried every refresh. The target is a socket path or an
``ssh://`` URL (svqtui.control.endpoint); several targets in one console are
svqtui.control.multi.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable

from svqtui.config import Config
from svqtui.console.feed import SnapshotFeed
from svqtui.control.endpoint import Endpoint
from svqtui.engine import Link
from svqtui.engine.faults import Fault
from svqtui.errors import ControlError
from svqtui.eventlog import EventLog
from svqtui.model import EngineStatus, Snapshot, SourceKind, SourceStatus
from svqtui.subscribers import Subscribers


class RemoteMonitor:
    """Snapshots and log events from the headless svqtui, one request each,
    on a refresh clock of its own (a SnapshotFeed thread) with the local
    Monitor's interface: subscribe, refresh_soon, set_interval, latest."""

    def __init__(self, endpoint: Endpoint | str, log: EventLog, interval_s: float) -> None:
        endpoint = endpoint if isinstance(endpoint, Endpoint) else Endpoint(endpoint)
        self.path = str(endpoint)
        self.log = log
        self.interval_s = interval_s
        self._client = endpoint.client()
        self._events_seq = 0
        self._last: Snapshot | None = None
        self._connected = True
        self._subscribers = Subscribers()
        self._feed = SnapshotFeed(self.refresh, self._publish, self._failed, interval_s)
        self.latest: Snapshot | None = None

    # -- the Monitor interface the console uses ---------------------------------

    def start(self) -> None:
        self._feed.start()

    @property
    def running(self) -> bool:
        return self._feed.running

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def refresh_soon(self, wait: bool = False, timeout: float = 5.0) -> Snapshot | None:
        """Fetch again now (after an action)."""
        if not self._feed.running:
            snap = self.refresh()
            self._publish(snap)
            return snap
        self._feed.poke()
        return None

    def set_interval(self, seconds: float) -> None:
        self.interval_s = seconds
        self._feed.set_interval(seconds)

    def _publish(self, snap: Snapshot) -> None:
        self.latest = snap
        self._subscribers.publish(snap)

    def _failed(self, err: Exception) -> None:
        self.log.error(f"attach: cannot refresh the snapshot: {err}")

    def refresh(self) -> Snapshot:
        try:
            snap = self._client.snapshot()
            seq, events = self._client.events(self._events_seq)
        except ControlError as err:
            if self._connected:
                self.log.error(f"attach: {err}; retrying every refresh")
                self._connected = False
            return self._lost(str(err))
        if not self._connected:
            self.log.info(f"attach: connected again to {self.path}")
            self._connected = True
        if seq < self._events_seq:  # the headless svqtui was restarted
            self._events_seq = 0
        for event in events:
            self.log.replay(event)
        self._events_seq = seq
        attached = SourceStatus(f"attach {self.path}", SourceKind.REMOTE, True, "attached")
        snap = dataclasses.replace(
            snap, interval_s=self.interval_s, sources=(*snap.sources, attached)
        )
        self._last = snap
        return snap

    def _lost(self, reason: str) -> Snapshot:
        """The last snapshot, marked as out of date: the engine unknown and
        every VM shown disconnected, rather than an empty screen."""
        lost = SourceStatus(f"attach {self.path}", SourceKind.REMOTE, False, reason)
        last = self._last
        if last is None:
            return Snapshot(
                taken_at=time.time(),
                vms=(),
                rows={},
                engine=EngineStatus(alive=False, relays_per_s=0.0, queues=0, backlog=0),
                sources=(lost,),
                interval_s=self.interval_s,
            )
        return dataclasses.replace(
            last,
            vms=tuple(
                dataclasses.replace(vm, connected=False, status="attach: connection lost")
                for vm in last.vms
            ),
            engine=dataclasses.replace(last.engine, alive=False, relays_per_s=0.0),
            sources=(lost,),
            interval_s=self.interval_s,
        )

    def close(self) -> None:
        self._feed.stop()
        self._client.close()


class RemoteRuntime:
    """The console's backend when attached to ``svqtui --headless``."""

    def __init__(self, config: Config, target: str) -> None:
        """``target``: a control socket path or ``ssh://[user@]host[:port][/path]``."""
        self.config = config
        self.endpoint = Endpoint(target)
        self.path = str(self.endpoint)
        self.log = EventLog()
        self.monitor = RemoteMonitor(self.endpoint, self.log, config.refresh_s)
        self._actions = self.endpoint.client()  # its own connection: refresh never waits
        self._actions_lock = threading.Lock()

    @property
    def owns_devices(self) -> bool:
        return False

    def check(self) -> None:
        """Reach the headless svqtui once; raises ControlUnreachable."""
        with self._actions_lock:
            self._actions.hello()

    def set_shadow(self, device_key: str, on: bool) -> None:
        with self._actions_lock:
            self._actions.shadow(device_key, on)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        with self._actions_lock:
            self._actions.mask(device_key, queue, masked)

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        with self._actions_lock:
            if link is Link.KICK:
                self._actions.kick(device_key, queue)
            else:
                self._actions.call(device_key, queue)

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        with self._actions_lock:
            if fault is None:
                self._actions.fault(device_key, queue, "clear")
            else:
                self._actions.fault(device_key, queue, fault.name, fault.amount)

    def reset(self, device_key: str | None = None) -> None:
        with self._actions_lock:
            self._actions.reset(device_key)

    def close(self) -> None:
        self.monitor.close()
        self._actions.close()
        self.endpoint.close()
