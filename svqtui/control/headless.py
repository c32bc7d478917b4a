"""``svqtui --headless``: the engine, the sources and the control socket, no UI.

A VM's vhost-user device depends on svqtui's interposer staying up, so this
mode keeps it up without a terminal: it claims the control socket (refusing
to start when another svqtui serves it, before any interposer binds its
sockets), starts the runtime, serves ``svqtui ctl`` on the runtime's control
loop, writes every event log line to stderr, refreshes the monitor every
``refresh`` seconds, and on SIGTERM or SIGINT stops the sources, removes the
socket and exits 0.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from svqtui.control.server import ControlServer
from svqtui.control.sockfile import SocketFile
from svqtui.errors import SvqtuiError
from svqtui.model import LogEvent
from svqtui.unix_socket import SocketPathTooLong, check_path

if TYPE_CHECKING:
    from svqtui.runtime import Runtime

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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


def run_headless(runtime: Runtime, out: TextIO | None = None) -> int:
    """Run ``runtime`` (not yet started) headless until SIGTERM/SIGINT."""
    path = runtime.config.control_path
    try:
        check_path(path, "control", "choose a shorter path")
    except SocketPathTooLong as err:
        _say(f"bad configuration: {runtime.config.path}: control.socket: {err}")
        return EXIT_CONFIG
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    runtime.log.subscribe(_StderrLog(out or sys.stderr))
    sockfile = SocketFile(path)
    server = ControlServer(runtime)
    code = EXIT_OK
    try:
        try:
            sock = sockfile.claim()
        except SvqtuiError as err:
            _say(str(err))
            return EXIT_ERROR
        try:
            runtime.start()
            server.start(sock)
        except BaseException:
            sock.close()
            raise
        runtime.log.info(f"headless: serving {path}; SIGTERM or Ctrl-C stops svqtui")
        stop.wait()  # the monitor refreshes on its own clock
        runtime.log.info("headless: stopping")
    except SvqtuiError as err:
        _say(str(err))
        code = EXIT_ERROR
    finally:
        server.stop()
        sockfile.remove_socket()
        runtime.stop()
        sockfile.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return code
