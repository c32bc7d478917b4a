"""``svqtui --headless``: the engine, the sources and the control socket, no UI.

A VM's vhost-user device depends on svqtui's interposer staying up, so this
mode keeps it up without a terminal: it claims the control socket (refusing
to start when another svqtui serves it, before any interposer binds its
sockets), starts the runtime, serves ``svqtui ctl`` on the runtime's control
loop, writes every event log line to stderr, refreshes the monitor every
``refresh`` seconds, and on SIGTERM or SIGINT stops the sources, removes the
socket and exits 0.

SIGHUP reloads the configuration (``Runtime.reload_config``,
docs/design.md#reload), as ``svqtui ctl reload`` does; an invalid file is
refused with one line and the running configuration is kept. Under systemd
(``NOTIFY_SOCKET``) it tells the service manager READY once every listen
socket is up, RELOADING/READY around a reload, STOPPING, and feeds the
watchdog while the engine's heartbeat is fresh (svqtui.control.service).
Signals reach the main thread through a wakeup pipe: the handlers only
record them, so a reload never runs inside a signal handler.

``--takeover`` (docs/design.md#takeover) starts the runtime with nothing
bound, then takes everything over from the svqtui serving the same control
socket (svqtui.takeover.successor): devices, connections, rings, the engine's
eventfds, the control socket and its lock, the Prometheus exporter's
listening socket (``metrics.listen``, which this mode serves), the event
log's numbering; it tells systemd its pid
(``MAINPID=``, with READY) before the old process exits 0. Any headless
svqtui can be taken over (svqtui.takeover.donor); SIGUSR2 makes it start its
own successor (``svqtui ... --takeover`` of the installed version), which is
how a service upgrades without a restart.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from svqtui.control.protocol import Request
from svqtui.control.sd_notify import NotifySocketError
from svqtui.control.server import ControlServer
from svqtui.control.service import ServiceNotifier
from svqtui.control.sockfile import SocketFile
from svqtui.errors import SvqtuiError
from svqtui.gc_policy import settle_after_start
from svqtui.model import LogEvent
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.takeover.donor import Donor
from svqtui.takeover.errors import TakeoverError
from svqtui.takeover.successor import Successor
from svqtui.takeover.timeline import Timeline, process_started_at
from svqtui.thread_priority import end_quiet_start
from svqtui.unix_socket import SocketPathTooLong, check_path

if TYPE_CHECKING:
    from svqtui.outputs.prometheus import MetricsServer
    from svqtui.reload import ReloadReport
    from svqtui.runtime import Runtime

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP
SUCCESSOR_SIGNAL = signal.SIGUSR2


def format_event(event: LogEvent) -> str:
    """One stderr line: time, level, the device (and queue) it is about, text."""
    stamp = time.strftime("%H:%M:%S", time.localtime(event.time_s))
    millis = int(event.time_s * 1000) % 1000
    where = ""
    if event.device_key is not None:
        queue = f"#{event.queue_index}" if event.queue_index is not None else ""
        where = f"[{event.device_key}{queue}] "
    return f"{stamp}.{millis:03d} {event.level:<7} {where}{event.text}"


class _StderrLog:
    """Writes each event as one line; called from whichever thread logs."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self._lock = threading.Lock()

    def __call__(self, event: LogEvent) -> None:
        line = format_event(event).replace("\n", " ") + "\n"
        with self._lock:
            try:
                self._out.write(line)
                self._out.flush()
            except (OSError, ValueError):  # stderr closed: keep relaying anyway
                pass


def _offer(donor: Donor | None, request: Request) -> tuple[dict[str, Any], socket.socket]:
    if donor is None:
        raise TakeoverError("takeover refused: this svqtui is still starting")
    return donor.offer(request)


def _say(message: str) -> None:
    print(f"svqtui: {message}", file=sys.stderr, flush=True)


