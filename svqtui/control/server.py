"""The control socket server: answers svqtui.control.protocol requests on the
Runtime's I/O loop.

The loop only reads request lines and writes replies; everything else (device
lookup, actions that may wait ~2 s on the engine or a vhost-user round trip,
encoding a large snapshot) runs in thread pools, so the loop keeps forwarding
vhost-user messages meanwhile. Actions run one at a time, in arrival order;
reads run beside them.

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
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

import svqtui
from svqtui.control.codec import encode_event, encode_snapshot
from svqtui.control.errors import ControlProtocolError
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
from svqtui.errors import ControlError, SvqtuiError
from svqtui.outputs.json_doc import snapshot_document
from svqtui.recording.errors import RecorderOff
from svqtui.sources.errors import QueueOutOfRange, UnknownDevice

if TYPE_CHECKING:
    from svqtui.model import DeviceView, Snapshot
    from svqtui.runtime import Runtime

MAX_CLIENTS = 32
LATEST_TIMEOUT_S = 5.0  # how long a command waits for the first snapshot


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


class ControlServer:
    """Serves one listening socket for one Runtime (started, on runtime.loop)."""

    def __init__(
        self,
        runtime: Runtime,
        *,
        refresh_after_action: bool = True,
        max_clients: int = MAX_CLIENTS,
    ) -> None:
        self.runtime = runtime
        self.refresh_after_action = refresh_after_action
        self.max_clients = max_clients
        self._actions = concurrent.futures.ThreadPoolExecutor(1, "svqtui-ctl-action")
        self._reads = concurrent.futures.ThreadPoolExecutor(2, "svqtui-ctl-read")
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.Task[None]] = set()

    # -- lifecycle (called from any thread but the I/O loop's) -------------

    def start(self, sock: socket.socket) -> None:
        """Serve the listening socket ``sock`` (from SocketFile.claim)."""
        self.runtime.loop.call(self._serve(sock), what="control socket: start serving")

    def stop(self) -> None:
        """Stop listening, drop every client, and finish the running actions."""
        if self.runtime.loop.running:
            with contextlib.suppress(Exception):
                self.runtime.loop.call(self._close(), what="control socket: close")
        self._reads.shutdown(wait=True, cancel_futures=True)
        self._actions.shutdown(wait=True, cancel_futures=True)

    async def _serve(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_unix_server(
            self._client, sock=sock, limit=MAX_REQUEST_BYTES
        )

    async def _close(self) -> None:
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
        self._clients.add(task)
        try:
            uid = _peer_uid(writer)
            if uid is not None and uid not in (0, os.getuid()):
                self.runtime.log.warning(f"control: refused a client of uid {uid}")
                return
            if len(self._clients) > self.max_clients:
                err = ControlError(f"too many control clients (at most {self.max_clients})")
                writer.write(Response.for_error(None, err).encode())
                await writer.drain()
                return
            await self._converse(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        except Exception as err:  # a bug: drop this client, keep serving the others
            self.runtime.log.error(f"control: client dropped: {type(err).__name__}: {err}")
        finally:
            self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            last = False
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as eof:
                line, last = eof.partial, True  # a final request without its newline
            except asyncio.LimitOverrunError:
                err = ControlProtocolError(
                    f"request line longer than {MAX_REQUEST_BYTES} bytes: closing the connection"
                )
                writer.write(Response.for_error(None, err).encode())
                await writer.drain()
                return
            if line.strip():
                writer.write(await self._answer(line))
                await writer.drain()
            if last:
                return

    async def _answer(self, line: bytes) -> bytes:
        rid: int | str | None = None
        try:
            obj = decode_line(line)
            rid = request_id(obj)
            request = Request.from_wire(obj)
        except ControlProtocolError as err:
            return Response.for_error(rid, err).encode()
        pool = self._actions if request.cmd in ACTIONS else self._reads
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(pool, self._reply, rid, request)
        except RuntimeError:  # the pool is shut down: svqtui is stopping
            return Response.for_error(rid, ControlError("svqtui is stopping")).encode()

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

    def _reset(self, request: Request) -> dict[str, Any]:
        if request.optional_text("device") is None:
            return self._act("reset all counters", None, lambda: self.runtime.reset(None))
        dev = self._device(request)
        return self._act(f"reset {dev.name}", dev, lambda: self.runtime.reset(dev.key))

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
        Command.RECORD_DUMP: _record_dump,
    }
