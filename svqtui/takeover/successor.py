"""The new svqtui's side of a takeover (docs/design.md#takeover).

``take_over`` runs in ``svqtui --headless --takeover`` after the runtime has
started (engine, I/O loop, monitor; the vhost-user source with
``defer_listen``, so nothing is bound yet):

1. the handshake on the control socket (svqtui.takeover.handshake);
2. the bundle: the state document is checked whole (version, every field,
   every fd reference, the devices against this configuration, the engine's
   room) before anything is used; a refusal sends "error" with the one-line
   reason and closes every received fd (they are duplicates: the peers see
   nothing);
3. "have" -> wait for "released" (5 s deadline per step);
4. after "released" this process owns everything: every device is adopted
   (relayed rings armed in this engine, each call destination signalled
   once), the control socket and its lock are this process's. The caller
   serves the control socket, tells systemd, and then sends "serving"
   (``Successor.serving``), after which the old svqtui exits.
"""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from svqtui.config import MetricsListen
from svqtui.control.codec import decode_event
from svqtui.control.sockfile import SocketFile
from svqtui.errors import SvqtuiError
from svqtui.model import LogEvent
from svqtui.outputs.prometheus import MetricsServer
from svqtui.runtime import Runtime
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.sources.vhost_user.handover import DeviceState, check_fds, parse_device
from svqtui.takeover.errors import StateRefused, TakeoverAborted
from svqtui.takeover.handshake import request_handover
from svqtui.takeover.state import RECENT_EVENTS, FdSource, check, check_version
from svqtui.takeover.timeline import Timeline
from svqtui.takeover.transport import recv_bundle, recv_step, send_step
from svqtui.text_safety import safe_text

STEP_S = 5.0
#: Tests make the new svqtui fail at one step: answer, bundle, refuse, hang,
#: have, released (it dies there).
FAIL_AT_ENV = "SVQTUI_TAKEOVER_TEST_FAIL"


@dataclass(slots=True)
class ControlState:
    listen: int
    lock: int
    ino: int | None


@dataclass(slots=True)
class MetricsState:
    """O's Prometheus exporter: its listening socket, configured address and bound port."""

    listen: int
    host: str
    port: int
    bound: int

    @property
    def address(self) -> MetricsListen:
        return MetricsListen(self.host, self.port)


@dataclass(slots=True)
class TakeoverState:
    old_pid: int
    control: ControlState
    devices: list[DeviceState]
    metrics: MetricsState | None = None
    events_seq: int = 0  # the old event log's last number (0: not sent)
    events: list[LogEvent] = field(default_factory=list)  # its last lines


def _events(value: object) -> tuple[int, list[LogEvent]]:
    """The optional ``events`` part: the old log's last number and lines."""
    if value is None:
        return 0, []
    seq = value.get("seq") if isinstance(value, dict) else None
    recent = value.get("recent") if isinstance(value, dict) else None
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 0:
        raise StateRefused("takeover refused: events: no sequence number")
    if not isinstance(recent, list) or len(recent) > seq:
        raise StateRefused("takeover refused: events: no list of recent lines")
    try:
        return seq, [decode_event(e) for e in recent]
    except SvqtuiError as err:
        raise StateRefused(f"takeover refused: events: {err}") from None


def _marked(events: list[LogEvent], pid: int) -> list[LogEvent]:
    """The old svqtui's last lines (at most RECENT_EVENTS), made safe as every
    logged line is, and marked as its own (once: a line may pass on)."""
    return [
        replace(e, text=safe_text(e.text))
        if e.text.startswith("[svqtui pid ")
        else replace(e, text=safe_text(f"[svqtui pid {pid}] {e.text}"))
        for e in events[-RECENT_EVENTS:]
    ]


