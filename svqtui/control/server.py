"""The control socket server: answers svqtui.control.protocol requests on the
Runtime's I/O loop.

The loop only reads request lines and writes replies; everything else (device
lookup, actions that may wait ~2 s on the engine or a vhost-user round trip,
encoding a large snapshot) runs in thread pools, so the loop keeps forwarding
vhost-user messages meanwhile. Actions run one at a time *per device*, in
arrival order, each device in its own lane (a thread that exists while the
device has actions): a hung back-end delays only its own device's actions,
and at most ``max_waiting_actions`` wait in a lane (more get a
``ControlBusy`` reply). Reads run beside them.

Slots are fair (docs/design.md#limits): a connection must send its first
request within ``first_request_s`` and then one at least every ``idle_s``,
else it is told why and closed; connections that have sent nothing yet are
at most ``max_fresh`` (a new one replaces the oldest); connections that keep
polling ``events`` (``ctl events --follow``, an attached console) are at
most ``max_followers``; a client that does not read its replies within
``write_timeout_s`` is dropped. Past ``max_clients`` in all, a new
connection gets a ``ControlBusy`` line.

Only processes of the same user (or root) may talk to the socket: besides the
file's 0600 mode, each connection's peer credentials are checked. A malformed
request gets an error reply; a request line over the size limit closes its
connection. Neither disturbs other clients.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import svqtui
from svqtui.control.codec import encode_event, encode_snapshot
from svqtui.control.errors import ControlBusy, ControlIdleTimeout, ControlProtocolError
from svqtui.control.protocol import (
    ACTIONS,
    MAX_REQUEST_BYTES,
    PROTOCOL_VERSION,
    Command,
    Request,
    Response,
    decode_line,
    request_id,
)
from svqtui.engine import Link
from svqtui.engine.faults import Fault
from svqtui.errors import ControlError, SvqtuiError
from svqtui.outputs.json_doc import snapshot_document
from svqtui.recording.errors import RecorderOff
from svqtui.sources.errors import QueueOutOfRange, UnknownDevice
from svqtui.takeover.errors import TakeoverError
from svqtui.takeover.handshake import send_with_fd
from svqtui.unix_socket import peer_uid

if TYPE_CHECKING:
    from svqtui.model import DeviceView, Snapshot
    from svqtui.reload import ReloadReport
    from svqtui.runtime import Runtime

#: Answers a takeover request in a worker thread: (result, hand-over stream end).
TakeoverOffer = Callable[[Request], tuple[dict[str, Any], socket.socket]]

MAX_CLIENTS = 64  # connections in all
MAX_FRESH = 16  # connections that have sent nothing yet (a new one replaces the oldest)
MAX_FOLLOWERS = 16  # connections polling `events` (ctl events --follow, --attach)
MAX_WAITING_ACTIONS = 4  # actions queued on one device (its back-end may hang)
FIRST_REQUEST_S = 5.0  # a new connection must send its first request within this
IDLE_S = 300.0  # then one at least this often (--attach polls every refresh <= 60 s)
WRITE_TIMEOUT_S = 30.0  # a client must read its replies within this
LATEST_TIMEOUT_S = 5.0  # how long a command waits for the first snapshot
ALL_DEVICES = "*"  # the lane of actions on no one device (reset all, reload, record dump)


@dataclass(eq=False)
class _Conn:
    """One client connection's slot bookkeeping (I/O loop thread only)."""

    task: asyncio.Task[None]
    writer: asyncio.StreamWriter
    since: float  # time.monotonic() at connect
    requests: int = 0
    events: int = 0
    follower: bool = False


@dataclass(eq=False)
class _Lane:
    """One device's action thread and how many actions wait on it."""

    pool: concurrent.futures.ThreadPoolExecutor
    waiting: int = 0


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    return None if sock is None else peer_uid(sock)


