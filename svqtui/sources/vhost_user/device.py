"""One configured interposed device: its listening socket, its current connection, its view.

svqtui listens on the device's ``listen`` path (the socket QEMU's
``-chardev socket,path=`` connects to) and, for each front-end that connects,
connects to the real back-end at ``backend`` and forwards between them
(``interposer.Connection``). One front-end at a time: a second connection is
refused while one is live. When either side goes away the pair is closed and
listening goes on, so a reconnecting QEMU finds the device again.

Listening, accepting and every change run in the I/O loop thread;
``view()`` may be called from any thread and reads only published, frozen
state plus the engine's lock-free counters and the ring memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import socket
import stat
from typing import Any

from svqtui.engine import EngineSnapshot, Link
from svqtui.engine.faults import Fault, fault_fields
from svqtui.errors import SvqtuiError
from svqtui.model import (
    DeviceRole,
    DeviceView,
    MaskState,
    QueueView,
    ShadowVia,
    SourceKind,
    VMView,
)
from svqtui.sources.base import SourceContext
from svqtui.sources.ring_view import ring_fields
from svqtui.sources.vhost_user.codec import ProtocolFeature, feature_names
from svqtui.sources.vhost_user.errors import BackendUnavailable, ListenError, NotConnected
from svqtui.sources.vhost_user.handover import DeviceState, capture_connection, restore_connection
from svqtui.sources.vhost_user.interposer import Connection, ConnectionSnapshot
from svqtui.sources.vhost_user.rings import RingAccess
from svqtui.sources.vhost_user.settings import VhostUserDevice
from svqtui.sources.vhost_user.shadow import VringSnapshot
from svqtui.takeover.errors import TakeoverBusy, TakeoverRunning
from svqtui.takeover.state import FdSink
from svqtui.unix_socket import bind_private
from svqtui.virtio.inspect import RingReport, inspect_ring
from svqtui.virtio.requests import DeviceKind
from svqtui.virtio.split_ring import RingFeatures, RingState

CONNECT_TIMEOUT_S = 5.0
ACCEPT_BACKOFF_S = 0.5  # out of fds: stop accepting this long (no spinning)
OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
LABEL = "vhost-user"


def _unix_socket() -> socket.socket:
    return socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)


def claim_socket_path(path: str) -> None:
    """Remove a stale socket file at ``path``; refuse anything else in the way."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ListenError(f"{path} exists and is not a socket: move it away or change listen:")
    probe = _unix_socket()
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: a stale socket file
        return
    finally:
        probe.close()
    raise ListenError(f"another process already listens on {path}: stop it or change listen:")


def request_format(config: VhostUserDevice) -> DeviceKind:
    """The request format of a device's rings: its config ``kind``, else guessed
    from its names (e.g. "blk0", "/run/vhost-user-blk.sock"); other devices show
    raw chains."""
    if config.kind is not None:
        return DeviceKind(config.kind)
    return DeviceKind.from_name(f"{config.name} {config.listen} {config.backend}")


