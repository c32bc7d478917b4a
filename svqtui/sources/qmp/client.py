"""One QMP connection to one QEMU, on top of qemu.qmp's ``QMPClient``.

It owns connecting (with a timeout, and the peer's pid from SO_PEERCRED, so a
configured socket's VM shows its pid, CPU and RSS without a process scan),
sending one command at a time (a lock: never more than one command in flight
per VM, and a timeout on each), event listeners, and turning every failure of
the library into one of svqtui's precise errors with a one-line message:
``QMPUnreachable`` (missing socket, refused, no greeting),
``QMPProtocolViolation`` (the peer does not speak QMP), ``QMPConnectionLost``
(closed or silent mid-session) and ``QMPCommandFailed`` (QEMU said no).

qemu.qmp logs its own failures through ``logging``; svqtui reports them
itself, one line each in the event log, so that library's log records are
kept off the terminal (they would draw over the console).

Bounded memory whatever the peer sends (docs/design.md#limits): qemu.qmp's
default all-events listener (``QMPClient.events``), which nothing drains,
is given a filter that takes no event, and every ``EventListener`` keeps a
``history`` of every event it ever took, so svqtui listens with
``BoundedListener`` instead: a queue of at most ``EVENT_QUEUE_MAX`` events,
no history, the oldest dropped (and counted) when the reader falls behind.
Replies and events are untrusted text: every string in them is made safe
(``svqtui.text_safety.safe_json``) before svqtui looks at it, and a value
nested deeper than any QMP reply svqtui reads is refused as a protocol
violation, one line, never an internal error.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from qemu.qmp import (
    ConnectError,
    EventListener,
    ExecInterruptedError,
    ExecuteError,
    QMPClient,
    Runstate,
    StateError,
)
from qemu.qmp.error import ProtocolError
from qemu.qmp.message import Message

from svqtui.sources.qmp.errors import (
    QMPCommandFailed,
    QMPConnectionLost,
    QMPError,
    QMPProtocolViolation,
    QMPUnreachable,
)
from svqtui.text_safety import JSONTooDeep, safe_json, safe_name, safe_text

EVENT_QUEUE_MAX = 256  # events svqtui has not read yet, per connection
TOO_DEEP = "JSON nested too deeply"
READ_LIMIT_BYTES = 1 << 20  # the longest QMP line svqtui reads (query-commands is ~20 KiB)

_lib_log = logging.getLogger("qemu.qmp")
_lib_log.addHandler(logging.NullHandler())
_lib_log.propagate = False


def _peer_pid(sock: socket.socket) -> int | None:
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    pid: int = struct.unpack("3i", creds)[0]
    return pid or None


def _short(err: BaseException) -> str:
    """The first line of an error's text, made safe (it may quote the peer)."""
    text = str(err).strip().splitlines()
    return safe_text(text[0] if text else type(err).__name__, 200)


def _describe_connect_failure(path: str, err: BaseException) -> QMPError:
    """The precise error for a failed connect (socket level or greeting)."""
    chain: list[BaseException] = []
    cause: object = err
    while isinstance(cause, BaseException) and len(chain) < 8:
        chain.append(cause)
        cause = getattr(cause, "exc", None)
    root = chain[-1]
    if isinstance(root, RecursionError):
        return QMPProtocolViolation(f"{path} does not speak QMP ({TOO_DEEP})")
    if isinstance(root, EOFError | ConnectionResetError | BrokenPipeError):
        return QMPUnreachable(
            f"{path} closed the connection before the QMP session began"
            " (is another client holding this monitor?)"
        )
    protocol = [
        c for c in chain if isinstance(c, ProtocolError) and not isinstance(c, ConnectError)
    ]
    if protocol:
        detail = _short(protocol[0])
        if root is not protocol[0]:
            detail = f"{detail}: {_short(root)}"
        return QMPProtocolViolation(f"{path} does not speak QMP ({detail})")
    if isinstance(root, OSError):
        return QMPUnreachable(f"cannot talk to {path}: {root.strerror or _short(root)}")
    return QMPUnreachable(f"cannot open a QMP session on {path}: {_short(root)}")


def _no_event(_event: Message) -> bool:
    return False


class BoundedListener(EventListener):
    """An ``EventListener`` with a bounded queue and no history.

    ``put`` never waits: when ``maxlen`` events are unread the oldest is
    dropped and counted in ``dropped`` (the reader learns of it from
    ``take_dropped()``). ``received`` counts every event accepted.
    """

    def __init__(self, names: Iterable[str], maxlen: int = EVENT_QUEUE_MAX) -> None:
        super().__init__(names=list(names))
        self._events: collections.deque[Message] = collections.deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self.received = 0
        self.dropped = 0
        self._dropped_unseen = 0

    async def put(self, event: Message) -> None:
        if not self.accept(event):
            return
        self.received += 1
        if len(self._events) == self._events.maxlen:
            self.dropped += 1
            self._dropped_unseen += 1
        self._events.append(event)
        self._ready.set()

    async def get(self) -> Message:
        while not self._events:
            self._ready.clear()
            await self._ready.wait()
        return self._events.popleft()

    def empty(self) -> bool:
        return not self._events

    def clear(self) -> list[Message]:
        out = list(self._events)
        self._events.clear()
        return out

    def take_dropped(self) -> int:
        """Events dropped since the last call."""
        n, self._dropped_unseen = self._dropped_unseen, 0
        return n

    @property
    def pending(self) -> int:
        return len(self._events)