def _metrics(value: object, refs: FdSource) -> MetricsState | None:
    """The optional ``metrics`` part (absent: O had no exporter, or is older)."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise StateRefused("takeover refused: metrics: not an object")
    host, port, bound = value.get("host"), value.get("port"), value.get("bound")
    if not isinstance(host, str) or not all(
        isinstance(x, int) and not isinstance(x, bool) for x in (port, bound)
    ):
        raise StateRefused("takeover refused: metrics: no host, port or bound port")
    assert isinstance(port, int) and isinstance(bound, int)
    return MetricsState(refs.ref(value.get("listen"), "metrics.listen"), host, port, bound)


def parse(doc: dict[str, Any], fds: list[int]) -> TakeoverState:
    """The whole document, checked (StateRefused), fds checked where used."""
    check_version(doc)
    refs = FdSource(len(fds))
    control = doc.get("control")
    if not isinstance(control, dict):
        raise StateRefused("takeover refused: the state has no control socket")
    ino = control.get("ino")
    state = TakeoverState(
        old_pid=_int(doc.get("pid")),
        control=ControlState(
            listen=refs.ref(control.get("listen"), "control.listen"),
            lock=refs.ref(control.get("lock"), "control.lock"),
            ino=ino if isinstance(ino, int) else None,
        ),
        devices=[],
    )
    devices = doc.get("devices")
    if not isinstance(devices, list):
        raise StateRefused("takeover refused: the state has no device list")
    for i, dev in enumerate(devices):
        state.devices.append(parse_device(dev, refs, f"devices[{i}]"))
    state.metrics = _metrics(doc.get("metrics"), refs)
    state.events_seq, state.events = _events(doc.get("events"))
    check(doc, len(fds), refs.refs)
    for dev in state.devices:
        check_fds(dev, fds)
    return state


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _test_fail(step: str) -> None:
    what = os.environ.get(FAIL_AT_ENV)
    if what != step:
        return
    if step == "hang":
        time.sleep(3600)
    if step == "refuse":
        raise StateRefused("takeover refused: a test asked this svqtui to refuse")
    os._exit(3)


def _close_all(fds: list[int]) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)


class Successor:
    """A takeover in progress, from the new svqtui's side."""

    def __init__(
        self, runtime: Runtime, sockfile: SocketFile, timeline: Timeline | None = None
    ) -> None:
        self.timeline = timeline or Timeline(f"new svqtui pid {os.getpid()}")
        self.runtime = runtime
        self.sockfile = sockfile
        self._stream: socket.socket | None = None
        self.old_pid = 0
        self.committed = False  # "released" arrived: this process owns everything
        #: the Prometheus exporter (``metrics.listen``), serving once taken over
        self.metrics: MetricsServer | None = None
        self._own_metrics: socket.socket | None = None  # bound here: a new address

    def _source(self) -> VhostUserSource | None:
        found = [s for s in self.runtime.sources if isinstance(s, VhostUserSource)]
        return found[0] if found else None

    def take_over(self) -> socket.socket:
        """Steps 1-4; returns the control socket to serve. Before "released"
        any failure raises (one line) and leaves nothing behind."""
        path = self.runtime.config.control_path
        timeline = self.timeline
        # Garbage from the start-up is collected now, and none in the window
        # (the caller enables the collector again once it serves).
        gc.collect()
        gc.freeze()
        gc.disable()
        answer, stream = request_handover(path, timeline=timeline)
        self._stream = stream
        self.old_pid = _int(answer.get("pid"))
        _test_fail("answer")
        stream.settimeout(STEP_S)
        try:
            doc, fds = recv_bundle(stream)
            timeline.mark("bundle")
        except (SvqtuiError, OSError) as err:
            stream.close()
            raise TakeoverAborted(f"takeover failed: receiving the state: {err}") from None
        try:
            _test_fail("bundle")
            state = parse(doc, fds)
            self._check(state)
            _test_fail("refuse")
            _test_fail("hang")
            send_step(stream, "have", pid=os.getpid())
            timeline.mark("have sent")
            _test_fail("have")
            released = recv_step(stream)
            timeline.mark("released")
            if released["step"] != "released":
                raise TakeoverAborted(
                    f"takeover failed: the old svqtui sent {released['step']!r:.40}"
                )
        except Exception as err:  # a bug too: refuse, one line, nothing used
            failure = self._failure(err)
            with contextlib.suppress(OSError, SvqtuiError):
                send_step(stream, "error", message=str(failure))
            stream.close()
            _close_all(fds)
            if self._own_metrics is not None:
                self._own_metrics.close()
            raise failure from None
        self.committed = True
        _test_fail("released")
        self._apply_bases(state, released.get("bases"))
        relays = released.get("engine_relays")
        if isinstance(relays, int) and not isinstance(relays, bool):
            self.runtime.engine.relays_base = relays
        source = self._source()
        if source is not None:
            source.adopt(state.devices, fds)
        timeline.mark("armed")
        self.sockfile.adopt(fds[state.control.lock], state.control.ino)
        self._continue_events(state, released.get("events"))
        self._serve_metrics(state, fds)
        return socket.socket(fileno=fds[state.control.listen])

    def _continue_events(self, state: TakeoverState, at_release: object) -> None:
        """This event log numbers on from the old one's last number (sent
        with "released", with the lines logged since the capture)."""
        seq, earlier = state.events_seq, state.events
        if isinstance(at_release, dict):
            last, tail = at_release.get("seq"), at_release.get("tail")
            if isinstance(last, int) and not isinstance(last, bool) and last >= seq:
                seq = last
                with contextlib.suppress(SvqtuiError):  # past "released": nothing refused
                    earlier = [
                        *earlier,
                        *(decode_event(e) for e in (tail if isinstance(tail, list) else [])),
                    ]
        if seq:
            self.runtime.log.continue_from(seq, _marked(earlier[-seq:], state.old_pid))

    def _plan_metrics(self, state: TakeoverState) -> None:
        """Before "have": when this configuration's exporter address is not
        the old svqtui's, bind it now (a busy port refuses the takeover)."""
        mine = self.runtime.config.metrics
        theirs = state.metrics
        if mine is not None and (theirs is None or theirs.address != mine):
            self._own_metrics = MetricsServer(mine, self.runtime.monitor).bind()

    def _serve_metrics(self, state: TakeoverState, fds: list[int]) -> None:
        """After "released": serve the old svqtui's metrics socket, or the
        one bound for a new address (the old one closed, said in one line)."""
        mine, theirs, log = self.runtime.config.metrics, state.metrics, self.runtime.log
        if mine is None:
            if theirs is not None:
                os.close(fds[theirs.listen])
                log.info(
                    f"metrics: the old svqtui served {theirs.address}; this configuration "
                    "has no metrics.listen: closed"
                )
            return
        server = MetricsServer(mine, self.runtime.monitor)
        if self._own_metrics is not None:
            sock, self._own_metrics = self._own_metrics, None
            if theirs is not None:
                os.close(fds[theirs.listen])
        else:
            assert theirs is not None
            sock = socket.socket(fileno=fds[theirs.listen])
        # Scrapes wait in the backlog until a snapshot taken after the
        # adoption is out (the last one has none of the taken-over counters).
        server.start(sock, paused=True)
        self.metrics = server
        monitor = self.runtime.monitor

        def first_snapshot() -> None:
            seq = monitor.seq
            monitor.refresh_soon(wait=False)
            monitor.wait_newer(seq + 1, 5.0)  # one that started after the adoption
            server.resume()

        threading.Thread(target=first_snapshot, name="svqtui-metrics-start", daemon=True).start()
        if theirs is None:
            note = "bound here: the old svqtui had no exporter"
        elif theirs.address == mine:
            note = "taken over from the old svqtui"
        else:
            note = f"a new address: the old svqtui's {theirs.address} is closed"
        log.info(f"metrics: serving {server.url} ({note})")

    @staticmethod
    def _failure(err: Exception) -> SvqtuiError:
        """The one-line error for a failure before "released"."""
        if isinstance(err, TimeoutError):
            return TakeoverAborted(
                f"takeover failed: the old svqtui missed the {STEP_S:g} s step deadline"
            )
        if isinstance(err, SvqtuiError):
            return err
        if isinstance(err, OSError):
            return TakeoverAborted(f"takeover failed: {err.strerror or err}")
        return StateRefused(f"takeover refused: {type(err).__name__}: {err}")

    def _check(self, state: TakeoverState) -> None:
        source = self._source()
        if state.devices and source is None:
            raise StateRefused(
                "takeover refused: the old svqtui interposes vhost-user devices and this "
                "configuration has none"
            )
        if source is not None:
            source.takeover_check(state.devices)
        self._plan_metrics(state)
        engine = self.runtime.engine
        needed = sum(d.shadowed_rings for d in state.devices)
        room = engine.max_queues - engine.queue_count
        if needed > room:
            raise StateRefused(
                f"takeover refused: {needed} relayed rings, this engine has room for {room} "
                "(engine: max_queues)"
            )

    @staticmethod
    def _apply_bases(state: TakeoverState, bases: object) -> None:
        """The old engine's final totals (sent with "released") continue here."""
        if not isinstance(bases, dict):
            return
        for dev in state.devices:
            rings = bases.get(dev.name)
            if not isinstance(rings, dict):
                continue
            for index, pair in rings.items():
                ok = isinstance(pair, list) and len(pair) == 2
                if ok and all(isinstance(x, int) for x in pair) and str(index).isdigit():
                    dev.bases[int(index)] = (pair[0], pair[1])

    def serving(self) -> None:
        """Tell the old svqtui that this one serves: it exits now."""
        stream, self._stream = self._stream, None
        if stream is None:
            return
        with contextlib.suppress(OSError, SvqtuiError):
            send_step(stream, "serving", pid=os.getpid())
        self.timeline.mark("serving sent")
        stream.close()