def _serve_metrics(runtime: Runtime) -> MetricsServer:
    """The Prometheus exporter on ``metrics.listen`` (MetricsListenError)."""
    from svqtui.outputs.prometheus import serve_metrics

    listen = runtime.config.metrics
    assert listen is not None
    metrics = serve_metrics(listen, runtime.monitor)
    note = "" if listen.loopback else " (no authentication: any host can read)"
    runtime.log.info(f"metrics: serving {metrics.url}{note}")
    return metrics


@contextlib.contextmanager
def _signals() -> Iterator[int]:
    """Route SIGTERM, SIGINT and SIGHUP to a pipe; yields its read end, on
    which each signal arrives as one byte (its number)."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(wfd, False)

    def record(signum: int, frame: FrameType | None) -> None:
        pass  # the wakeup fd carries the signal number

    handled = (*STOP_SIGNALS, RELOAD_SIGNAL, SUCCESSOR_SIGNAL)
    previous = {sig: signal.signal(sig, record) for sig in handled}
    old_wakeup = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    try:
        yield rfd
    finally:
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(rfd)
        os.close(wfd)


def _engine_health(runtime: Runtime) -> tuple[bool, str]:
    health = runtime.engine.health()
    if health.alive:
        return True, ""
    if not health.thread_alive:
        return False, "the relay engine thread is not running"
    return False, f"the relay engine's heartbeat is {health.heartbeat_age_s:.1f} s old"


def _serving(runtime: Runtime) -> str:
    """STATUS= line: what svqtui serves."""
    statuses = [s.status() for s in runtime.sources]
    if not statuses:
        return "serving"
    return "serving; " + "; ".join(f"{s.name}: {s.message}" for s in statuses)


def reload_announced(runtime: Runtime, service: ServiceNotifier) -> ReloadReport:
    """Reload the configuration between RELOADING=1 and READY=1 (SIGHUP and
    ``svqtui ctl reload``); raises ``ConfigError`` when the file is invalid."""
    service.reloading()
    try:
        return runtime.reload_config()
    finally:
        service.ready(_serving(runtime))


def _handed_over(pid: int) -> None:
    """The takeover is done: the new svqtui (``pid``) owns every socket,
    fd and the lock. Exit at once, closing nothing by hand: a cleanup
    would unlink the sockets the new process now serves."""
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    os._exit(EXIT_OK)


def start_successor(runtime: Runtime) -> None:
    """SIGUSR2: start ``svqtui ... --takeover`` of the installed version
    with this process's arguments (under systemd: in the service's cgroup,
    with its NOTIFY_SOCKET); it takes this svqtui over."""
    args = [a for a in sys.argv[1:] if a != "--takeover"]
    env = {k: v for k, v in os.environ.items() if k not in ("WATCHDOG_PID", "LISTEN_PID")}
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "svqtui", *args, "--takeover"],
            stdin=subprocess.DEVNULL,
            env=env,
        )
    except OSError as err:
        runtime.log.error(f"headless: SIGUSR2: cannot start a successor: {err}")
        return
    runtime.log.info(f"headless: SIGUSR2: started a successor (pid {child.pid}) to take over")


def _take_over(runtime: Runtime, sockfile: SocketFile) -> tuple[socket.socket, Successor]:
    """Start the runtime with nothing bound, then take over (raises one
    line). A failure after "released" exits at once without cleaning up:
    the old svqtui sees this process gone and takes everything back, and a
    cleanup here would unlink the sockets it serves."""
    timeline = Timeline(f"new svqtui pid {os.getpid()}")
    started = process_started_at()
    if started is not None:
        timeline.mark("process start", started)
    timeline.mark("headless")
    end_quiet_start()  # before any thread starts: they inherit it
    for source in runtime.sources:
        if isinstance(source, VhostUserSource):
            source.defer_listen = True
    runtime.start()
    timeline.mark("runtime started")
    successor = Successor(runtime, sockfile, timeline)
    try:
        return successor.take_over(), successor
    except BaseException as err:
        if successor.committed:
            _say(f"takeover failed after the old svqtui released everything: {err}")
            os._exit(EXIT_ERROR)
        raise


def run_headless(runtime: Runtime, out: TextIO | None = None, takeover: bool = False) -> int:
    """Run ``runtime`` (not yet started) headless until SIGTERM/SIGINT, or
    until a new svqtui took it over; with ``takeover``, take over the svqtui
    serving the control socket first."""
    path = runtime.config.control_path
    try:
        check_path(path, "control", "choose a shorter path")
    except SocketPathTooLong as err:
        _say(f"bad configuration: {runtime.config.path}: control.socket: {err}")
        return EXIT_CONFIG
    runtime.log.subscribe(_StderrLog(out or sys.stderr))
    try:
        service = ServiceNotifier.from_env(lambda: _engine_health(runtime), runtime.log)
    except NotifySocketError as err:
        _say(str(err))
        return EXIT_CONFIG
    metrics: MetricsServer | None = None
    if not takeover and runtime.config.metrics is not None:
        try:
            metrics = _serve_metrics(runtime)
        except SvqtuiError as err:
            _say(str(err))
            return EXIT_ERROR
    sockfile = SocketFile(path)
    donor: Donor | None = None
    server = ControlServer(
        runtime,
        reload=lambda: reload_announced(runtime, service),
        takeover=lambda request: _offer(donor, request),
    )
    donor = Donor(
        runtime.loop,
        runtime.log,
        lambda: runtime.sources,
        server,
        sockfile,
        _handed_over,
        reload_lock=runtime.reload_lock,
        metrics=metrics,
        relays=lambda: runtime.engine.health().relays,
    )
    code = EXIT_OK
    with _signals() as wakeup:
        try:
            successor: Successor | None = None
            try:
                if takeover:
                    sock, successor = _take_over(runtime, sockfile)
                else:
                    sock = sockfile.claim()
            except (SvqtuiError, OSError) as err:
                _say(str(err) if isinstance(err, SvqtuiError) else f"takeover failed: {err}")
                runtime.stop()
                sockfile.release()
                return EXIT_ERROR
            try:
                if successor is None:
                    runtime.start()  # every device listens before start() returns
                server.start(sock)
                if successor is not None:
                    successor.timeline.mark("control serving")
            except BaseException:
                sock.close()
                raise
            if successor is not None:
                metrics = donor.metrics = successor.metrics
                runtime.log.info(
                    f"headless: took over from svqtui pid {successor.old_pid}; serving {path}"
                )
            runtime.log.info(
                f"headless: serving {path}; SIGHUP reloads the configuration, "
                "SIGUSR2 starts a successor that takes over, SIGTERM or Ctrl-C stops svqtui"
            )
            service.ready(_serving(runtime))
            if successor is not None:
                successor.timeline.mark("ready")
                successor.serving()  # the old svqtui exits now
                gc.enable()
                runtime.log.info(successor.timeline.line())
            settle_after_start()
            while True:  # the monitor refreshes on its own clock
                signums = os.read(wakeup, 64)
                if any(n in STOP_SIGNALS for n in signums):
                    break
                if SUCCESSOR_SIGNAL in signums:
                    start_successor(runtime)
                if RELOAD_SIGNAL in signums:
                    runtime.log.info("headless: SIGHUP: reloading the configuration")
                    with contextlib.suppress(SvqtuiError):  # logged by reload_config
                        reload_announced(runtime, service)
            runtime.log.info("headless: stopping")
        except SvqtuiError as err:
            _say(str(err))
            code = EXIT_ERROR
        finally:
            service.stopping()
            if metrics is not None:
                metrics.stop()
            server.stop()
            sockfile.remove_socket()
            runtime.stop()
            sockfile.release()
    return code