def new_client(name: str) -> QMPClient:
    """A ``QMPClient`` whose default all-events listener takes nothing (it is
    never drained) and whose reads are bounded to ``READ_LIMIT_BYTES``."""
    client = QMPClient(name, readbuflen=READ_LIMIT_BYTES)
    client.events.event_filter = _no_event
    return client


class QMPConnection:
    """A QMP session to one QEMU; every method runs on the I/O loop."""

    def __init__(
        self,
        path: str,
        name: str,
        *,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 10.0,
    ) -> None:
        self.path = path
        self.name = name
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.pid: int | None = None
        self.version = "?"
        self._client: QMPClient | None = None
        self._lock = asyncio.Lock()
        self.commands_sent = 0

    @property
    def connected(self) -> bool:
        return self._client is not None and self._client.runstate is Runstate.RUNNING

    async def open(self) -> None:
        """Connect, read the greeting and negotiate; raise a QMPError."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, self.path), self.connect_timeout_s)
        except FileNotFoundError:
            sock.close()
            raise QMPUnreachable(f"no QMP socket at {self.path}") from None
        except ConnectionRefusedError:
            sock.close()
            raise QMPUnreachable(
                f"connection refused at {self.path} (nobody is listening: is QEMU running?)"
            ) from None
        except PermissionError:
            sock.close()
            raise QMPUnreachable(
                f"permission denied on {self.path} (run svqtui as the VM's user or root)"
            ) from None
        except TimeoutError:
            sock.close()
            raise QMPUnreachable(f"connecting to {self.path} timed out") from None
        except OSError as err:
            sock.close()
            raise QMPUnreachable(f"cannot connect to {self.path}: {err.strerror}") from None
        self.pid = _peer_pid(sock)
        client = new_client(self.name)
        try:
            await asyncio.wait_for(client.connect(sock), self.connect_timeout_s)
        except TimeoutError:
            sock.close()
            raise QMPUnreachable(
                f"no QMP greeting from {self.path} within {self.connect_timeout_s:g}s"
                " (is another client holding this monitor?)"
            ) from None
        except ConnectError as err:
            sock.close()
            raise _describe_connect_failure(self.path, err) from None
        self._client = client
        greeting = client.greeting
        v = greeting.QMP.version.get("qemu") if greeting is not None else None
        if isinstance(v, Mapping):
            self.version = safe_name(f"{v.get('major')}.{v.get('minor')}.{v.get('micro')}")

    async def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """Run one command (never two at once on this connection)."""
        client = self._client
        if client is None:
            raise QMPConnectionLost(f"not connected to {self.path}")
        async with self._lock:
            self.commands_sent += 1
            try:
                reply = await asyncio.wait_for(
                    client.execute(command, arguments), self.command_timeout_s
                )
                return safe_json(reply)
            except JSONTooDeep as err:
                await self._drop()
                raise QMPProtocolViolation(
                    f"{self.path} sent something that is not QMP as the reply to {command} ({err})"
                ) from None
            except ExecuteError as err:
                raise QMPCommandFailed(
                    command, safe_name(err.error_class), safe_text(str(err))
                ) from None
            except TimeoutError:
                await self._drop()
                raise QMPConnectionLost(
                    f"{self.path}: no answer to {command} within {self.command_timeout_s:g}s"
                ) from None
            except (ExecInterruptedError, StateError, EOFError, OSError):
                raise await self._lost(command) from None
            except ProtocolError as err:
                await self._drop()
                raise QMPProtocolViolation(
                    f"{self.path} sent something that is not QMP ({_short(err)})"
                ) from None

    async def _lost(self, command: str) -> QMPError:
        """Why the connection went away during ``command``."""
        client = self._client
        self._client = None
        if client is None:
            return QMPConnectionLost(f"{self.path}: connection closed during {command}")
        try:
            await client.disconnect()
        except ProtocolError as err:
            return QMPProtocolViolation(
                f"{self.path} sent something that is not QMP during {command} ({_short(err)})"
            )
        except (EOFError, OSError, QMPError, ConnectionError):
            pass
        except RecursionError:  # json.loads in the library's reader
            return QMPProtocolViolation(
                f"{self.path} sent something that is not QMP during {command} ({TOO_DEEP})"
            )
        except Exception as err:  # the library re-raises its reader's failure here
            return QMPConnectionLost(
                f"{self.path}: connection lost during {command} ({_short(err)})"
            )
        return QMPConnectionLost(f"{self.path} closed the connection during {command}")

    def listen(self, names: Iterable[str]) -> BoundedListener:
        """A bounded listener for these events (registered until the connection
        closes); what it yields is raw: pass it through ``safe_json``."""
        if self._client is None:
            raise QMPConnectionLost(f"not connected to {self.path}")
        listener = BoundedListener(names)
        self._client.register_listener(listener)
        return listener

    async def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            # closing a broken session: its error has been reported already
            with contextlib.suppress(Exception):
                await client.disconnect()

    async def close(self) -> None:
        """Disconnect (idempotent; never raises)."""
        await self._drop()
