"""One VM watched over QMP: connect, poll, listen to events, reconnect.

A ``VMSession`` is a task on the I/O loop (svqtui.io_loop: an asyncio
loop in its own thread, not the UI's). It runs there, and not on the
console's loop, because a frozen or slow console must not stall QMP polling
(nor the vhost-user forwarding that shares this loop), and because QMP events
(MIGRATION, STOP, DEVICE_DELETED...) must be read as they come, whatever the
UI is doing.

Each round sends its commands one at a time over one ``QMPConnection``, so a
VM never has more than one command in flight; actions (shadow toggle) queue
behind the same lock. After a round the session publishes an immutable
``VMView`` (one reference assignment), which ``collect()`` reads from any
thread without waiting. A round's interval is the configured poll interval,
stretched when needed so one VM never sees more than
``Timing.max_commands_per_s`` commands a second (see devices.py for which
queue commands a round sends).

Faults (missing socket, refused, garbage, closed mid-command, silent) end the
connection: the row turns disconnected ("disconnected: <reason>; retrying in
Ns"), one line goes to the event log when the reason changes, and the session
reconnects with exponential backoff capped at ``Timing.backoff_cap_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import psutil

from svqtui.eventlog import EventLog
from svqtui.model import DeviceView, MigrationView, ShadowVia, SourceKind, VMRole, VMView
from svqtui.sources.discovery import QemuCommandLine
from svqtui.sources.errors import ActionUnsupported, UnknownDevice
from svqtui.sources.qmp.client import BoundedListener, QMPConnection
from svqtui.sources.qmp.devices import (
    CMD_VHOST,
    NEVER_TO_VHOST,
    REQUIRED_COMMANDS,
    SHADOW_COMMAND,
    DeviceInfo,
    DeviceState,
    QueueCmd,
    device_ident,
    device_kind,
    device_view,
    is_vhost_kind,
    is_vhost_user_kind,
    plan_queue_commands,
    proxy_path,
    shadow_capability,
    socket_path_from_addr,
    socket_path_from_filename,
)
from svqtui.sources.qmp.errors import QMPCommandFailed, QMPError, VMDisconnected
from svqtui.sources.qmp.migration import EVENTS, event_line, is_running, migration_view
from svqtui.text_safety import JSONTooDeep, safe_json, safe_name

MIN_QUEUE_BUDGET = 4


@dataclass(frozen=True, slots=True)
class Timing:
    """How often and how patiently a session talks to its VM."""

    poll_s: float = 1.0
    connect_timeout_s: float = 5.0
    command_timeout_s: float = 10.0
    backoff_first_s: float = 0.5
    backoff_cap_s: float = 10.0
    topology_every_s: float = 5.0  # re-list devices (hotplug has no event in 7.2)
    migration_idle_every_s: float = 2.0  # query-migrate when no migration runs
    max_commands_per_s: float = 60.0  # per VM, whatever poll_s says


@dataclass(frozen=True, slots=True)
class Target:
    """Where a VM's QMP socket is and what is known about it beforehand."""

    path: str
    name: str
    configured: bool  # from config.yaml (kept while unreachable) or discovered
    name_is_guess: bool = False  # a name made from the socket path: query-name may replace it
    cmdline: QemuCommandLine | None = None
    pid: int | None = None  # from discovery