class DeviceInterposer:
    """Listens for QEMU on one device's socket and interposes each connection."""

    def __init__(self, config: VhostUserDevice, ctx: SourceContext) -> None:
        self.config = config
        self.ctx = ctx
        self.key = f"vu:{config.name}"
        self.shadow_wanted = config.shadow
        self._frozen = False  # a takeover froze it: actions are refused
        self.listening = False
        self.status = "not started"
        self._listener: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: Connection | None = None
        self._connecting = False
        self._published: ConnectionSnapshot | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.device_kind = request_format(config)
        self._rearm: dict[int, bool] = {}  # a takeover's released rings: watch_kick

    # -- listening ------------------------------------------------------------------

    async def listen(self) -> None:
        """Bind the listen path (removing a stale socket file) with the
        configured mode and owner, and accept QEMU."""
        self._loop = asyncio.get_running_loop()
        path = self.config.listen
        try:
            claim_socket_path(path)
            sock = _unix_socket()
            try:
                # mode and owner are final before listen(): nobody else connects
                # in between, whatever the umask (docs/design.md#limits).
                bind_private(sock, path, self.config.mode, self.config.uid, self.config.gid)
                sock.listen(4)
                sock.setblocking(False)
            except OSError:
                sock.close()
                raise
        except OSError as err:
            self.status = f"cannot listen on {path}: {err.strerror or err}"
            raise ListenError(f"{self.config.name}: {self.status}") from None
        except ListenError as err:
            self.status = str(err)
            raise
        self._listener = sock
        self._loop.add_reader(sock.fileno(), self._accept)
        self.listening = True
        self.status = f"waiting for QEMU on {path}"
        self.ctx.log.info(f"{self.config.name}: listening on {path}", device_key=self.key)

    def _accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as err:
            self._accept_failed(err)
            return
        if self._conn is not None or self._connecting:
            self.ctx.log.warning(
                f"{self.config.name}: refused a second front-end connection "
                "(one QEMU per vhost-user socket)",
                device_key=self.key,
            )
            sock.close()
            return
        self._connecting = True
        task = self._loop.create_task(self._open(sock))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _accept_failed(self, err: OSError) -> None:
        """accept() failed: log (rate-limited) and, when out of fds, stop
        accepting for a moment: the pending connection keeps the listen socket
        readable, and retrying at once would spin."""
        assert self._listener is not None and self._loop is not None
        out_of_fds = err.errno in OUT_OF_FDS
        why = "svqtui is out of file descriptors" if out_of_fds else "accept failed"
        self.ctx.log.error(
            f"{self.config.name}: cannot accept QEMU's connection: {why}"
            f" ({err.strerror or err}); retrying in {ACCEPT_BACKOFF_S:g} s",
            device_key=self.key,
            kind=f"{self.config.name} accept {err.errno}",
        )
        listener, loop = self._listener, self._loop
        loop.remove_reader(listener.fileno())

        def again() -> None:
            if self._listener is listener and self.listening:
                loop.add_reader(listener.fileno(), self._accept)

        loop.call_later(ACCEPT_BACKOFF_S, again)

    async def _open(self, frontend: socket.socket) -> None:
        """Connect to the back-end for a new front-end and start forwarding."""
        assert self._loop is not None
        self.status = f"QEMU connected; connecting to the back-end at {self.config.backend}"
        try:
            backend = _unix_socket()
        except OSError as err:  # out of fds
            frontend.close()
            self._connecting = False
            self.status = f"disconnected: cannot connect to the back-end: {err.strerror}"
            self.ctx.log.error(
                f"{self.config.name}: {self.status}; closed QEMU's connection",
                device_key=self.key,
                kind=f"{self.config.name} backend socket {err.errno}",
            )
            return
        backend.setblocking(False)
        try:
            try:
                await asyncio.wait_for(
                    self._loop.sock_connect(backend, self.config.backend), CONNECT_TIMEOUT_S
                )
            except (OSError, TimeoutError) as err:
                why = getattr(err, "strerror", None) or "timed out"
                raise BackendUnavailable(
                    f"back-end unreachable at {self.config.backend}: {why}"
                ) from None
        except asyncio.CancelledError:  # svqtui stops meanwhile
            backend.close()
            frontend.close()
            self._connecting = False
            raise
        except BackendUnavailable as err:
            backend.close()
            frontend.close()
            self._connecting = False
            self.status = f"disconnected: {err}"
            self.ctx.log.error(
                f"{self.config.name}: disconnected: {err}; closed QEMU's connection "
                "(start the back-end; QEMU reconnects if its chardev has reconnect=N)",
                device_key=self.key,
            )
            return
        conn = self._connection(frontend, backend, self.shadow_wanted)
        self._conn = conn
        self._connecting = False
        self.status = "connected"
        self._publish(conn)
        conn.start()
        self.ctx.log.info(
            f"{self.config.name}: QEMU connected; forwarding to {self.config.backend}"
            + (" (shadow mode on)" if conn.shadow else ""),
            device_key=self.key,
        )

    def _connection(
        self, frontend: socket.socket, backend: socket.socket, shadow: bool
    ) -> Connection:
        assert self._loop is not None
        conn = Connection(
            key=self.key,
            label=self.config.name,
            loop=self._loop,
            engine=self.ctx.engine,
            log=self.ctx.log,
            frontend=frontend,
            backend=backend,
            shadow=shadow,
            on_closed=lambda reason, error: self._closed(conn, reason, error),
            on_change=lambda: self._publish(conn),
            limits=self.config.limits,
        )
        return conn

    # -- a takeover (docs/design.md#takeover) -----------------------------------------

    def _live_conn(self) -> Connection | None:
        conn = self._conn
        return conn if conn is not None and not conn.closed else None

    async def freeze(self, deadline: float) -> None:
        """Stop accepting (the listen socket stays open: QEMU's connects
        wait in its backlog) and stop the connection at a message boundary;
        TakeoverBusy when ``deadline`` (loop time) passes first."""
        assert self._loop is not None
        self._frozen = True  # actions are refused from here (``_not_frozen``)
        if self._listener is not None:
            self._loop.remove_reader(self._listener.fileno())
        while self._connecting and self._loop.time() < deadline:
            await asyncio.sleep(0.01)
        if self._connecting:
            raise TakeoverBusy(
                f"{self.config.name}: still connecting to its back-end; takeover refused, try again"
            )
        conn = self._live_conn()
        if conn is not None:
            await conn.freeze(deadline)

    def thaw(self) -> None:
        """Undo ``freeze``: the connection reads again, QEMU may connect."""
        self._frozen = False
        conn = self._live_conn()
        if conn is not None:
            conn.thaw()
        if self._listener is not None and self._loop is not None and self.listening:
            self._loop.add_reader(self._listener.fileno(), self._accept)

    def capture(self, sink: FdSink) -> dict[str, Any]:
        """The frozen device's state (svqtui.sources.vhost_user.handover)."""
        if self._listener is None:
            raise TakeoverBusy(
                f"{self.config.name}: not listening ({self.status}): fix it or remove it "
                "from the configuration (reload) before a takeover"
            )
        conn = self._live_conn()
        return {
            "name": self.config.name,
            "listen_path": self.config.listen,
            "listen": sink.add(self._listener.fileno()),
            "shadow_wanted": self.shadow_wanted,
            "connection": None if conn is None else capture_connection(conn, sink),
        }

    def release_engine(self) -> dict[int, tuple[int, int]]:
        """The engine lets go of every relayed ring (no hand-back, fds kept);
        returns each such ring's (kick_base, call_base) with the final totals."""
        conn = self._live_conn()
        if conn is None:
            return {}
        self._rearm = {}
        bases: dict[int, tuple[int, int]] = {}
        for vring in conn.vrings.values():
            if vring.slot is None:
                continue
            self._rearm[vring.index] = vring.watches_kick(self.ctx.engine)
            vring.release(self.ctx.engine)
            bases[vring.index] = (vring.kick_base, vring.call_base)
        return bases

    def rearm(self) -> None:
        """Undo ``release_engine`` (the takeover failed before "released")."""
        conn = self._live_conn()
        rearm, self._rearm = self._rearm, {}
        if conn is None:
            return
        for index, watch in rearm.items():
            vring = conn.vrings.get(index)
            if vring is not None:
                try:
                    vring.arm(self.ctx.engine, watch)
                except SvqtuiError as err:
                    vring.error = f"not relayed after a failed takeover: {err}"
                    self.ctx.log.error(f"{self.config.name}: {vring.error}", self.key, index)

    async def adopt(self, state: DeviceState, fds: list[int]) -> None:
        """Serve what the old svqtui handed over (after "released"): the
        listen socket, the connection with its rings (relayed rings go into
        this engine, each call destination signalled once), then read."""
        self._loop = asyncio.get_running_loop()
        self.shadow_wanted = state.shadow_wanted
        listener = socket.socket(fileno=fds[state.listen])
        listener.setblocking(False)
        self._listener = listener
        cs = state.connection
        if cs is not None:
            frontend = socket.socket(fileno=fds[cs.fe.sock])
            backend = socket.socket(fileno=fds[cs.be.sock])
            conn = self._connection(frontend, backend, cs.shadow)
            restore_connection(conn, cs, fds)
            for vs in cs.vrings:
                vring = conn.vrings[vs.index]
                if vs.index in state.bases:
                    vring.kick_base, vring.call_base = state.bases[vs.index]
                if not vs.shadowed:
                    continue
                try:
                    vring.arm(self.ctx.engine, vs.watch_kick)
                except SvqtuiError as err:
                    vring.error = f"not relayed after the takeover: {err}"
                    self.ctx.log.error(f"{self.config.name}: {vring.error}", self.key, vs.index)
            self._conn = conn
            self.status = "connected"
            self._publish(conn)
            conn.start()
        self._loop.add_reader(listener.fileno(), self._accept)
        self.listening = True
        if cs is None:
            self.status = f"waiting for QEMU on {self.config.listen}"
            what = f"listening on {self.config.listen}"
        else:
            relayed = sum(v.shadowed for v in cs.vrings)
            what = (
                f"QEMU connected, shadow {'on' if cs.shadow else 'off'}, {relayed} ring(s) relayed"
            )
        self.ctx.log.info(f"{self.config.name}: taken over: {what}", device_key=self.key)

    def _closed(self, conn: Connection, reason: str, error: bool) -> None:
        if self._conn is conn:
            self._conn = None
            self._published = None
        self.status = f"disconnected: {reason}"
        text = f"{self.config.name}: disconnected: {reason}"
        if self.listening:
            text += "; waiting for QEMU to reconnect"
        if error:
            self.ctx.log.error(text, device_key=self.key)
        else:
            self.ctx.log.info(text, device_key=self.key)

    def _publish(self, conn: Connection) -> None:
        if self._conn is conn and not conn.closed:
            self._published = conn.snapshot()

    async def drain(self, reason: str) -> None:
        """Close the device for good, the gentle way (removed by a reload):
        stop accepting, give a shadowed connection QEMU's own eventfds back
        (shadow off) so the back-end holds no fd of svqtui's, then close."""
        self.listening = False
        if self._listener is not None and self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())
        conn = self._conn
        if conn is not None and conn.shadow and not conn.closed:
            try:
                await conn.set_shadow(False)
            except SvqtuiError as err:
                self.ctx.log.warning(
                    f"{self.config.name}: shadow off before closing failed: {err}",
                    device_key=self.key,
                )
        await self.close(reason)

    async def close(self, reason: str = "svqtui stopped") -> None:
        """Stop listening, close the connection, remove the socket file."""
        self.listening = False
        for task in list(self._tasks):
            task.cancel()
        if self._conn is not None:
            self._conn.close(reason)
        if self._listener is not None and self._loop is not None:
            self._loop.remove_reader(self._listener.fileno())  # idempotent
            self._listener.close()
            self._listener = None
            with contextlib.suppress(OSError):
                os.unlink(self.config.listen)
        self.listening = False
        self.status = "stopped"

    # -- actions (coroutines on the I/O loop) -----------------------------------

    def _live(self) -> Connection:
        if self._conn is None:
            raise NotConnected(f"{self.config.name}: QEMU is not connected ({self.status})")
        return self._conn

    def _not_frozen(self) -> None:
        """An action changes state a takeover has captured already (or is
        about to): refused while it runs, never applied here and lost."""
        if self._frozen:
            raise TakeoverRunning(
                f"{self.config.name}: a takeover of this svqtui is running; try again in a "
                "second (the new svqtui will answer)"
            )

    async def set_shadow(self, on: bool) -> None:
        """Switch shadow mode; also the mode the next connection starts in."""
        self._not_frozen()
        self.shadow_wanted = on
        if self._conn is None:
            self.ctx.log.info(
                f"{self.config.name}: shadow mode {'on' if on else 'off'} from the next connection",
                device_key=self.key,
            )
            return
        await self._conn.set_shadow(on)

    async def set_masked(self, queue: int, masked: bool) -> None:
        self._not_frozen()
        await self._live().set_masked(queue, masked)

    async def inject(self, queue: int, link: Link) -> None:
        self._not_frozen()
        await self._live().inject(queue, link)

    async def set_fault(self, queue: int, fault: Fault | None) -> None:
        self._not_frozen()
        await self._live().set_fault(queue, fault)

    async def reset(self) -> None:
        self._not_frozen()
        if self._conn is not None:
            await self._conn.reset()

    # -- the view (any thread) ---------------------------------------------------------

    def slots(self) -> list[int]:
        """The engine slots of this device's shadowed rings (any thread)."""
        snap = self._published
        return [v.slot for v in snap.vrings if v.slot is not None] if snap else []

    def ring_access(self, queue: int) -> RingAccess | None:
        """The published memory, layout and features of one ring, for
        svqtui.virtio (inspect_ring); None while unknown (not connected, ring
        not set up or stopped, size unknown) and for packed rings or IOVA ring
        addresses (``RingFeatures.from_bits(features).not_decoded`` says which)."""
        snap = self._published
        if snap is None:
            return None
        for v in snap.vrings:
            if v.index == queue:
                return _ring_access(snap, v)
        return None

    def inspect(self, snap: ConnectionSnapshot, v: VringSnapshot) -> RingReport | None:
        """One bounded read of a started ring (state, in-flight, oldest
        decoded), or None when it cannot be read as a split ring."""
        access = _ring_access(snap, v) if v.started else None
        if access is None:
            return None
        return inspect_ring(access.memory, access.layout, access.features, self.device_kind)

    def view(self, engine: EngineSnapshot) -> VMView:
        snap = self._published
        status = self.status
        connected = snap is not None
        queues = (
            tuple(_queue_view(v, snap, self.inspect(snap, v), engine) for v in snap.vrings)
            if snap
            else ()
        )
        notes = snap.notes if snap else ("guest vector masking happens inside QEMU for vhost-user",)
        device = DeviceView(
            key=self.key,
            name=self.config.name,
            kind="vhost-user",
            source=SourceKind.VHOST_USER,
            connected=connected,
            status=status,
            shadow=snap.shadow if snap else False,
            shadow_via=ShadowVia.ENGINE,
            shadow_note=_shadow_note(connected, self.shadow_wanted),
            queues=queues,
            socket_path=self.config.listen,
            role=DeviceRole.COUNTS,
            vhost_started=any(v.started for v in snap.vrings) if snap else None,
            features=f"{snap.features:#x}" if snap and snap.features is not None else None,
            protocol_features=(
                ", ".join(feature_names(snap.protocol_features, ProtocolFeature))
                if snap and snap.protocol_features is not None
                else None
            ),
            notes=notes,
            real=True,
        )
        return VMView(
            key=self.key,
            name=self.config.name,
            source=SourceKind.VHOST_USER,
            devices=(device,),
            connected=self.listening,
            status=status,
            label=LABEL,
        )


