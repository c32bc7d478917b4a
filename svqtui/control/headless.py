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
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from svqtui.control.sd_notify import NotifySocketError
from svqtui.control.server import ControlServer
from svqtui.control.service import ServiceNotifier
from svqtui.control.sockfile import SocketFile
from svqtui.errors import SvqtuiError
from svqtui.gc_policy import settle_after_start
from svqtui.model import LogEvent
from svqtui.unix_socket import SocketPathTooLong, check_path

if TYPE_CHECKING:
    from svqtui.reload import ReloadReport
    from svqtui.runtime import Runtime

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP


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


def _say(message: str) -> None:
    print(f"svqtui: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _signals() -> Iterator[int]:
    """Route SIGTERM, SIGINT and SIGHUP to a pipe; yields its read end, on
    which each signal arrives as one byte (its number)."""
    rfd, wfd = os.pipe2(os.O_CLOEXEC)
    os.set_blocking(wfd, False)

    def record(signum: int, frame: FrameType | None) -> None:
        pass  # the wakeup fd carries the signal number

    handled = (*STOP_SIGNALS, RELOAD_SIGNAL)
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


def run_headless(runtime: Runtime, out: TextIO | None = None) -> int:
    """Run ``runtime`` (not yet started) headless until SIGTERM/SIGINT."""
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
    sockfile = SocketFile(path)
    server = ControlServer(runtime, reload=lambda: reload_announced(runtime, service))
    code = EXIT_OK
    with _signals() as wakeup:
        try:
            try:
                sock = sockfile.claim()
            except SvqtuiError as err:
                _say(str(err))
                return EXIT_ERROR
            try:
                runtime.start()  # every device listens before start() returns
                server.start(sock)
            except BaseException:
                sock.close()
                raise
            runtime.log.info(
                f"headless: serving {path}; SIGHUP reloads the configuration, "
                "SIGTERM or Ctrl-C stops svqtui"
            )
            service.ready(_serving(runtime))
            settle_after_start()
            while True:  # the monitor refreshes on its own clock
                signums = os.read(wakeup, 64)
                if any(n in STOP_SIGNALS for n in signums):
                    break
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
            server.stop()
            sockfile.remove_socket()
            runtime.stop()
            sockfile.release()
    return code
