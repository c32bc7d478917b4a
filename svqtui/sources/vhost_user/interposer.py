"""One interposed vhost-user connection: QEMU (front-end) <-> svqtui <-> back-end.

Every message goes through unchanged, both ways, fds and replies included,
except what shadow mode needs:

* SET_VRING_KICK / SET_VRING_CALL while shadowed: the back-end gets svqtui's
  eventfds, the engine gets the front-end's (``shadow.Vring``). A new call fd
  from the front-end while shadowed becomes the engine's call destination and
  the message is still forwarded, with the engine's call fd, flags unchanged:
  the back-end sees exactly the message sequence it would see without
  svqtui (some back-ends treat SET_VRING_CALL as a step of ring setup), and a
  need_reply gets the back-end's own answer, in order with any other reply
  in flight. Answering the front-end ourselves could reorder replies and
  would hide a back-end's failure.
* GET_PROTOCOL_FEATURES replies: HOST_NOTIFIER and INBAND_NOTIFICATIONS are
  cleared (they would bypass the eventfds), and so is INFLIGHT_SHMFD: with it,
  libvhost-user back-ends rescan their in-flight table on every SET_VRING_KICK
  (vu_check_queue_inflights) and would replay in-flight requests when shadow
  mode swaps the kick fd of a running ring.
* The back-end channel (SET_BACKEND_REQ_FD) is passed through as an fd: the
  back-end's own requests to QEMU travel on it and bypass svqtui.

Shadow on/off sends the back-end SET_VRING_CALL/KICK messages of its own,
only between front-end messages and only while no front-end request awaits
its reply; front-end messages wait meanwhile. With REPLY_ACK negotiated the
injected messages carry need_reply and svqtui consumes the acks itself;
otherwise a GET_FEATURES round trip proves the back-end has applied them.
A stopped ring (GET_VRING_BASE) is never sent SET_VRING_KICK: that would
restart it; its next start picks the right fd.

One reader per eventfd: a kick eventfd read by both the back-end and the
engine makes one of them read nothing when woken (libvhost-user, in
qemu-storage-daemon, panics on that EAGAIN). So shadow on gives the back-end
svqtui's kick fd first and the engine starts reading QEMU's only after the
back-end's ack; shadow off stops the engine reading it first, hands it back,
and after the ack signals it once so a kick taken during the switch is not
lost. Calls need no such order (writers may be many). Only eventfds are ever
given to the engine; any other fd QEMU sends is passed through unchanged.

Limits (docs/design.md#limits): a connection may name at most
``limits.rings`` rings, hold ``limits.regions`` memory regions and make
svqtui hold ``limits.fds`` fds; a front-end over one is disconnected alone,
with one line naming the limit (``DeviceLimitExceeded``).

Everything here runs in the I/O loop thread.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from svqtui.engine import Engine, Link
from svqtui.engine.faults import Fault, FaultKind
from svqtui.errors import EngineError, ProtocolError
from svqtui.eventlog import EventLog
from svqtui.sources.errors import ActionUnsupported, QueueOutOfRange
from svqtui.sources.vhost_user.channel import Channel
from svqtui.sources.vhost_user.codec import (
    ALWAYS_REPLIED,
    F_ACCESS_PLATFORM,
    F_RING_PACKED,
    NEED_REPLY,
    VERSION,
    VRING_IDX_MASK,
    FrontendRequest,
    Message,
    ProtocolFeature,
    VringAddr,
    VringState,
    feature_names,
    pack_u64,
    pack_vring_file,
    request_name,
    unpack_mem_reg,
    unpack_memory_table,
    unpack_u64,
    unpack_vring_file,
)
from svqtui.sources.vhost_user.errors import (
    BadHeader,
    BadPayload,
    DeviceLimitExceeded,
    NotConnected,
    ShadowSwitchError,
)
from svqtui.sources.vhost_user.fdident import describe
from svqtui.sources.vhost_user.rings import MemoryTable
from svqtui.sources.vhost_user.settings import DeviceLimits
from svqtui.sources.vhost_user.shadow import Holder, Vring, VringSnapshot
from svqtui.takeover.errors import TakeoverBusy
from svqtui.virtio.guest_memory import RegionTable

R = FrontendRequest
HIDDEN_PROTOCOL_FEATURES = (
    1 << ProtocolFeature.HOST_NOTIFIER
    | 1 << ProtocolFeature.INBAND_NOTIFICATIONS
    | 1 << ProtocolFeature.INFLIGHT_SHMFD
)
SWITCH_TIMEOUT_S = 5.0
FRONTEND = "QEMU (front-end)"
BACKEND = "the back-end"


@dataclass(frozen=True, slots=True)
class ConnectionSnapshot:
    """What the console needs of a live connection, frozen for other threads."""

    shadow: bool
    vrings: tuple[VringSnapshot, ...]
    memory: RegionTable  # the front-end's guest memory, readable from any thread
    features: int | None
    protocol_features: int | None
    notes: tuple[str, ...]


OwnRequest = tuple[int, bytes, list[int]]  # request, payload, fds (svqtui keeps them)


class Connection:
    """Forwards one front-end/back-end pair and applies shadow mode to it."""

    def __init__(
        self,
        *,
        key: str,
        label: str,
        loop: asyncio.AbstractEventLoop,
        engine: Engine,
        log: EventLog,
        frontend: socket.socket,
        backend: socket.socket,
        shadow: bool,
        on_closed: Callable[[str, bool], None],
        on_change: Callable[[], None],
        limits: DeviceLimits | None = None,
    ) -> None:
        self.key = key
        self.limits = limits or DeviceLimits()
        self.label = label
        self._loop = loop
        self._engine = engine
        self._log = log
        self._on_closed = on_closed
        self._on_change = on_change
        self.shadow = shadow
        self.closed = False
        self.vrings: dict[int, Vring] = {}
        self.memory = MemoryTable()
        self.features: int | None = None
        self.protocol_features: int | None = None  # acked by the front-end
        self.offered_hidden = 0
        self.backend_channel = False
        self.postcopy_listening = False
        self._fe_pending: collections.deque[int] = collections.deque()
        self._own: collections.deque[tuple[int, asyncio.Future[Message]]] = collections.deque()
        self._idle = asyncio.Event()
        self._idle.set()
        self._actions = asyncio.Lock()
        self.frozen = False  # a takeover holds it at a message boundary
        self.fe = Channel(
            loop,
            frontend,
            self._guard(self._from_frontend, FRONTEND),
            lambda why, err: self._peer_closed(FRONTEND, why, err),
            on_drained=lambda: self.be.resume("backlog"),
        )
        self.be = Channel(
            loop,
            backend,
            self._guard(self._from_backend, BACKEND),
            lambda why, err: self._peer_closed(BACKEND, why, err),
            on_drained=lambda: self.fe.resume("backlog"),
        )
        self._fe_handlers: dict[int, Callable[[Message], None]] = {
            R.SET_PROTOCOL_FEATURES: self._set_protocol_features,
            R.SET_FEATURES: self._set_features,
            R.SET_MEM_TABLE: self._set_mem_table,
            R.ADD_MEM_REG: self._add_mem_reg,
            R.REM_MEM_REG: self._rem_mem_reg,
            R.SET_VRING_NUM: self._set_vring_num,
            R.SET_VRING_ADDR: self._set_vring_addr,
            R.GET_VRING_BASE: self._get_vring_base,
            R.SET_VRING_ENABLE: self._set_vring_enable,
            R.SET_VRING_KICK: self._set_vring_kick,
            R.SET_VRING_CALL: self._set_vring_call,
            R.SET_BACKEND_REQ_FD: self._set_backend_req_fd,
            R.RESET_OWNER: self._reset,
            R.RESET_DEVICE: self._reset,
            R.POSTCOPY_LISTEN: self._postcopy_listen,
            R.POSTCOPY_END: self._postcopy_end,
        }

    def start(self) -> None:
        self.fe.start()
        self.be.start()

    @property
    def engine(self) -> Engine:
        return self._engine

    # -- logging ------------------------------------------------------------------

    def _info(self, text: str, queue: int | None = None) -> None:
        self._log.info(f"{self.label}: {text}", device_key=self.key, queue_index=queue)

    def _warn(self, text: str, queue: int | None = None) -> None:
        self._log.warning(f"{self.label}: {text}", device_key=self.key, queue_index=queue)

    def _error(self, text: str, queue: int | None = None) -> None:
        self._log.error(f"{self.label}: {text}", device_key=self.key, queue_index=queue)

    # -- closing --------------------------------------------------------------------

    def _guard(self, handler: Callable[[Message], None], peer: str) -> Callable[[Message], None]:
        def guarded(msg: Message) -> None:
            try:
                handler(msg)
                self._check_fd_limit()
            except ProtocolError as err:
                msg.close()
                self._peer_closed(peer, str(err), err)
            except DeviceLimitExceeded as err:
                msg.close()
                self.close(f"{FRONTEND} went over a limit: {err}", True)
            except OSError as err:  # out of fds (EMFILE) while dup'ing or mapping
                msg.close()
                self.close(f"cannot handle {msg.name()} from {peer}: {err.strerror or err}", True)
            except Exception as err:  # a bug must cost one connection, not the loop
                msg.close()
                self.close(f"internal error handling {msg.name()} from {peer}: {err!r}", True)
            else:
                if not self.closed:
                    self._on_change()

        return guarded

    def _peer_closed(self, peer: str, why: str, err: ProtocolError | None) -> None:
        if err is not None:
            self.close(f"malformed message from {peer}: {why}", True)
        else:
            self.close(f"{peer} {why}", False)

    def close(self, reason: str, error: bool = False) -> None:
        """Close both sockets and release every fd, map and engine queue (idempotent)."""
        if self.closed:
            return
        self.closed = True
        self._on_closed(reason, error)  # status and log first: peers see EOF after
        self.fe.close()
        self.be.close()
        while self._own:
            _, fut = self._own.popleft()
            if not fut.done():
                fut.set_exception(NotConnected(f"{self.label}: connection closed: {reason}"))
        self._idle.set()
        for vring in self.vrings.values():
            try:
                vring.close(self._engine)
            except EngineError as err:
                self._error(f"engine queue not released cleanly: {err}", vring.index)
        self.memory.close()

    # -- forwarding ---------------------------------------------------------------

    @property
    def reply_ack(self) -> bool:
        pf = self.protocol_features or 0
        return bool(pf >> ProtocolFeature.REPLY_ACK & 1)

    def _expects_reply(self, msg: Message) -> bool:
        if msg.request in ALWAYS_REPLIED:
            return True
        if msg.need_reply and self.reply_ack:
            return True
        pf = self.protocol_features or 0
        if msg.request == R.SET_LOG_BASE and pf >> ProtocolFeature.LOG_SHMFD & 1:
            return True
        return msg.request in (R.SET_MEM_TABLE, R.ADD_MEM_REG) and self.postcopy_listening

    def _to_backend(self, msg: Message, fds: list[int] | None = None) -> None:
        if self._expects_reply(msg):
            self._fe_pending.append(msg.request)
            self._idle.clear()
        self.be.send(msg, fds)
        if self.be.backlog:
            self.fe.pause("backlog")

    def _to_frontend(self, msg: Message) -> None:
        self.fe.send(msg)
        if self.fe.backlog:
            self.be.pause("backlog")

    def _from_frontend(self, msg: Message) -> None:
        handler = self._fe_handlers.get(msg.request)
        if handler is None:
            self._to_backend(msg)
        else:
            handler(msg)

    def _from_backend(self, msg: Message) -> None:
        if not msg.is_reply:
            raise BadHeader(f"{msg.name()} without the reply flag on the main socket")
        if self._own and self._own[0][0] == msg.request:
            _, fut = self._own.popleft()
            msg.close()
            if not fut.done():
                fut.set_result(msg)
            return
        if self._fe_pending and self._fe_pending[0] == msg.request:
            self._fe_pending.popleft()
        else:
            self._log.warning(
                f"{self.label}: reply {msg.name()} that QEMU did not ask for; passed on",
                device_key=self.key,
            )
        if msg.request == R.GET_PROTOCOL_FEATURES:
            self._hide_protocol_features(msg)
        self._to_frontend(msg)
        if not self._fe_pending:
            self._idle.set()

    # -- front-end requests that svqtui looks at ---------------------------------------

    def _vring(self, index: int) -> Vring | None:
        if index > VRING_IDX_MASK:  # not addressable by SET_VRING_KICK/CALL
            return None
        vring = self.vrings.get(index)
        if vring is None:
            if len(self.vrings) >= self.limits.rings:
                raise DeviceLimitExceeded(
                    f"ring {index} would be ring number {len(self.vrings) + 1}, over the limit"
                    f" of {self.limits.rings} rings (devices: limits: rings)"
                )
            vring = self.vrings[index] = Vring(index)
        return vring

    def held_fds(self) -> int:
        """Fds svqtui holds for this connection: the two sockets, each ring's
        kept and own eventfds, one per memory region."""
        held = 2 + len(self.memory.regions)
        for v in self.vrings.values():
            held += sum(fd is not None for fd in (v.fe_kick, v.fe_call, v.eng_kick, v.eng_call))
        return held

    def _check_fd_limit(self) -> None:
        held = self.held_fds()
        if held > self.limits.fds:
            raise DeviceLimitExceeded(
                f"svqtui would hold {held} fds for it, over the limit of {self.limits.fds}"
                " (devices: limits: fds)"
            )

    def _hide_protocol_features(self, msg: Message) -> None:
        offered = unpack_u64(msg.payload, "GET_PROTOCOL_FEATURES reply")
        hidden = offered & HIDDEN_PROTOCOL_FEATURES
        if hidden:
            self.offered_hidden = hidden
            msg.payload = pack_u64(offered & ~HIDDEN_PROTOCOL_FEATURES)
            self._info("protocol features hidden from QEMU: " + ", ".join(feature_names(hidden)))

    def _set_protocol_features(self, msg: Message) -> None:
        value = unpack_u64(msg.payload, "SET_PROTOCOL_FEATURES")
        if value & HIDDEN_PROTOCOL_FEATURES:
            self._log.warning(
                f"{self.label}: QEMU acked hidden protocol features "
                + ", ".join(feature_names(value & HIDDEN_PROTOCOL_FEATURES))
                + "; cleared",
                device_key=self.key,
            )
            value &= ~HIDDEN_PROTOCOL_FEATURES
            msg.payload = pack_u64(value)
        self.protocol_features = value
        self._to_backend(msg)

    def _set_features(self, msg: Message) -> None:
        self.features = unpack_u64(msg.payload, "SET_FEATURES")
        self._to_backend(msg)

    def _set_mem_table(self, msg: Message) -> None:
        regions = unpack_memory_table(msg.payload)
        if len(msg.fds) != len(regions):
            raise BadPayload(f"SET_MEM_TABLE: {len(regions)} regions but {len(msg.fds)} fds")
        self.memory.set_table(regions, msg.fds)
        self._to_backend(msg)

    def _add_mem_reg(self, msg: Message) -> None:
        region = unpack_mem_reg(msg.payload)
        if len(msg.fds) != 1:
            raise BadPayload(f"ADD_MEM_REG: {len(msg.fds)} fds, expected 1")
        if len(self.memory.regions) >= self.limits.regions:
            raise DeviceLimitExceeded(
                f"ADD_MEM_REG would make {len(self.memory.regions) + 1} memory regions, over"
                f" the limit of {self.limits.regions} (devices: limits: regions)"
            )
        self.memory.add(region, msg.fds[0])
        self._to_backend(msg)

    def _rem_mem_reg(self, msg: Message) -> None:
        self.memory.remove(unpack_mem_reg(msg.payload))
        self._to_backend(msg)

    def _set_vring_num(self, msg: Message) -> None:
        state = VringState.unpack(msg.payload)
        vring = self._vring(state.index)
        if vring is not None:
            vring.num = state.num
        self._to_backend(msg)

    def _set_vring_addr(self, msg: Message) -> None:
        addr = VringAddr.unpack(msg.payload)
        vring = self._vring(addr.index)
        if vring is not None:
            vring.addr = addr
            vring.ring_active = True
        self._to_backend(msg)

    def _get_vring_base(self, msg: Message) -> None:
        state = VringState.unpack(msg.payload)
        vring = self._vring(state.index)
        if vring is not None:
            vring.on_stop()
            self._info("ring stopped (GET_VRING_BASE)", state.index)
        self._to_backend(msg)

    def _set_vring_enable(self, msg: Message) -> None:
        state = VringState.unpack(msg.payload)
        vring = self._vring(state.index)
        if vring is not None:
            vring.enabled = bool(state.num)
        self._to_backend(msg)

    def _file_fd(self, msg: Message) -> tuple[int, int | None]:
        """(index, fd or None) of SET_VRING_KICK/CALL; checks the fd count."""
        index, nofd = unpack_vring_file(msg.payload)
        if nofd:
            return index, None
        if len(msg.fds) != 1:
            raise BadPayload(f"{msg.name()}: {len(msg.fds)} fds without NOFD, expected 1")
        return index, msg.fds[0]

    def _set_vring_kick(self, msg: Message) -> None:
        index, fd = self._file_fd(msg)
        vring = self._vring(index)
        assert vring is not None  # an 8-bit index always has a Vring
        old = vring.take_kick(fd)
        vring.on_start()
        try:
            self._relay_or_forward(
                msg,
                vring,
                fd,
                vring.kick_ok,
                Link.KICK,
                vring.relay_kick_from,
                lambda: vring.eng_kick,
            )
        finally:
            vring.dispose([old])

    def _set_vring_call(self, msg: Message) -> None:
        index, fd = self._file_fd(msg)
        vring = self._vring(index)
        assert vring is not None
        old = vring.take_call(fd)
        kind = "QEMU's masked notifier" if vring.qemu_masked else "guest notifier"
        what = f"{describe(vring.fe_call_id)} ({kind})" if fd is not None else "none (NOFD)"
        self._info(f"call fd -> {what}", index)
        try:
            self._relay_or_forward(
                msg,
                vring,
                fd,
                vring.call_ok,
                Link.CALL,
                vring.relay_call_to,
                lambda: vring.eng_call,
            )
        finally:
            vring.dispose([old])

    def _relay_or_forward(
        self,
        msg: Message,
        vring: Vring,
        fd: int | None,
        eventfd: bool,
        link: Link,
        relay: Callable[[Engine], None],
        engine_fd: Callable[[], int | None],
    ) -> None:
        """Give the back-end the engine's fd (shadowed) or the front-end's."""
        holder = Holder.FRONTEND if fd is not None else Holder.NONE
        if self.shadow:
            try:
                if fd is not None and not eventfd:
                    relay(self._engine)  # the engine lets go of the old fd (gets -1)
                    vring.error = f"{link.name.lower()} fd is not an eventfd: not relayed"
                    self._error(
                        f"QEMU's {link.name.lower()} fd is not an eventfd; passed through",
                        vring.index,
                    )
                elif vring.slot is None and fd is not None:
                    vring.attach(self._engine)
                else:
                    relay(self._engine)
                substitute = engine_fd()
                if fd is not None and eventfd and substitute is not None:
                    self._set_holder(vring, link, Holder.ENGINE)
                    self._to_backend(msg, [substitute])
                    return
            except EngineError as err:
                vring.error = f"not shadowed: {err}"
                self._error(f"cannot relay the {link.name.lower()} fd: {err}", vring.index)
        elif vring.slot is not None:  # never leave the engine on an fd about to close
            with contextlib.suppress(EngineError):
                relay(self._engine)
        self._set_holder(vring, link, holder)
        self._to_backend(msg)

    @staticmethod
    def _set_holder(vring: Vring, link: Link, holder: Holder) -> None:
        if link is Link.KICK:
            vring.be_kick = holder
        else:
            vring.be_call = holder

    def _set_backend_req_fd(self, msg: Message) -> None:
        self.backend_channel = True
        self._info("back-end channel passed through (its messages bypass svqtui)")
        self._to_backend(msg)

    def _reset(self, msg: Message) -> None:
        for vring in self.vrings.values():
            vring.on_stop()
            vring.be_call = Holder.NONE
        self._info(f"{msg.name()}: every ring stopped")
        self._to_backend(msg)

    def _postcopy_listen(self, msg: Message) -> None:
        self.postcopy_listening = True
        self._to_backend(msg)

    def _postcopy_end(self, msg: Message) -> None:
        self.postcopy_listening = False
        self._to_backend(msg)

    # -- svqtui's own messages to the back-end -----------------------------------

    @contextlib.asynccontextmanager
    async def _held(self) -> AsyncIterator[None]:
        """Wait until no front-end request awaits a reply, then hold the
        front-end's messages until the block ends."""
        deadline = self._loop.time() + SWITCH_TIMEOUT_S
        while self._fe_pending and not self.closed:
            self._idle.clear()
            try:
                await asyncio.wait_for(self._idle.wait(), max(deadline - self._loop.time(), 0))
            except TimeoutError:
                name = request_name(self._fe_pending[0])
                raise ShadowSwitchError(
                    f"{self.label}: QEMU's {name} still awaits the back-end's reply after "
                    f"{SWITCH_TIMEOUT_S:.0f} s; try again"
                ) from None
        self._check_open()
        self.fe.pause("hold")
        try:
            yield
        finally:
            self.fe.resume("hold")

    async def _send_own(self, requests: list[OwnRequest]) -> None:
        """Send requests of svqtui's own and wait until the back-end applied them."""
        if not requests:
            return
        acks: list[tuple[int, asyncio.Future[Message]]] = []
        flags = VERSION | (NEED_REPLY if self.reply_ack else 0)
        for request, payload, fds in requests:
            if self.reply_ack:
                acks.append((request, self._expect(request)))
            self.be.send(Message(request, flags, payload), fds)
        if not self.reply_ack:  # a round trip proves the earlier messages applied
            acks.append((R.GET_FEATURES, self._expect(R.GET_FEATURES)))
            self.be.send(Message(R.GET_FEATURES, VERSION))
        try:
            replies = await asyncio.wait_for(
                asyncio.gather(*(fut for _, fut in acks)), SWITCH_TIMEOUT_S
            )
        except TimeoutError:
            raise self._switch_failed(
                f"the back-end did not answer within {SWITCH_TIMEOUT_S:.0f} s"
            ) from None
        except NotConnected as err:
            raise ShadowSwitchError(str(err)) from None
        for (request, _), reply in zip(acks, replies, strict=True):
            if request == R.GET_FEATURES:
                continue
            name = request_name(request)
            try:
                status = unpack_u64(reply.payload, f"{name} reply")
            except ProtocolError as err:
                raise self._switch_failed(str(err)) from None
            if status:
                raise self._switch_failed(f"the back-end refused {name} (status {status})")

    def _switch_failed(self, why: str) -> ShadowSwitchError:
        """The back-end's fds are now unknown: close the pair (QEMU may reconnect)."""
        self.close(f"shadow switch failed: {why}", True)
        return ShadowSwitchError(
            f"{self.label}: shadow switch failed: {why}; the connection was closed "
            "(QEMU reconnects if its chardev has reconnect=N)"
        )

    def _expect(self, request: int) -> asyncio.Future[Message]:
        fut: asyncio.Future[Message] = self._loop.create_future()
        self._own.append((request, fut))
        return fut

    # -- a takeover (docs/design.md#takeover) ----------------------------------

    async def freeze(self, deadline: float) -> None:
        """Stop at a message boundary: wait for a running action (a shadow
        switch) to finish and hold off new ones, wait until no front-end
        request awaits its reply, then stop reading both sockets. Raises
        TakeoverBusy (nothing held) when ``deadline`` (loop time) passes."""
        try:
            await asyncio.wait_for(self._actions.acquire(), max(deadline - self._loop.time(), 0))
        except TimeoutError:
            raise TakeoverBusy(
                f"{self.label}: a shadow switch or operator action still runs; "
                "takeover refused, try again"
            ) from None
        try:
            while (self._fe_pending or self._own) and not self.closed:
                self._idle.clear()
                await asyncio.wait_for(self._idle.wait(), max(deadline - self._loop.time(), 0))
        except TimeoutError:
            self._actions.release()
            name = request_name(self._fe_pending[0]) if self._fe_pending else "a request"
            raise TakeoverBusy(
                f"{self.label}: QEMU's {name} still awaits the back-end's reply; "
                "takeover refused, try again"
            ) from None
        for ch in (self.fe, self.be):
            ch.pause("takeover")
            ch.hold_output(True)
        self.frozen = True

    def thaw(self) -> None:
        """Undo ``freeze`` (the takeover failed): read again, allow actions."""
        if not self.frozen:
            return
        self.frozen = False
        for ch in (self.fe, self.be):
            ch.hold_output(False)
            ch.resume("takeover")
        self._actions.release()

    # -- operator actions (coroutines on the I/O loop) ------------------------

    def _check_open(self) -> None:
        if self.closed:
            raise NotConnected(f"{self.label}: QEMU is not connected")

    async def set_shadow(self, on: bool) -> None:
        async with self._actions:
            self._check_open()
            if on == self.shadow:
                return
            try:
                async with self._held():
                    await (self._shadow_on() if on else self._shadow_off())
            finally:
                if not self.closed:
                    self._on_change()

    async def _shadow_on(self) -> None:
        # An eventfd has one reader: the engine reads a kick fd the back-end
        # holds only after the back-end has acked its switch to eng_kick.
        attached: list[Vring] = []
        try:
            for vring in self.vrings.values():
                if not (vring.kick_ok or vring.call_ok):
                    continue
                vring.attach(self._engine, watch_kick=vring.be_kick is not Holder.FRONTEND)
                attached.append(vring)
        except EngineError:
            for vring in attached:
                vring.detach(self._engine, handback=False)
            raise
        self.shadow = True
        requests: list[OwnRequest] = []
        kick_later: list[Vring] = []
        for vring in attached:
            if vring.be_call is Holder.FRONTEND and vring.call_ok and vring.eng_call is not None:
                requests.append(
                    (R.SET_VRING_CALL, pack_vring_file(vring.index, False), [vring.eng_call])
                )
                vring.be_call = Holder.ENGINE
            if vring.be_kick is Holder.FRONTEND and vring.kick_ok and vring.eng_kick is not None:
                requests.append(
                    (R.SET_VRING_KICK, pack_vring_file(vring.index, False), [vring.eng_kick])
                )
                vring.be_kick = Holder.ENGINE
                kick_later.append(vring)
        self._info(f"shadow mode on: {len(attached)} queue(s) relayed by the engine")
        await self._send_own(requests)
        for vring in kick_later:  # the back-end no longer reads QEMU's kick fd
            vring.relay_kick_from(self._engine)

    async def _shadow_off(self) -> None:
        requests: list[OwnRequest] = []
        kicked_back: list[Vring] = []
        for vring in self.vrings.values():
            if vring.slot is None:
                continue
            if vring.be_kick is Holder.ENGINE:
                vring.stop_kick_relay(self._engine)  # one reader: the back-end, next
                kicked_back.append(vring)
                fd = vring.fe_kick
                requests.append(
                    (R.SET_VRING_KICK, pack_vring_file(vring.index, fd is None), _fds(fd))
                )
                vring.be_kick = Holder.FRONTEND if fd is not None else Holder.NONE
            if vring.be_call is Holder.ENGINE:
                fd = vring.fe_call
                requests.append(
                    (R.SET_VRING_CALL, pack_vring_file(vring.index, fd is None), _fds(fd))
                )
                vring.be_call = Holder.FRONTEND if fd is not None else Holder.NONE
        await self._send_own(requests)
        # The back-end now uses the front-end's own fds: hand the path back
        # (the engine signals each call fd once; each kick fd is signalled here).
        for vring in self.vrings.values():
            vring.detach(self._engine, handback=True)
            vring.hold = False
            vring.error = None
        for vring in kicked_back:
            vring.kick_frontend_fd()
        self.shadow = False
        self._info("shadow mode off: the back-end uses QEMU's own eventfds again")

    def _queue(self, index: int) -> Vring:
        vring = self.vrings.get(index)
        if vring is None:
            known = ", ".join(str(i) for i in sorted(self.vrings)) or "none yet"
            raise QueueOutOfRange(f"{self.label} has no queue {index} (queues: {known})")
        return vring

    async def set_masked(self, index: int, masked: bool) -> None:
        async with self._actions:
            self._check_open()
            if not self.shadow:
                raise ActionUnsupported(
                    f"{self.label}: masking needs shadow mode (turn shadow on first); "
                    "in pass mode QEMU applies the guest's masking itself"
                )
            vring = self._queue(index)
            vring.hold = masked
            if vring.slot is not None:
                self._engine.set_masked(vring.slot, masked)
            self._info("operator mask on (calls held)" if masked else "operator mask off", index)
            self._on_change()

    async def inject(self, index: int, link: Link) -> None:
        async with self._actions:
            self._check_open()
            vring = self._queue(index)
            if vring.slot is None:
                raise ActionUnsupported(
                    f"{self.label}: injecting needs queue {index} in shadow mode (turn shadow on)"
                )
            self._engine.inject(vring.slot, link)
            self._info(f"injected a {link.name.lower()}", index)

    async def set_fault(self, index: int, fault: Fault | None) -> None:
        async with self._actions:
            self._check_open()
            vring = self._queue(index)
            if vring.slot is None:
                raise ActionUnsupported(
                    f"{self.label}: faults need queue {index} in shadow mode (turn shadow on)"
                )
            if fault is None:
                for link in Link:
                    self._engine.set_fault(vring.slot, link, FaultKind.NONE, 0)
                self._info("faults cleared", index)
            else:
                self._engine.set_fault(vring.slot, fault.link, fault.kind, fault.amount)
                self._warn(f"fault armed: {fault.describe()}", index)
            self._on_change()

    async def reset(self) -> None:
        async with self._actions:
            for vring in self.vrings.values():
                vring.kick_base = vring.call_base = 0
                if vring.slot is not None:
                    self._engine.reset(vring.slot)
            self._on_change()

    # -- what the console sees ---------------------------------------------------------

    def snapshot(self) -> ConnectionSnapshot:
        features = self.features or 0
        ring_ok = not (features >> F_RING_PACKED & 1 or features >> F_ACCESS_PLATFORM & 1)
        vrings = tuple(self.vrings[i].snapshot(ring_ok) for i in sorted(self.vrings))
        notes = ["guest vector masking happens inside QEMU for vhost-user"]
        masked = [str(v.index) for v in vrings if v.qemu_masked]
        if masked:
            notes.append(f"queue {', '.join(masked)}: masked by QEMU (not started)")
        held = [str(v.index) for v in vrings if v.hold]
        if held:
            notes.append(f"queue {', '.join(held)}: calls held by the operator's mask")
        if self.backend_channel:
            notes.append("back-end channel (SET_BACKEND_REQ_FD): its messages bypass svqtui")
        if self.offered_hidden:
            notes.append("hidden from QEMU: " + ", ".join(feature_names(self.offered_hidden)))
        if not ring_ok:
            notes.append("ring indices unknown: packed ring or IOMMU addresses")
        notes.extend(self.memory.problems)
        return ConnectionSnapshot(
            shadow=self.shadow,
            vrings=vrings,
            memory=self.memory.table,
            features=self.features,
            protocol_features=self.protocol_features,
            notes=tuple(notes),
        )


def _fds(fd: int | None) -> list[int]:
    return [fd] if fd is not None else []
