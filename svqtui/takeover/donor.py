"""The old svqtui's side of a takeover (docs/design.md#takeover).

``Donor.offer`` answers the ``takeover`` request (in the control server's
takeover thread): it refuses an unknown state version or a second takeover,
freezes every device at a message boundary (TakeoverBusy past the 5 s
switch budget, nothing held), captures the state, and starts the hand-over
thread on a fresh socket pair whose other end goes back with the answer.

The hand-over thread, each step with a 5 s deadline::

    O: bundle (state + fds) ->       N: checks it whole, builds nothing yet
    O: <- "have"                     (N is ready to serve)
    O: engine releases every relayed ring (no hand-back, fds kept);
       stops accepting scrapes; its event log stops numbering
    O: "released" + the final counter bases, the engine's relay count,
       the event log's number and lines since the capture ->
    O: <- "serving"                  (N serves everything)
    O: answers the scrapes it accepted, logs its timeline line,
       exits 0 (``on_handed_over``)

From the freeze on, devices refuse operator actions (TakeoverRunning).

Until "released" has been sent, any failure (N dies, closes, answers an
error, misses a deadline) takes the rings back into this engine, thaws the
devices, accepts control clients again and logs one line: this svqtui goes
on serving. After it, N owns everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import svqtui
from svqtui.control.codec import encode_event
from svqtui.control.protocol import PROTOCOL_VERSION, Request
from svqtui.control.server import ControlServer
from svqtui.control.sockfile import SocketFile
from svqtui.errors import SvqtuiError
from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.takeover.errors import StateRefused, TakeoverAborted, TakeoverBusy, TakeoverRunning
from svqtui.takeover.state import RECENT_EVENTS, STATE_VERSION, FdSink, header
from svqtui.takeover.timeline import Timeline
from svqtui.takeover.transport import recv_step, send_bundle, send_step

if TYPE_CHECKING:
    from svqtui.outputs.prometheus import MetricsServer

STEP_S = 5.0  # each step of the hand-over
FREEZE_S = 5.0  # the switch budget: a device must reach a message boundary within it
SERVING_S = 30.0  # after "released": how long N may take to say it serves
DRAIN_S = 2.0  # before exiting: scrapes this svqtui accepted are answered


class Donor:
    """Hands this headless svqtui over to a new one."""

    def __init__(
        self,
        loop: IOLoop,
        log: EventLog,
        sources: Callable[[], Sequence[object]],
        server: ControlServer,
        sockfile: SocketFile,
        on_handed_over: Callable[[int], None],
        reload_lock: threading.Lock | None = None,
        metrics: MetricsServer | None = None,
        relays: Callable[[], int] | None = None,
    ) -> None:
        """``on_handed_over(pid)`` ends this process (exit 0) once N serves;
        ``reload_lock`` is held from the freeze on (no reload meanwhile);
        ``metrics``: the Prometheus exporter, whose listening socket goes
        too (to a successor that asks for it); ``relays``: the engine's
        relay count, which N continues."""
        self.metrics = metrics
        self._relays = relays or (lambda: 0)
        self._optional: frozenset[str] = frozenset()
        self._events_seq = 0  # the event log's number at the capture
        self._timeline = Timeline(f"old svqtui pid {os.getpid()}")
        self._reload_lock = reload_lock or threading.Lock()
        self._loop = loop
        self._log = log
        self._sources = sources
        self._server = server
        self._sockfile = sockfile
        self._on_handed_over = on_handed_over
        self._running = threading.Lock()

    def _vhost_user(self) -> list[VhostUserSource]:
        return [s for s in self._sources() if isinstance(s, VhostUserSource)]

    # -- the request (the control server's takeover thread) -------------------------

    def offer(self, request: Request) -> tuple[dict[str, Any], socket.socket]:
        timeline = Timeline(f"old svqtui pid {os.getpid()}")
        timeline.set_origin(request.args.get("requested_at"))
        timeline.mark("received")
        versions = request.args.get("state_versions")
        if not isinstance(versions, list) or STATE_VERSION not in versions:
            raise StateRefused(
                f"takeover refused: this svqtui {svqtui.__version__} hands over state version "
                f"{STATE_VERSION}, the new one understands {versions!r:.40}; "
                "nothing changed (upgrade in steps, or restart)"
            )
        if request.args.get("protocol") != PROTOCOL_VERSION:
            raise StateRefused(
                f"takeover refused: control protocol {request.args.get('protocol')!r:.20}, "
                f"this svqtui speaks {PROTOCOL_VERSION}; nothing changed"
            )
        optional = request.args.get("optional")
        if not self._running.acquire(blocking=False):
            raise TakeoverRunning("takeover refused: a takeover of this svqtui is already running")
        if not self._reload_lock.acquire(timeout=FREEZE_S):
            self._running.release()
            raise TakeoverBusy("takeover refused: a configuration reload is running; try again")
        self._optional = frozenset(
            x for x in (optional if isinstance(optional, list) else []) if isinstance(x, str)
        )
        self._timeline = timeline
        gc.disable()  # no collection pause in the window (enabled again by _release)
        try:
            doc, fds = self._freeze_and_capture()
        except BaseException:
            self._release()
            raise
        timeline.mark("frozen")
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        thread = threading.Thread(
            target=self._hand_over, args=(mine, doc, fds), name="svqtui-handover", daemon=True
        )
        thread.start()
        return {"pid": os.getpid(), "state_version": STATE_VERSION}, theirs

    def _freeze_and_capture(self) -> tuple[dict[str, Any], list[int]]:
        self._loop.call(self._server.pause_accepting(), what="takeover: pause the control socket")
        try:
            return self._loop.call(self._capture(), FREEZE_S + 5, what="takeover: freeze")
        except BaseException:
            self._thaw()
            raise

    async def _capture(self) -> tuple[dict[str, Any], list[int]]:
        deadline = asyncio.get_running_loop().time() + FREEZE_S
        sources = self._vhost_user()
        for source in sources:
            await source.freeze(deadline)
        sink = FdSink()
        devices: list[dict[str, Any]] = []
        for source in sources:
            devices.extend(await source.capture(sink))
        control = {
            "listen": sink.add(self._server.listen_fd),
            "lock": sink.add(self._sockfile.lock_fd),
            "ino": self._sockfile.socket_ino,
            "path": self._sockfile.path,
        }
        self._events_seq, recent = self._log.recent(RECENT_EVENTS)
        doc: dict[str, Any] = {
            "pid": os.getpid(),
            "control": control,
            "devices": devices,
            "events": {"seq": self._events_seq, "recent": [encode_event(e) for e in recent]},
        }
        if self.metrics is not None and "metrics" in self._optional:
            # An fd only to a successor that asked for it: an older one
            # refuses an fd it does not know (docs/design.md#takeover).
            listen = self.metrics.listen
            doc["metrics"] = {
                "listen": sink.add(self.metrics.listen_fd),
                "host": listen.host,
                "port": listen.port,
                "bound": self.metrics.port,
            }
        # The transport sends from another thread: send duplicates, so that
        # nothing the loop might close meanwhile is sent under a reused number.
        fds = [os.dup(fd) for fd in sink.fds]
        return header(doc), fds

    def _thaw(self) -> None:
        self._log.take_back()

        async def thaw() -> None:
            for source in self._vhost_user():
                await source.rearm()
                source.thaw()
            await self._server.resume_accepting()
            if self.metrics is not None:
                self.metrics.resume()

        try:
            self._loop.call(thaw(), what="takeover: resume")
        except SvqtuiError as err:  # the loop is gone: svqtui is stopping anyway
            self._log.error(f"takeover: resuming failed: {err}")

    # -- the hand-over thread -------------------------------------------------------------

    def _hand_over(self, sock: socket.socket, doc: dict[str, Any], fds: list[int]) -> None:
        released = False
        try:
            sock.settimeout(STEP_S)
            try:
                send_bundle(sock, doc, fds)
            finally:
                for fd in fds:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            timeline = self._timeline
            timeline.mark("bundle sent")
            step = self._step(sock, "have")
            timeline.mark("have")
            bases = self._loop.call(self._release_engine(), what="takeover: release the engine")
            timeline.mark("engine released")
            if self.metrics is not None and "metrics" in self._optional:
                self.metrics.pause()  # N serves its socket from here
            seq, tail = self._log.hand_over(self._events_seq)  # N numbers on from seq
            events = {"seq": seq, "tail": [encode_event(e) for e in tail[-RECENT_EVENTS:]]}
            try:
                send_step(
                    sock, "released", bases=bases, engine_relays=self._relays(), events=events
                )
            except OSError as err:
                raise TakeoverAborted(f"the new svqtui went away: {err.strerror or err}") from None
            released = True
            timeline.mark("released sent")
            pid = step.get("pid")
            sock.settimeout(SERVING_S)
            try:
                self._step(sock, "serving")
            except TimeoutError:
                pass  # alive but slow: it holds everything now, never both serving
            except (SvqtuiError, OSError) as err:
                # It died before serving: its fds are closed, ours are all
                # still open, so this svqtui can take its rings back.
                self._thaw()
                self._log.error(
                    f"takeover failed after the engine was released: {err}; the new svqtui "
                    "is gone, this svqtui goes on serving (messages it read may be lost)"
                )
                self._release()
                return
            timeline.mark("serving")
            if self.metrics is not None:
                self.metrics.pause()
                self.metrics.drain(DRAIN_S)  # a scrape accepted here gets its answer
                timeline.mark("metrics drained")
            timeline.mark("exit")
            self._log.info(timeline.line())
            self._log.info(f"takeover: handed over to svqtui pid {pid}; this svqtui exits")
            self._on_handed_over(pid if isinstance(pid, int) else 0)
        except Exception as err:  # a bug too: never leave this svqtui frozen
            why = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            if isinstance(err, TimeoutError):
                why = f"the new svqtui missed the {STEP_S:g} s step deadline"
            elif not isinstance(err, SvqtuiError | OSError):
                why = f"internal error: {type(err).__name__}: {err}"
            if not released:
                self._thaw()
                self._log.error(f"takeover failed: {why}; this svqtui goes on serving")
        finally:
            sock.close()
            if not released:
                self._release()

    def _release(self) -> None:
        """The takeover is over and this svqtui goes on: reloads and the
        next takeover may run."""
        gc.enable()
        self._reload_lock.release()
        self._running.release()

    def _step(self, sock: socket.socket, expected: str) -> dict[str, Any]:
        msg = recv_step(sock)
        if msg["step"] == "error":
            raise TakeoverAborted(f"the new svqtui gave up: {str(msg.get('message'))[:300]}")
        if msg["step"] != expected:
            raise TakeoverAborted(f"the new svqtui sent {msg['step']!r:.40}, expected {expected!r}")
        return msg

    async def _release_engine(self) -> dict[str, dict[str, list[int]]]:
        bases: dict[str, dict[str, list[int]]] = {}
        for source in self._vhost_user():
            for name, rings in (await source.release_engine()).items():
                bases[name] = {str(i): [k, c] for i, (k, c) in rings.items()}
        return bases