class ControlServer:
    """Serves one listening socket for one Runtime (started, on runtime.loop)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        refresh_after_action: bool = True,
        max_clients: int = MAX_CLIENTS,
        reload: Callable[[], ReloadReport] | None = None,
        max_fresh: int = MAX_FRESH,
        max_followers: int = MAX_FOLLOWERS,
        max_waiting_actions: int = MAX_WAITING_ACTIONS,
        first_request_s: float = FIRST_REQUEST_S,
        idle_s: float = IDLE_S,
        write_timeout_s: float = WRITE_TIMEOUT_S,
        takeover: TakeoverOffer | None = None,
    ) -> None:
        """``reload`` runs ``svqtui ctl reload`` (default: the runtime's
        ``reload_config``; headless wraps it in the service notifications).
        ``takeover`` answers a ``takeover`` request in a worker thread: the
        result and the hand-over stream's end to pass (svqtui.takeover.donor);
        without it the request is refused."""
        self._takeover_offer = takeover
        self._takeover_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._listen: socket.socket | None = None
        self.runtime = runtime
        self._reload_config = reload or runtime.reload_config
        self.refresh_after_action = refresh_after_action
        self.max_clients = max_clients
        self.max_fresh = max_fresh
        self.max_followers = max_followers
        self.max_waiting_actions = max_waiting_actions
        self.first_request_s = first_request_s
        self.idle_s = idle_s
        self.write_timeout_s = write_timeout_s
        self._lanes: dict[str, _Lane] = {}  # device key -> its action lane, while busy
        self._lane_count = 0
        self._reads = concurrent.futures.ThreadPoolExecutor(2, "svqtui-ctl-read")
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], _Conn] = {}
        self._stopping = False

    # -- lifecycle (called from any thread but the I/O loop's) -------------

    def start(self, sock: socket.socket) -> None:
        """Serve the listening socket ``sock`` (from SocketFile.claim)."""
        self.runtime.loop.call(self._serve(sock), what="control socket: start serving")

    def stop(self) -> None:
        """Stop listening, drop every client, and finish the running actions."""
        self._stopping = True  # from now on lanes stay, for the waits below
        if self.runtime.loop.running:
            with contextlib.suppress(Exception):
                self.runtime.loop.call(self._close(), what="control socket: close")
        self._reads.shutdown(wait=True, cancel_futures=True)
        if self._takeover_pool is not None:
            self._takeover_pool.shutdown(wait=True, cancel_futures=True)
        for lane in list(self._lanes.values()):
            lane.pool.shutdown(wait=True, cancel_futures=True)

    async def _serve(self, sock: socket.socket) -> None:
        # asyncio serves a duplicate: pausing closes it while the listening
        # socket itself stays open (clients wait in its backlog), and a
        # takeover passes the original on.
        self._listen = sock
        self._server = await asyncio.start_unix_server(
            self._client, sock=sock.dup(), limit=MAX_REQUEST_BYTES
        )

    @property
    def listen_fd(self) -> int:
        """The listening socket's fd (for a takeover)."""
        assert self._listen is not None
        return self._listen.fileno()

    async def pause_accepting(self) -> None:
        """Accept no new client (a takeover's freeze); clients connecting
        meanwhile wait in the listen backlog. Connected clients go on."""
        if self._server is not None:
            self._server.close()
            self._server = None

    async def resume_accepting(self) -> None:
        """Undo ``pause_accepting`` (the takeover failed)."""
        if self._server is None and self._listen is not None and not self._stopping:
            self._server = await asyncio.start_unix_server(
                self._client, sock=self._listen.dup(), limit=MAX_REQUEST_BYTES
            )

    async def _close(self) -> None:
        if self._listen is not None:
            self._listen.close()
        if self._server is not None:
            self._server.close()
        for task in list(self._clients):
            task.cancel()
        if self._clients:
            await asyncio.wait(list(self._clients), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    # -- connections (on the I/O loop) -------------------------------------

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conn = _Conn(task, writer, time.monotonic())
        self._clients[task] = conn
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid not in (0, os.getuid()):
                self.runtime.log.warning(f"control: refused a client of uid {uid}")
                return
            self._make_room(conn)
            if len(self._clients) > self.max_clients:
                err = ControlBusy(
                    f"too many control clients (at most {self.max_clients}): try again later"
                )
                await self._send(writer, Response.for_error(None, err).encode())
                return
            await self._converse(reader, writer, conn)
        except (ConnectionError, asyncio.CancelledError, TimeoutError):
            pass
        except Exception as err:  # a bug: drop this client, keep serving the others
            self.runtime.log.error(f"control: client dropped: {type(err).__name__}: {err}")
        finally:
            self._clients.pop(task, None)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    def _make_room(self, new: _Conn) -> None:
        """Past max_fresh connections that have sent nothing, close the oldest."""
        fresh = [c for c in self._clients.values() if c.requests == 0 and c is not new]
        if len(fresh) < self.max_fresh:
            return
        oldest = min(fresh, key=lambda c: c.since)
        err = ControlBusy(
            f"closed: {len(fresh)} control connections had sent nothing "
            f"(at most {self.max_fresh}); this was the oldest"
        )
        with contextlib.suppress(Exception):
            oldest.writer.write(Response.for_error(None, err).encode())
        oldest.task.cancel()

    async def _send(self, writer: asyncio.StreamWriter, data: bytes) -> None:
        """Write ``data``; a client that does not read it in time is dropped
        (TimeoutError ends its connection)."""
        writer.write(data)
        await asyncio.wait_for(writer.drain(), self.write_timeout_s)

    async def _converse(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn
    ) -> None:
        while True:
            last = False
            wait = self.first_request_s if conn.requests == 0 else self.idle_s
            try:
                line = await asyncio.wait_for(reader.readuntil(b"\n"), wait)
            except TimeoutError:
                idle = ControlIdleTimeout(
                    f"no request for {wait:g} s: closing the connection (connect again)"
                )
                await self._send(writer, Response.for_error(None, idle).encode())
                return
            except asyncio.IncompleteReadError as eof:
                line, last = eof.partial, True  # a final request without its newline
            except asyncio.LimitOverrunError:
                err = ControlProtocolError(
                    f"request line longer than {MAX_REQUEST_BYTES} bytes: closing the connection"
                )
                await self._send(writer, Response.for_error(None, err).encode())
                return
            if line.strip():
                conn.requests += 1
                reply, close, passed = await self._answer(line, conn)
                if passed is not None:
                    await self._pass(writer, reply, passed)
                    return
                await self._send(writer, reply)
                if close:
                    return
            if last:
                return

    def _follow(self, conn: _Conn) -> ControlBusy | None:
        """Count a connection polling `events` as a follower; refuse one past
        max_followers."""
        conn.events += 1
        if conn.follower or conn.events < 2:
            return None
        followers = sum(1 for c in self._clients.values() if c.follower)
        if followers >= self.max_followers:
            return ControlBusy(
                f"too many clients following events ({followers}, at most "
                f"{self.max_followers}): stop one (ctl events --follow, --attach) or try later"
            )
        conn.follower = True
        return None

    async def _answer(self, line: bytes, conn: _Conn) -> tuple[bytes, bool, socket.socket | None]:
        """The reply to one request line, whether to close the connection,
        and a socket to pass with the reply (an accepted takeover)."""
        rid: int | str | None = None
        try:
            obj = decode_line(line)
            rid = request_id(obj)
            request = Request.from_wire(obj)
        except ControlProtocolError as err:
            return Response.for_error(rid, err).encode(), False, None
        if request.cmd is Command.EVENTS:
            busy = self._follow(conn)
            if busy is not None:
                return Response.for_error(rid, busy).encode(), True, None
        loop = asyncio.get_running_loop()
        try:
            if request.cmd is Command.TAKEOVER:
                return await self._takeover(rid, request)
            if request.cmd not in ACTIONS:
                reply = await loop.run_in_executor(self._reads, self._reply, rid, request)
                return reply, False, None
            key = await loop.run_in_executor(self._reads, self._action_key, request)
            if isinstance(key, bytes):  # the device is unknown: the error reply
                return key, False, None
            return await self._act_in_lane(key, rid, request), False, None
        except RuntimeError:  # a pool is shut down: svqtui is stopping
            stopping = ControlError("svqtui is stopping")
            return Response.for_error(rid, stopping).encode(), False, None

    async def _takeover(
        self, rid: int | str | None, request: Request
    ) -> tuple[bytes, bool, socket.socket | None]:
        """Offer this svqtui to a new one (docs/design.md#takeover): the
        offer freezes, captures and starts the hand-over in a worker thread."""
        offer = self._takeover_offer
        if offer is None or self._stopping:
            err = TakeoverError("this svqtui cannot be taken over (only --headless can)")
            return Response.for_error(rid, err).encode(), True, None
        if self._takeover_pool is None:
            self._takeover_pool = concurrent.futures.ThreadPoolExecutor(1, "svqtui-takeover")
        loop = asyncio.get_running_loop()
        try:
            result, stream = await loop.run_in_executor(self._takeover_pool, offer, request)
        except SvqtuiError as err:
            return Response.for_error(rid, err).encode(), True, None
        return Response(rid, True, result).encode(), True, stream

    async def _pass(
        self, writer: asyncio.StreamWriter, reply: bytes, stream: socket.socket
    ) -> None:
        """Send an accepted takeover's answer with the hand-over stream's end."""
        try:
            await asyncio.wait_for(writer.drain(), self.write_timeout_s)
            transport_sock = writer.get_extra_info("socket")
            send_with_fd(transport_sock.fileno(), reply, stream.fileno())
        except (OSError, SvqtuiError, TimeoutError) as err:
            self.runtime.log.warning(f"control: the takeover answer was not delivered: {err}")
        finally:
            stream.close()  # the requester has its own end now (or the hand-over fails)

    async def _act_in_lane(self, key: str, rid: int | str | None, request: Request) -> bytes:
        """Run an action in its device's lane: after that device's earlier
        actions, beside every other device's."""
        if self._stopping:
            raise RuntimeError("stopping")
        lane = self._lanes.get(key)
        if lane is None:
            self._lane_count += 1
            name = f"svqtui-ctl-action-{self._lane_count}"
            lane = self._lanes[key] = _Lane(concurrent.futures.ThreadPoolExecutor(1, name))
        if lane.waiting >= self.max_waiting_actions:
            busy = ControlBusy(
                f"{lane.waiting} actions are already waiting on {key} (its back-end may be "
                "hung): try again later"
            )
            return Response.for_error(rid, busy).encode()
        lane.waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(lane.pool, self._reply, rid, request)
        finally:
            lane.waiting -= 1
            if lane.waiting == 0 and self._lanes.get(key) is lane and not self._stopping:
                # Idle lanes go: no thread per device ever seen (QMP VMs come
                # and go for months); the next action makes a new lane.
                del self._lanes[key]
                lane.pool.shutdown(wait=False)

    # -- requests (in the thread pools) ------------------------------------------

    def _reply(self, rid: int | str | None, request: Request) -> bytes:
        try:
            handler = self._handlers[request.cmd]
            reply = Response(rid, True, handler(self, request)).encode()
        except SvqtuiError as err:
            reply = Response.for_error(rid, err).encode()
        except Exception as err:  # a bug must not take the server down
            self.runtime.log.error(
                f"control: {request.cmd} failed unexpectedly: {type(err).__name__}: {err}"
            )
            internal = ControlError(
                f"internal error in {request.cmd}: {type(err).__name__}: {err} (see the svqtui log)"
            )
            reply = Response.for_error(rid, internal).encode()
        return reply

    def _action_key(self, request: Request) -> str | bytes:
        """The lane an action runs in (its device's key), or the error reply
        when the device cannot be found."""
        try:
            if request.optional_text("device") is None:  # reset all, reload, record dump
                return ALL_DEVICES
            return self._device(request).key
        except SvqtuiError as err:
            return Response.for_error(request.id, err).encode()

    def _latest(self) -> Snapshot:
        monitor = self.runtime.monitor
        snap = monitor.latest or monitor.wait_newer(0, LATEST_TIMEOUT_S)
        if snap is None:
            raise ControlError("svqtui has not taken its first snapshot yet; try again")
        return snap

    def _hello(self, request: Request) -> dict[str, Any]:
        return {
            "protocol": PROTOCOL_VERSION,
            "svqtui": svqtui.__version__,
            "pid": os.getpid(),
            "config": self.runtime.config.path,
        }

    def _status(self, request: Request) -> dict[str, Any]:
        return snapshot_document(self._latest())

    def _snapshot(self, request: Request) -> dict[str, Any]:
        return encode_snapshot(self._latest())

    def _events(self, request: Request) -> dict[str, Any]:
        seq, events = self.runtime.log.since(request.optional_index("since", 0))
        return {"seq": seq, "events": [encode_event(e) for e in events]}

    def _device(self, request: Request) -> DeviceView:
        name = request.text("device")
        try:
            return self.runtime.device(name)
        except UnknownDevice:
            # It may have appeared since the last refresh (an interposer that
            # QEMU just connected to): look once more with fresh views.
            self.runtime.monitor.refresh_soon(wait=True)
            return self.runtime.device(name)

    def _queue(self, request: Request, dev: DeviceView) -> int:
        index = request.index("queue")
        indexes = sorted(q.index for q in dev.queues)
        if index not in indexes:
            if not indexes:
                have = f"has no queues ({dev.status or 'not started'})"
            elif indexes == list(range(len(indexes))):
                have = f"has queues 0-{indexes[-1]}"
            else:
                have = f"has queues {', '.join(map(str, indexes))}"
            raise QueueOutOfRange(f"device {dev.name} ({dev.key}) {have}, not {index}")
        return index

    def _act(self, what: str, dev: DeviceView | None, apply: Callable[[], None]) -> dict[str, Any]:
        apply()
        self.runtime.log.info(f"control: {what}", dev.key if dev else None)
        if self.refresh_after_action:
            self.runtime.monitor.refresh_soon(wait=True)
        return {"device": dev.key if dev else None, "name": dev.name if dev else None, "done": what}

    def _shadow(self, request: Request) -> dict[str, Any]:
        dev = self._device(request)
        on = request.flag("on")
        return self._act(
            f"shadow {'on' if on else 'off'} {dev.name}",
            dev,
            lambda: self.runtime.set_shadow(dev.key, on),
        )

    def _mask(self, request: Request) -> dict[str, Any]:
        dev = self._device(request)
        index = self._queue(request, dev)
        masked = request.cmd is Command.MASK
        return self._act(
            f"{request.cmd} {dev.name} queue {index}",
            dev,
            lambda: self.runtime.set_masked(dev.key, index, masked),
        )

    def _inject(self, request: Request) -> dict[str, Any]:
        dev = self._device(request)
        index = self._queue(request, dev)
        link = Link.KICK if request.cmd is Command.KICK else Link.CALL
        return self._act(
            f"{request.cmd} {dev.name} queue {index}",
            dev,
            lambda: self.runtime.inject(dev.key, index, link),
        )

    def _fault(self, request: Request) -> dict[str, Any]:
        dev = self._device(request)
        index = self._queue(request, dev)
        name = request.text("fault")
        fault = None if name == "clear" else Fault.named(name, request.optional_count("amount"))
        what = f"fault {fault.describe() if fault else 'clear'} on {dev.name} queue {index}"
        return self._act(what, dev, lambda: self.runtime.set_fault(dev.key, index, fault))

    def _reset(self, request: Request) -> dict[str, Any]:
        if request.optional_text("device") is None:
            return self._act("reset all counters", None, lambda: self.runtime.reset(None))
        dev = self._device(request)
        return self._act(f"reset {dev.name}", dev, lambda: self.runtime.reset(dev.key))

    def _reload(self, request: Request) -> dict[str, Any]:
        report = self._reload_config()
        self.runtime.monitor.refresh_soon(wait=True)
        return report.to_wire()

    def _record_dump(self, request: Request) -> dict[str, Any]:
        recorder = self.runtime.recorder
        if recorder is None:
            raise RecorderOff(
                "this svqtui keeps no recording: set record.enabled: true in its config "
                "or start it with --record FILE"
            )
        return {"path": recorder.dump(request.optional_text("path"))}

    _handlers: ClassVar[dict[Command, Callable[[ControlServer, Request], Any]]] = {
        Command.HELLO: _hello,
        Command.STATUS: _status,
        Command.SNAPSHOT: _snapshot,
        Command.EVENTS: _events,
        Command.SHADOW: _shadow,
        Command.MASK: _mask,
        Command.UNMASK: _mask,
        Command.KICK: _inject,
        Command.CALL: _inject,
        Command.RESET: _reset,
        Command.FAULT: _fault,
        Command.RELOAD: _reload,
        Command.RECORD_DUMP: _record_dump,
    }
