"""The service manager's notify protocol, spoken by svqtui itself (no libsystemd).

systemd (Type=notify) passes ``NOTIFY_SOCKET``: a unix datagram socket, a
path or, with a leading ``@``, an abstract name. Each notification is one
datagram of ``KEY=VALUE`` lines (``READY=1``, ``RELOADING=1``,
``STOPPING=1``, ``WATCHDOG=1``, ``STATUS=...``). ``WATCHDOG_USEC`` (and
``WATCHDOG_PID``, when set, naming this process) asks for ``WATCHDOG=1`` at
least that often. Without ``NOTIFY_SOCKET`` there is no service manager and
``Notifier.from_env`` returns None.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping

from svqtui.errors import ControlError


class NotifySocketError(ControlError):
    """NOTIFY_SOCKET is not an address svqtui can send to (raised and
    reported at start, never sent over the control socket)."""


def _address(value: str) -> str | bytes:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # an abstract socket name
    if not value.startswith("/"):
        raise NotifySocketError(f"NOTIFY_SOCKET={value!r} is neither a path nor an abstract @name")
    return value


class Notifier:
    """Sends notifications to one NOTIFY_SOCKET (thread-safe: one sendto each)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._to = _address(address)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self.failed: str | None = None  # the last send error, if any

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier | None:
        value = env.get("NOTIFY_SOCKET")
        return cls(value) if value else None

    def send(self, *fields: str) -> bool:
        """One datagram of ``fields`` (``KEY=VALUE`` each); False if it could not be sent."""
        data = "\n".join(f.replace("\n", " ") for f in fields).encode()
        try:
            self._sock.sendto(data, self._to)
        except OSError as err:
            self.failed = f"cannot notify {self.address}: {err.strerror or err}"
            return False
        self.failed = None
        return True

    def close(self) -> None:
        self._sock.close()


def watchdog_interval_s(env: Mapping[str, str] = os.environ) -> float | None:
    """The watchdog timeout systemd set for this process (None: no watchdog)."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and (not pid.isdigit() or int(pid) != os.getpid()):
        return None  # meant for another process
    return int(usec) / 1e6


def monotonic_usec() -> int:
    """CLOCK_MONOTONIC in microseconds (what RELOADING=1's MONOTONIC_USEC= wants)."""
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
