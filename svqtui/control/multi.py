"""One console on several headless svqtui (``--attach A --attach B`` or ``A,B``).

``MultiRemoteRuntime`` holds one ``RemoteRuntime`` per target (each with its
own connections and, for ssh://, its own SSH session) behind the
``ConsoleTarget`` interface; ``MultiMonitor`` merges their monitors into one
``TargetMonitor``. Each host keeps its own refresh clock (a SnapshotFeed
thread), so a slow or lost host never delays the others: its part of the
merged snapshot is its last one, marked disconnected (RemoteMonitor), and its
loss is one log line.

Keys stay unique across hosts: every VM, device and row key of host H is
``H|key`` (svqtui.model.HOST_SEP) and VM names are ``H/name``, so the tree
groups VMs by host; an action on ``H|key`` goes to H as ``key``. Log events of
H are copied into the console's log with ``H: `` before their text.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from functools import partial

from svqtui.config import Config
from svqtui.control.attach import RemoteMonitor, RemoteRuntime
from svqtui.control.endpoint import unique_labels
from svqtui.engine import Link
from svqtui.engine.faults import Fault
from svqtui.errors import ControlError, SvqtuiError
from svqtui.eventlog import EventLog
from svqtui.model import (
    HOST_SEP,
    DeviceView,
    EngineStatus,
    LogEvent,
    QueueRow,
    Snapshot,
    SourceKind,
    VMView,
)
from svqtui.sources.errors import UnknownDevice
from svqtui.subscribers import Subscribers


def host_key(host: str, key: str) -> str:
    return f"{host}{HOST_SEP}{key}"


def host_snapshot(snap: Snapshot, host: str) -> Snapshot:
    """``snap`` of ``host`` with its keys, VM names and source names prefixed."""
    prefix = f"{host}{HOST_SEP}"
    devices: dict[str, DeviceView] = {}
    vms: list[VMView] = []
    for vm in snap.vms:
        devs = tuple(dataclasses.replace(d, key=prefix + d.key) for d in vm.devices)
        devices.update((d.key, d) for d in devs)
        vms.append(
            dataclasses.replace(vm, key=prefix + vm.key, name=f"{host}/{vm.name}", devices=devs)
        )
    rows = {
        prefix + key: dataclasses.replace(
            row, device_key=prefix + row.device_key, vm_name=f"{host}/{row.vm_name}"
        )
        for key, row in snap.rows.items()
    }
    sources = tuple(dataclasses.replace(s, name=f"{host} {s.name}") for s in snap.sources)
    return dataclasses.replace(snap, vms=tuple(vms), rows=rows, devices=devices, sources=sources)


def _reachable(part: Snapshot) -> bool:
    return not any(s.kind == SourceKind.REMOTE and not s.connected for s in part.sources)


def merge_engines(parts: list[Snapshot]) -> EngineStatus:
    """One status line for several engines: alive when every reachable host's
    engine is (a lost host shows as a down source, not as a dead engine);
    relays, queues and backlog summed; spin and CPU shares of the busiest."""
    reachable = [p.engine for p in parts if _reachable(p)]
    engines = [p.engine for p in parts]
    polling = next((e.polling for e in reachable if e.polling is not None), None)
    cpu = [e.cpu_share for e in reachable if e.cpu_share is not None]
    return EngineStatus(
        alive=bool(reachable) and all(e.alive for e in reachable),
        relays_per_s=sum(e.relays_per_s for e in reachable),
        queues=sum(e.queues for e in engines),
        backlog=sum(e.backlog for e in reachable),
        polling=polling,
        spinning=any(e.spinning for e in reachable),
        spin_share=max((e.spin_share for e in reachable), default=0.0),
        cpu_share=max(cpu) if cpu else None,
    )


def merge(parts: list[Snapshot], interval_s: float) -> Snapshot:
    """Host snapshots (already prefixed) as one."""
    rows: dict[str, QueueRow] = {}
    devices: dict[str, DeviceView] = {}
    for part in parts:
        rows.update(part.rows)
        devices.update(part.devices)
    return Snapshot(
        taken_at=max((p.taken_at for p in parts), default=time.time()),
        vms=tuple(vm for p in parts for vm in p.vms),
        rows=rows,
        engine=merge_engines(parts),
        sources=tuple(s for p in parts for s in p.sources),
        interval_s=interval_s,
        devices=devices,
    )


class MultiMonitor:
    """Several RemoteMonitors as one TargetMonitor: each host's snapshot is
    prefixed on its own feed thread as it arrives, then the newest of every
    host are merged and published."""

    def __init__(self, hosts: dict[str, RemoteMonitor], interval_s: float) -> None:
        self.hosts = hosts
        self.interval_s = interval_s
        self.latest: Snapshot | None = None
        self.merge_ms = 0.0  # the last prefix-and-merge's cost
        self._parts: dict[str, Snapshot] = {}
        self._lock = threading.Lock()
        self._subscribers = Subscribers()
        for host, monitor in hosts.items():
            monitor.subscribe(partial(self._arrived, host))

    @property
    def running(self) -> bool:
        return any(m.running for m in self.hosts.values())

    def start(self) -> None:
        for monitor in self.hosts.values():
            monitor.start()

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        return self._subscribers.add(callback)

    def refresh_soon(self, wait: bool = False, timeout: float = 5.0) -> Snapshot | None:
        """Every host fetches again now; unclocked (tests), in this thread."""
        for monitor in self.hosts.values():
            monitor.refresh_soon(wait, timeout)
        return self.latest if not self.running else None

    def set_interval(self, seconds: float) -> None:
        self.interval_s = seconds
        for monitor in self.hosts.values():
            monitor.set_interval(seconds)

    def _arrived(self, host: str, snap: Snapshot) -> None:
        t0 = time.perf_counter()
        part = host_snapshot(snap, host)
        with self._lock:
            self._parts[host] = part
            parts = [self._parts[h] for h in self.hosts if h in self._parts]
            merged = merge(parts, self.interval_s)
            self.latest = merged
            self.merge_ms = (time.perf_counter() - t0) * 1000
            self._subscribers.publish(merged)

    def close(self) -> None:
        for monitor in self.hosts.values():
            monitor.close()


class MultiRemoteRuntime:
    """The console's backend when attached to several headless svqtui."""

    def __init__(self, config: Config, targets: list[str]) -> None:
        if len(targets) < 2:
            raise ValueError("MultiRemoteRuntime is for two targets or more (else RemoteRuntime)")
        self.config = config
        self.log = EventLog()
        labels = unique_labels(targets)
        self.hosts: dict[str, RemoteRuntime] = {}
        for label, target in zip(labels, targets, strict=True):
            runtime = RemoteRuntime(config, target)
            runtime.log.subscribe(partial(self._copy_event, label))
            self.hosts[label] = runtime
        self.monitor = MultiMonitor(
            {label: rt.monitor for label, rt in self.hosts.items()}, config.refresh_s
        )

    @property
    def owns_devices(self) -> bool:
        return False

    def _copy_event(self, host: str, event: LogEvent) -> None:
        key = host_key(host, event.device_key) if event.device_key else None
        self.log.replay(dataclasses.replace(event, text=f"{host}: {event.text}", device_key=key))

    def check(self) -> None:
        """Reach every host once. Raises when none answers; a host that does
        not is retried every refresh like a lost one (its monitor says so in
        one log line)."""
        failed: list[ControlError] = []
        for runtime in self.hosts.values():
            try:
                runtime.check()
            except ControlError as err:
                failed.append(err)
        if len(failed) == len(self.hosts):
            raise failed[0]

    def _route(self, device_key: str) -> tuple[RemoteRuntime, str]:
        for host, runtime in self.hosts.items():
            prefix = f"{host}{HOST_SEP}"
            if device_key.startswith(prefix):
                return runtime, device_key[len(prefix) :]
        raise UnknownDevice(
            f"{device_key!r} names no attached host (hosts: {', '.join(self.hosts)})"
        )

    def set_shadow(self, device_key: str, on: bool) -> None:
        runtime, key = self._route(device_key)
        runtime.set_shadow(key, on)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        runtime, key = self._route(device_key)
        runtime.set_masked(key, queue, masked)

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        runtime, key = self._route(device_key)
        runtime.inject(key, queue, link)

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        runtime, key = self._route(device_key)
        runtime.set_fault(key, queue, fault)

    def reset(self, device_key: str | None = None) -> None:
        """One device, or every device of every host (each host is tried; the
        first failure is raised after)."""
        if device_key is not None:
            runtime, key = self._route(device_key)
            runtime.reset(key)
            return
        first: SvqtuiError | None = None
        for runtime in self.hosts.values():
            try:
                runtime.reset(None)
            except SvqtuiError as err:
                first = first or err
        if first is not None:
            raise first

    def close(self) -> None:
        self.monitor.close()
        for runtime in self.hosts.values():
            runtime.close()
