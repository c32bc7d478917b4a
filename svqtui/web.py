"""``svqtui --web``: the console served to a browser by textual-serve.

textual-serve (a Textual project) runs one console process per browser tab,
with Textual's web driver speaking to the page over a websocket; this module
only builds that console's command line (the same svqtui arguments, minus the
web ones) and serves it. Each tab is a console of its own: on a host whose
devices run under ``svqtui --headless``, serve ``--web --attach`` so every tab
attaches to that one process instead of starting an engine of its own.

Bound to 127.0.0.1 by default. There is no authentication in front of it:
binding another address must be asked for by name and says so.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import shlex
import signal
import sys
from collections.abc import Sequence

from svqtui.errors import SvqtuiError

DEFAULT_PORT = 8470
PR_SET_PDEATHSIG = 1  # prctl(2)
WEB_OPTIONS = ("--web", "--port", "--bind")  # ours; every other argument goes to the console


class WebUnavailable(SvqtuiError):
    """textual-serve is not installed."""


def console_argv(argv: Sequence[str]) -> list[str]:
    """svqtui's arguments for each browser tab's console: ``argv`` without
    the web options (and their values)."""
    out: list[str] = []
    skip = False
    for word in argv:
        if skip:
            skip = False
            continue
        name = word.split("=", 1)[0]
        if name in WEB_OPTIONS:
            skip = name != "--web" and "=" not in word
            continue
        out.append(word)
    return out


def web_console_guard() -> None:
    """In a console that textual-serve started for a browser tab: die with the
    server (PR_SET_PDEATHSIG: SIGKILL), so a killed server leaves no console behind
    holding QMP monitors and interposer sockets. Best effort, Linux only."""
    if "web_driver" not in os.environ.get("TEXTUAL_DRIVER", ""):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # a stuck console ignores SIGTERM
        if os.getppid() == 1:  # the server died before the guard was set
            os.kill(os.getpid(), signal.SIGKILL)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(argv: Sequence[str], bind: str, port: int) -> int:
    """Serve the console on http://BIND:PORT until SIGINT/SIGTERM."""
    try:
        from textual_serve.server import Server
    except ImportError:
        raise WebUnavailable(
            "--web needs textual-serve: pip install 'svqtui[web]' (or pip install textual-serve)"
        ) from None
    # exec: the shell textual-serve starts becomes the console, so the console's
    # parent is this server and it can follow the server's death (web_console_guard)
    command = "exec " + shlex.join([sys.executable, "-m", "svqtui", *console_argv(argv)])
    host = "127.0.0.1" if bind == "localhost" else bind
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    if not is_loopback(host):
        print(
            f"svqtui: --web on {host}: there is no authentication in front of the console; "
            "anyone who can reach this address can drive it",
            file=sys.stderr,
        )
    print(f"svqtui: the console in a browser: {url}", file=sys.stderr, flush=True)
    Server(command, host=host, port=port, title="svqtui", public_url=url).serve()
    return 0