def _shadow_note(connected: bool, wanted: bool) -> str:
    note = "svqtui's engine relays the kick and call eventfds (interposer)"
    if not connected:
        note += f"; shadow {'on' if wanted else 'off'} when QEMU connects"
    return note


def _ring_access(snap: ConnectionSnapshot, v: VringSnapshot) -> RingAccess | None:
    layout = v.ring.layout if v.ring is not None else None
    if layout is None:
        return None
    return RingAccess(snap.memory, layout, snap.features or 0)


def _queue_view(
    v: VringSnapshot,
    snap: ConnectionSnapshot,
    report: RingReport | None,
    engine: EngineSnapshot,
) -> QueueView:
    avail = used = None
    ring_error: str | None = None
    extra: dict[str, object] = {"hold": v.hold}
    state: RingState | None = report.state if report is not None else None
    if report is not None and state is not None and None not in (state.avail_idx, state.used_idx):
        avail, used = state.avail_idx, state.used_idx  # one read of the ring headers
        extra.update(ring_fields(report))
    elif v.ring is not None:
        why = RingFeatures.from_bits(snap.features or 0).not_decoded
        if why is None:
            indices = v.ring.indices(snap.memory)
            avail, used = indices.avail, indices.used
            if indices.error is not None:
                ring_error = f"ring unreadable: {indices.error}"
        else:
            # A packed ring has no split ring's indices at those offsets, and IOVA ring
            # addresses are no user addresses: no index is read rather than a wrong one.
            extra["in_flight_note"] = why
        if state is not None:
            extra["ring"] = state  # says why (packed ring, IOVAs, unreadable)
    mask: MaskState | None = None
    if v.qemu_masked:
        mask = MaskState.MASKED
    elif v.call_fd is not None:
        mask = MaskState.UNMASKED
    if v.hold:  # the operator's mask, not yet in the engine (no fds yet)
        mask = MaskState.MASKED
    counters = engine.queues.get(v.slot) if v.slot is not None else None
    if counters is None:
        return QueueView(
            index=v.index,
            mask=mask,
            shadow=False,
            avail_idx=avail,
            used_idx=used,
            kick_fd=v.kick_fd,
            call_fd=v.call_fd,
            error=v.error or ring_error,
            ring_source="ring" if avail is not None or used is not None else None,
            **extra,  # type: ignore[arg-type]
        )
    if counters.call.masked:
        mask = MaskState.PENDING if counters.call.pending else MaskState.MASKED
    return QueueView(
        index=v.index,
        kicks=v.kick_base + counters.kick.notifications,
        calls=v.call_base + counters.call.notifications,
        mask=mask,
        shadow=True,
        avail_idx=avail,
        used_idx=used,
        last_kick_ns=counters.kick.last_ns,
        last_call_ns=counters.call.last_ns,
        held=counters.call.held,
        injected_kicks=counters.kick.injected,
        injected_calls=counters.call.injected,
        kick_fd=v.kick_fd,
        call_fd=v.call_fd,
        error=counters.error or v.error or ring_error,
        ring_source="ring" if avail is not None or used is not None else None,
        **fault_fields(counters),  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )
