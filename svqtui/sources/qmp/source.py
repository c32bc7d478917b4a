"""The QMP source: every VM reachable over QMP, configured or found on the host.

``QMPSource`` owns the set of ``VMSession``s (one per QMP socket: the sockets
of config.yaml ``qmp.sockets``, plus those that discovery finds on QEMU
command lines when ``qmp.discover`` is on), the rediscovery task (a process
scan every ``rediscover_s`` seconds, in a worker thread, never on
``collect()``), and the routing of actions from other threads onto the
I/O loop.

Life of a row: a configured socket stays listed, disconnected while its QEMU
is down; a discovered VM whose process has gone from the process table for
``drop_after_s`` is dropped; a restarted QEMU on the same socket is picked up
again (a new pid pokes its session to reconnect at once). A QEMU whose command
line has no QMP unix socket is listed too, disconnected, saying why.

Sessions and the table of rows are replaced, never mutated, in the loop
thread; ``collect()`` reads them from any thread without locks.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

import psutil

from svqtui.engine import EngineSnapshot, Link
from svqtui.io_loop import IOLoop
from svqtui.model import SourceKind, SourceStatus, VMRole, VMView
from svqtui.sources import discovery
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.discovery import DiscoveredVM
from svqtui.sources.errors import ActionUnsupported, UnknownDevice
from svqtui.sources.qmp.errors import QMPConnectionLost
from svqtui.sources.qmp.session import Target, Timing, VMSession
from svqtui.sources.qmp.settings import QMPConfig

ScanFn = Callable[[int | None], list[DiscoveredVM]]

HINT_ADD_QMP = (
    "add -qmp unix:PATH,server=on,wait=off to its command line, or list it in qmp.sockets"
)


def _key(path: str) -> str:
    return os.path.realpath(path)


def _name_from_path(path: str) -> str:
    base = os.path.basename(path.rstrip("/")) or path
    for suffix in (".sock", ".socket", ".qmp", ".monitor"):
        base = base.removesuffix(suffix)
    return base or path


class QMPSource(Source):
    """VMs and their virtio devices as QEMU's QMP monitors describe them."""

    kind = SourceKind.QMP
    name = "qmp"

    def __init__(
        self,
        config: QMPConfig,
        *,
        timing: Timing | None = None,
        rediscover_s: float = 5.0,
        drop_after_s: float = 30.0,
        scan: ScanFn = discovery.scan,
    ) -> None:
        self.config = config
        self._timing = timing or Timing(poll_s=config.poll_s)
        self._rediscover_s = rediscover_s
        self._drop_after_s = drop_after_s
        self._scan = scan
        self._ctx: SourceContext | None = None
        self._sessions: dict[str, VMSession] = {}  # realpath of the socket -> session
        self._unreachable: dict[int, VMView] = {}  # pid -> row of a QEMU without QMP
        self._procs: dict[int, psutil.Process] = {}  # for CPU% of unreachable QEMUs
        self._discovery: asyncio.Task[None] | None = None
        self._scan_failed = False
        self._scanned = False  # discovery's first scan has an outcome

    # -- Source ---------------------------------------------------------------

    def start(self, ctx: SourceContext) -> None:
        self._ctx = ctx
        sessions: dict[str, VMSession] = {}
        for sock in self.config.sockets:
            path = os.path.abspath(sock.path)
            if _key(path) in sessions:
                continue
            base = sock.name or _name_from_path(path)
            target = Target(
                path=path,
                name=self._unique_name(base, sessions),
                configured=True,
                name_is_guess=sock.name is None,
            )
            sessions[_key(path)] = VMSession(target, ctx.log, self._timing, self._claim_name)
        self._sessions = sessions
        ctx.loop.submit(self._start_in_loop())

    def stop(self) -> None:
        ctx, self._ctx = self._ctx, None
        if ctx is None or not ctx.loop.running:
            return
        with contextlib.suppress(Exception):
            ctx.loop.call(self._shutdown(), 15.0, what="qmp: shut down the sessions")

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        return self._views()

    def _views(self) -> list[VMView]:
        sessions = self._sessions
        unreachable = self._unreachable
        return [s.view for s in sessions.values()] + list(unreachable.values())

    def status(self) -> SourceStatus:
        views = self._views()
        up = sum(1 for v in views if v.connected)
        parts = [f"{up}/{len(views)} VMs connected"]
        if self.config.discover:
            parts.append(f"discovering every {self._rediscover_s:g}s")
        answered = (self._scanned or not self.config.discover) and all(
            s.answered for s in self._sessions.values()
        )
        return SourceStatus(
            self.name, self.kind, up > 0 or not views, ", ".join(parts), answered=answered
        )

    def owns(self, device_key: str) -> bool:
        return any(d.key == device_key for s in self._sessions.values() for d in s.view.devices)

    def set_shadow(self, device_key: str, on: bool) -> None:
        session, ident = self._find(device_key)
        loop = self._loop()
        what = f"qmp: shadow {'on' if on else 'off'} for {device_key}"
        loop.call(session.set_shadow(ident, on), self._action_timeout_s(), what=what)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        self._find(device_key)
        raise ActionUnsupported(
            f"{device_key}: QMP cannot mask a queue's guest notifier (QEMU keeps masking in"
            " KVM); put svqtui's interposer on this device's vhost-user socket to hold calls"
        )

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        self._find(device_key)
        raise ActionUnsupported(
            f"{device_key}: QMP cannot send a kick or call; put svqtui's interposer on"
            " this device's vhost-user socket to inject notifications"
        )

    def reset(self, device_key: str | None = None) -> None:
        """Nothing to zero: QMP devices have no counters."""

    # -- helpers for other threads --------------------------------------------------

    def _find(self, device_key: str) -> tuple[VMSession, str]:
        for session in self._sessions.values():
            for dev in session.view.devices:
                if dev.key == device_key:
                    return session, dev.name
        raise UnknownDevice(f"qmp: no device {device_key!r} (is its VM connected?)")

    def _loop(self) -> IOLoop:
        if self._ctx is None:
            raise QMPConnectionLost("qmp: the source is not running")
        return self._ctx.loop

    def _action_timeout_s(self) -> float:
        """How long an action may take: its QMP commands, and a reconnect."""
        return self._timing.command_timeout_s * 2 + 5.0

    # -- the I/O loop side ---------------------------------------------------------

    async def _start_in_loop(self) -> None:
        for session in self._sessions.values():
            session.start()
        if self.config.discover:
            self._discovery = asyncio.get_running_loop().create_task(
                self._discover_forever(), name="svqtui-qmp-discovery"
            )

    async def _shutdown(self) -> None:
        task, self._discovery = self._discovery, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        sessions = list(self._sessions.values())
        await asyncio.gather(*(s.stop() for s in sessions), return_exceptions=True)

    async def _discover_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                found = await loop.run_in_executor(None, self._scan, os.getpid())
            except (psutil.Error, OSError) as err:
                if not self._scan_failed and self._ctx is not None:
                    self._ctx.log.error(f"qmp: cannot scan for QEMU processes: {err}")
                self._scan_failed = True
            else:
                self._scan_failed = False
                await self._apply(found, loop.time())
            self._scanned = True  # after _apply: its sessions are there to wait for
            await asyncio.sleep(self._rediscover_s)

    async def _apply(self, found: list[DiscoveredVM], now: float) -> None:
        """Match scanned processes to sessions; add, retarget and drop sessions."""
        ctx = self._ctx
        if ctx is None:
            return
        sessions = dict(self._sessions)
        seen: set[str] = set()
        unreachable: dict[int, VMView] = {}
        for vm in found:
            keys = [_key(p) for p in vm.qmp_sockets]
            match = next((k for k in keys if k in sessions), None)
            if match is not None:  # a VM already watched (configured, or found before)
                seen.add(match)
                old = sessions[match]
                old.retarget(
                    Target(
                        path=old.target.path,
                        name=old.name,
                        configured=old.target.configured,
                        cmdline=vm.cmdline,
                        pid=vm.pid,
                    )
                )
                continue
            path = discovery.preferred_qmp_socket(vm.qmp_sockets)
            if path is None:
                unreachable[vm.pid] = self._unreachable_view(vm)
                continue
            key = _key(path)
            seen.add(key)
            target = Target(
                path=path,
                name=self._unique_name(vm.name or f"qemu-{vm.pid}", sessions),
                configured=False,
                cmdline=vm.cmdline,
                pid=vm.pid,
            )
            session = VMSession(target, ctx.log, self._timing, self._claim_name)
            sessions[key] = session
            session.start()
            ctx.log.info(f"qmp: found QEMU pid {vm.pid} ({target.name}) with QMP at {path}")
        for key, session in list(sessions.items()):
            if key in seen:
                continue
            session.process_gone(now)
            gone = session.process_gone_since
            expired = gone is not None and now - gone >= self._drop_after_s
            if expired and not session.target.configured:
                del sessions[key]
                await session.stop()
                ctx.log.info(f"qmp {session.name}: QEMU process gone; row dropped")
        self._procs = {pid: p for pid, p in self._procs.items() if pid in unreachable}
        self._sessions = sessions
        self._unreachable = unreachable

    def _unreachable_view(self, vm: DiscoveredVM) -> VMView:
        if vm.cmdline.fd_monitors:
            why = (
                "its QMP monitor is on an inherited fd (libvirt?), which svqtui cannot open; "
                + HINT_ADD_QMP
            )
        else:
            why = "no QMP unix socket on its command line; " + HINT_ADD_QMP
        cpu: float | None = None
        rss: int | None = None
        try:
            proc = self._procs.get(vm.pid)
            if proc is None:
                proc = self._procs[vm.pid] = psutil.Process(vm.pid)
                proc.cpu_percent(None)
            else:
                cpu = proc.cpu_percent(None)
            rss = proc.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
        return VMView(
            key=f"qmp:pid:{vm.pid}",
            name=vm.name or f"qemu-{vm.pid}",
            source=SourceKind.QMP,
            connected=False,
            status=why,
            pid=vm.pid,
            cpu_percent=cpu,
            rss_bytes=rss,
            label="discovered",
            role=VMRole.FOUND,
        )

    # -- names ------------------------------------------------------------------------

    def _unique_name(self, base: str, sessions: dict[str, VMSession]) -> str:
        taken = {s.name for s in sessions.values()}
        if base not in taken:
            return base
        n = 2
        while f"{base}#{n}" in taken:
            n += 1
        return f"{base}#{n}"

    def _claim_name(self, session: VMSession, name: str) -> bool:
        return all(s.name != name for s in self._sessions.values() if s is not session)