class VMSession:
    """The QMP view of one VM, kept current by a task on the I/O loop."""

    def __init__(
        self,
        target: Target,
        log: EventLog,
        timing: Timing,
        claim_name: Callable[[VMSession, str], bool] | None = None,
    ) -> None:
        self.target = target
        self.name = target.name
        self.key = f"qmp:{target.path}"
        self._log = log
        self._timing = timing
        self._claim_name = claim_name
        self._conn: QMPConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._devices: dict[str, DeviceState] = {}
        self._round = 0
        self._rounds_ok = 0  # rounds completed, over every connection
        self._served: dict[QueueCmd, int] = {}  # queue command -> round last sent
        self._version = "?"
        self._runstate = "?"
        self._runstate_due = True
        self._topology_due = True
        self._last_topology = float("-inf")
        self._missing: list[str] = []
        self._shadow_command = False
        self._migration: MigrationView | None = None
        self._migration_passes: int | None = None
        self._migration_due = True
        self._last_migration_poll = float("-inf")
        self._logged_migration: str | None = None
        self._reason: str | None = None
        self._ever_connected = False
        self.answered = False  # the first connection attempt has an outcome
        self._pid: int | None = None
        self._proc: psutil.Process | None = None
        self._cpu: float | None = None
        self._rss: int | None = None
        self._last_sample = float("-inf")
        self.process_gone_since: float | None = None
        self.view = VMView(
            key=self.key,
            name=self.name,
            source=SourceKind.QMP,
            connected=False,
            status="connecting",
            pid=target.pid,
            label=self._label(),
            role=VMRole.FOUND,
        )

    # -- life cycle (I/O loop only) -----------------------------------------

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"svqtui-qmp:{self.target.path}"
        )

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()

    def poke(self) -> None:
        """Skip the current wait: reconnect or poll now."""
        if self._wake is not None:
            self._wake.set()

    def retarget(self, target: Target) -> None:
        """New facts from discovery (pid, command line); poke on a new pid."""
        new_pid = target.pid is not None and target.pid != self.target.pid
        self.target = dataclasses.replace(
            target, name=self.target.name, name_is_guess=self.target.name_is_guess
        )
        self.process_gone_since = None
        if new_pid and (self._conn is None or not self._conn.connected):
            self.poke()

    def process_gone(self, now: float) -> None:
        if self.process_gone_since is None:
            self.process_gone_since = now

    @property
    def connected(self) -> bool:
        return self._conn is not None and self._conn.connected

    # -- the main loop ------------------------------------------------------------

    async def _run(self) -> None:
        failures = 0
        while True:
            conn = QMPConnection(
                self.target.path,
                self.name,
                connect_timeout_s=self._timing.connect_timeout_s,
                command_timeout_s=self._timing.command_timeout_s,
            )
            rounds_before = self._rounds_ok
            try:
                await conn.open()
                self._conn = conn
                await self._serve(conn)
                reason = "the QMP session ended"
            except QMPError as err:
                reason = str(err)
            except Exception as err:  # a malformed reply must not end the watch
                reason = f"unexpected reply or failure ({type(err).__name__}: {err})"
            finally:
                self._conn = None
                await conn.close()
            # Backoff restarts only after a session that worked: a peer that
            # accepts and then breaks is retried no faster than one that refuses.
            failures = 1 if self._rounds_ok > rounds_before else failures + 1
            delay = min(
                self._timing.backoff_cap_s, self._timing.backoff_first_s * 2 ** (failures - 1)
            )
            self._publish_disconnected(reason, delay)
            if reason != self._reason:
                self._reason = reason
                self._log.error(
                    f"qmp {self.name}: {reason}; retrying"
                    f" (backoff up to {self._timing.backoff_cap_s:g}s)"
                )
            await self._sleep(delay)

    async def _serve(self, conn: QMPConnection) -> None:
        self._version = conn.version
        commands = await conn.execute("query-commands")
        names = {c.get("name") for c in commands if isinstance(c, Mapping)}
        self._missing = [c for c in REQUIRED_COMMANDS if c not in names]
        self._shadow_command = SHADOW_COMMAND in names
        if self.target.name_is_guess:
            await self._adopt_qemu_name(conn)
        pid = conn.pid or self.target.pid
        again = "re" if self._ever_connected else ""
        self._log.info(
            f"qmp {self.name}: {again}connected to {self.target.path}"
            f" (QEMU {self._version}{f', pid {pid}' if pid else ''})"
        )
        if self._missing:
            self._log.warning(f"qmp {self.name}: {self._missing_text()}")
        self._ever_connected = True
        self._reason = None
        self._runstate_due = self._topology_due = self._migration_due = True
        self._devices.clear()
        self._served.clear()
        self._round = 0  # the first round is a detail round
        listener = conn.listen(EVENTS)
        events = asyncio.get_running_loop().create_task(self._consume(listener))
        try:
            loop = asyncio.get_running_loop()
            while True:
                sent = conn.commands_sent
                await self._round_once(conn, loop.time())
                self._rounds_ok += 1
                self._publish()
                # The rate floor holds even when an event asks for a round now.
                floor = (conn.commands_sent - sent) / self._timing.max_commands_per_s
                await asyncio.sleep(floor)
                await self._sleep(self._timing.poll_s - floor)
        finally:
            events.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await events

    async def _adopt_qemu_name(self, conn: QMPConnection) -> None:
        try:
            reply = await conn.execute("query-name")
        except QMPCommandFailed:
            return
        name = reply.get("name") if isinstance(reply, Mapping) else None
        if not isinstance(name, str) or not name:
            return
        name = safe_name(name)
        if name == self.name:
            return
        if self._claim_name is None or self._claim_name(self, name):
            self.name = name
            self.target = dataclasses.replace(self.target, name=name, name_is_guess=False)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if poked."""
        wake = self._wake
        if seconds <= 0:
            if wake is not None:
                wake.clear()
            return
        if wake is None:
            await asyncio.sleep(seconds)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    # -- one poll round ---------------------------------------------------------

    async def _round_once(self, conn: QMPConnection, now: float) -> None:
        self._round += 1
        if self._runstate_due:
            await self._refresh_runstate(conn)
        if not self._missing:
            if self._topology_due or now - self._last_topology >= self._timing.topology_every_s:
                await self._refresh_topology(conn, now)
            devices = list(self._devices.values())
            for dev in devices:
                await self._poll_status(conn, dev)
            budget = max(
                MIN_QUEUE_BUDGET,
                int(self._timing.max_commands_per_s * self._timing.poll_s) - len(devices) - 2,
            )
            plan = plan_queue_commands(devices, self._round, budget, self._served)
            for cmd in plan:
                await self._poll_queue(conn, cmd)
        if (
            self._migration_due
            or is_running(self._migration)
            or now - self._last_migration_poll >= self._timing.migration_idle_every_s
        ):
            await self._poll_migration(conn, now)
        self._sample_process(now, conn.pid)

    async def _refresh_runstate(self, conn: QMPConnection) -> None:
        try:
            reply = await conn.execute("query-status")
        except QMPCommandFailed as err:
            reply = {"status": f"unknown ({err.desc})"}
        status = reply.get("status") if isinstance(reply, Mapping) else None
        self._runstate = status if isinstance(status, str) else "?"
        self._runstate_due = False

    async def _refresh_topology(self, conn: QMPConnection, now: float) -> None:
        try:
            listing = await conn.execute("x-query-virtio")
        except QMPCommandFailed:
            self._topology_due = False  # keep what is known; try again later
            self._last_topology = now
            return
        present: dict[str, str] = {}
        for entry in listing if isinstance(listing, list) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                present[entry["path"]] = safe_name(entry.get("name", "virtio"))
        for path in list(self._devices):
            if path not in present:
                del self._devices[path]
        for path, vname in present.items():
            if path not in self._devices:
                self._devices[path] = DeviceState(await self._describe(conn, path, vname))
        self._topology_due = False
        self._last_topology = now

    async def _qom_get(self, conn: QMPConnection, path: str, prop: str) -> Any:
        try:
            return await conn.execute("qom-get", {"path": path, "property": prop})
        except QMPCommandFailed:
            return None

    async def _describe(self, conn: QMPConnection, path: str, vname: str) -> DeviceInfo:
        qom_type = await self._qom_get(conn, path, "type")
        kind = device_kind(qom_type if isinstance(qom_type, str) else None, vname)
        chardev: str | None = None
        if is_vhost_user_kind(kind):
            value = await self._qom_get(conn, path, "chardev")
            if not isinstance(value, str) or not value:
                value = await self._qom_get(conn, proxy_path(path), "chardev")
            chardev = value if isinstance(value, str) and value else None
        elif kind == "virtio-net" and self.target.cmdline is not None:
            netdev = await self._qom_get(conn, path, "netdev")
            if isinstance(netdev, str):
                chardev = self.target.cmdline.netdev_chardevs.get(netdev)
        socket_path = await self._chardev_path(conn, chardev) if chardev else None
        return DeviceInfo(
            path=path,
            virtio_name=vname,
            ident=device_ident(path),
            kind=kind,
            socket_path=socket_path,
            chardev=chardev,
        )

    async def _chardev_path(self, conn: QMPConnection, chardev: str) -> str | None:
        path = socket_path_from_addr(await self._qom_get(conn, f"/chardevs/{chardev}", "addr"))
        if path is None:
            try:
                listing = await conn.execute("query-chardev")
            except QMPCommandFailed:
                listing = []
            for entry in listing if isinstance(listing, list) else ():
                if isinstance(entry, Mapping) and entry.get("label") == chardev:
                    path = socket_path_from_filename(str(entry.get("filename", "")))
        if path is None and self.target.cmdline is not None:
            path = self.target.cmdline.chardev_paths.get(chardev)
        if path is not None and not os.path.isabs(path):
            path = self._absolute(path, conn.pid or self.target.pid)
        return path

    @staticmethod
    def _absolute(path: str, pid: int | None) -> str:
        """QEMU resolves relative socket paths against its own working directory."""
        if pid is None:
            return path
        try:
            return os.path.normpath(os.path.join(psutil.Process(pid).cwd(), path))
        except (psutil.Error, OSError):
            return path

    async def _poll_status(self, conn: QMPConnection, dev: DeviceState) -> None:
        try:
            reply = await conn.execute("x-query-virtio-status", {"path": dev.info.path})
        except QMPCommandFailed as err:
            dev.status = None
            dev.error = f"x-query-virtio-status failed: {err.desc}"
            self._topology_due = True  # most likely unplugged
            return
        dev.status = reply if isinstance(reply, Mapping) else None
        dev.error = None if dev.status is not None else "x-query-virtio-status: unexpected reply"
        if not dev.vhost_started:
            dev.vhost_rings.clear()
            for key in [k for k in dev.queue_errors if k[1] == CMD_VHOST]:
                del dev.queue_errors[key]

    async def _poll_queue(self, conn: QMPConnection, cmd: QueueCmd) -> None:
        dev = self._devices.get(cmd.path)
        if dev is None:
            return
        if dev.vhost_capable and cmd.command in NEVER_TO_VHOST:
            return  # would stop a vhost ring or break the device (devices.py)
        q = cmd.queue
        store = dev.vhost_rings if cmd.command == CMD_VHOST else dev.queue_status
        try:
            reply = await conn.execute(cmd.command, {"path": cmd.path, "queue": q})
        except QMPCommandFailed as err:
            store.pop(q, None)
            if cmd.command == CMD_VHOST:
                dev.queue_errors[(q, cmd.command)] = f"vhost ring: {err.desc}"
            else:
                dev.queue_errors[(q, cmd.command)] = f"queue status: {err.desc}"
            return
        if isinstance(reply, Mapping):
            store[q] = reply
            dev.queue_errors.pop((q, cmd.command), None)

    async def _poll_migration(self, conn: QMPConnection, now: float) -> None:
        try:
            reply = await conn.execute("query-migrate")
        except QMPCommandFailed:
            reply = None
        self._migration = migration_view(reply, self._migration_passes)
        self._migration_due = False
        self._last_migration_poll = now
        status = self._migration.status if self._migration else None
        if status is not None and status != self._logged_migration:
            self._logged_migration = status
            level = "error" if status == "failed" else "info"
            self._log.add(level, f"qmp {self.name}: migration {status}")

    def _sample_process(self, now: float, peer_pid: int | None) -> None:
        pid = peer_pid or self.target.pid
        if now - self._last_sample < 1.0 and pid == self._pid:
            return
        self._last_sample = now
        try:
            if pid != self._pid or self._proc is None:
                self._pid = pid
                self._proc = psutil.Process(pid) if pid else None
                self._cpu = None
                if self._proc is not None:
                    self._proc.cpu_percent(None)  # primes the counter
            elif self._proc is not None:
                self._cpu = self._proc.cpu_percent(None)
            self._rss = self._proc.memory_info().rss if self._proc is not None else None
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            self._proc = None
            self._cpu = self._rss = None

    # -- events -------------------------------------------------------------------

    async def _consume(self, listener: BoundedListener) -> None:
        async for raw in listener:
            dropped = listener.take_dropped()
            if dropped:
                self._log.warning(
                    f"qmp {self.name}: {dropped:,} events dropped (QEMU sent them faster"
                    " than svqtui reads)",
                    kind=f"qmp {self.name} dropped events",
                )
            try:
                event = safe_json(raw)
            except JSONTooDeep as err:
                self._log.warning(
                    f"qmp {self.name}: an event was ignored: {err}",
                    kind=f"qmp {self.name} bad events",
                )
                continue
            if isinstance(event, Mapping):
                self._on_event(event)

    def _on_event(self, event: Mapping[str, Any]) -> None:
        name = event.get("event")
        data = event.get("data")
        data = data if isinstance(data, Mapping) else {}
        line = event_line(event)
        if name == "MIGRATION":
            status = data.get("status")
            self._migration_due = True
            if isinstance(status, str):
                self._migration = (
                    dataclasses.replace(self._migration, status=status)
                    if self._migration is not None
                    else MigrationView(status=status)
                )
                if status == self._logged_migration:
                    line = None
                self._logged_migration = status
        elif name == "MIGRATION_PASS":
            value = data.get("pass")
            self._migration_passes = value if isinstance(value, int) else None
        elif name in ("STOP", "RESUME"):
            self._runstate_due = True
        elif name == "DEVICE_DELETED":
            self._topology_due = True
        if line is not None:
            level, text = line
            gone = data.get("device") if name == "DEVICE_DELETED" else None
            key = f"qmp:{self.name}/{gone}" if isinstance(gone, str) and gone else None
            kind = "STOP/RESUME" if name in ("STOP", "RESUME") else str(name)
            self._log.add(
                level, f"qmp {self.name}: {text}", device_key=key, kind=f"qmp {self.name} {kind}"
            )
        self.poke()

    # -- actions ------------------------------------------------------------------

    def _device(self, ident: str) -> DeviceState:
        for dev in self._devices.values():
            if dev.info.ident == ident:
                return dev
        raise UnknownDevice(f"qmp {self.name}: no device {ident!r} (was it unplugged?)")

    def _name_shared(self, dev: DeviceState) -> bool:
        same = [d for d in self._devices.values() if d.info.virtio_name == dev.info.virtio_name]
        return len(same) > 1

    async def set_shadow(self, ident: str, on: bool) -> None:
        conn = self._conn
        if conn is None or not conn.connected:
            raise VMDisconnected(
                f"qmp {self.name}: not connected ({self._reason or 'connecting'}); try again"
                " when its row is connected"
            )
        dev = self._device(ident)
        via, note = shadow_capability(dev, self._shadow_command, self._name_shared(dev))
        if via is not ShadowVia.QMP:
            raise ActionUnsupported(f"{self.name}/{ident}: no shadow mode through QMP: {note}")
        await conn.execute(SHADOW_COMMAND, {"name": dev.info.virtio_name, "enable": on})
        dev.shadow = on
        self._log.info(
            f"qmp {self.name}: shadow {'on' if on else 'off'} for {ident} ({SHADOW_COMMAND})",
            device_key=f"qmp:{self.name}/{ident}",
        )
        self._publish()

    # -- publishing ---------------------------------------------------------------

    def _label(self) -> str:
        return "qmp" if self.target.configured else "discovered"

    def _missing_text(self) -> str:
        return (
            f"QEMU {self._version} lacks {', '.join(self._missing)}"
            " (QEMU 7.2 or later shows virtio devices): no devices shown"
        )

    def _publish(self) -> None:
        counts = Counter(d.info.virtio_name for d in self._devices.values())
        devices: list[DeviceView] = [
            device_view(
                self.name,
                dev,
                connected=True,
                shadow_command=self._shadow_command,
                name_shared=counts[dev.info.virtio_name] > 1,
            )
            for dev in self._devices.values()
        ]
        status = self._runstate
        if self._missing:
            status = f"{status}; {self._missing_text()}"
        else:
            vhost = sum(1 for d in self._devices.values() if is_vhost_kind(d.info.kind))
            status = (
                f"{status} (QEMU {self._version}, {len(devices)} virtio, {vhost} vhost-capable)"
            )
        self.view = VMView(
            key=self.key,
            name=self.name,
            source=SourceKind.QMP,
            devices=tuple(devices),
            connected=True,
            status=status,
            pid=self._pid,
            cpu_percent=self._cpu,
            rss_bytes=self._rss,
            migration=self._migration,
            label=self._label(),
            role=VMRole.FOUND,
        )
        self.answered = True  # after the view: an answered session has one to show

    def _publish_disconnected(self, reason: str, delay: float) -> None:
        self._sample_process(float("inf"), None)
        self.view = VMView(
            key=self.key,
            name=self.name,
            source=SourceKind.QMP,
            connected=False,
            status=f"disconnected: {reason}; retrying in {delay:g}s",
            pid=self._pid,
            cpu_percent=self._cpu,
            rss_bytes=self._rss,
            migration=self._migration,
            label=self._label(),
            role=VMRole.FOUND,
        )
        self.answered = True
