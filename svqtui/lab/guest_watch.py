"""The lab guest's health, followed across migrations from its serial console.

``GuestWatch`` reads the serial log of the QEMU the guest currently runs in
(``follow(path)`` switches to the destination's log after a migration; a line
the guest was half-way through printing at the switch-over is completed from
the new log, because the UART's state migrates with the VM) and keeps only
totals: verified I/O iterations, failures, the latest iteration number and
heartbeat. Unlike ``ConsoleLog`` it keeps no history, so a lab can run for
days. Each failure line goes to the event log as an error.

``GuestState`` is a frozen summary; ``status_text`` is the one line the
console shows on the lab VM ("guest: 1234 verified, heartbeat 0.4 s ago").
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from svqtui.eventlog import EventLog
from svqtui.lab.console import GuestLine, parse_line
from svqtui.lab.errors import GuestIOError, GuestTimeout

READ_LIMIT = 1 << 20  # bytes read per poll at most


@dataclass(frozen=True, slots=True)
class GuestState:
    """What the guest has reported so far (totals over every QEMU it ran in)."""

    booted: bool = False  # SVQ-READY seen: the disk is there and I/O starts
    verified: int = 0  # SVQ-IO ok lines
    failures: int = 0  # SVQ-IO FAIL and SVQ-ERROR lines
    last_iter: int | None = None  # the latest iteration the guest finished
    out_of_order: int = 0  # verified iterations whose number did not increase
    last_ok_at: float | None = None  # time.monotonic() of the latest verified I/O
    last_hb_at: float | None = None  # time.monotonic() of the latest heartbeat
    uptime_s: float | None = None  # the guest's /proc/uptime at its latest line
    last_failure: str | None = None
    logs: int = 0  # serial logs followed (1 + migrations)


def status_text(state: GuestState, now: float) -> str:
    """One line about the guest for the console."""
    if not state.booted and state.last_hb_at is None:
        return "guest: booting"
    parts = [f"{state.verified} I/O verified"]
    if state.failures:
        parts.append(f"{state.failures} FAILED")
    if state.last_hb_at is not None:
        parts.append(f"heartbeat {max(0.0, now - state.last_hb_at):.1f}s ago")
    if state.last_ok_at is not None and state.last_hb_at is not None:
        quiet = now - state.last_ok_at
        if quiet > 3.0:
            parts.append(f"no I/O for {quiet:.0f}s")
    return "guest: " + ", ".join(parts)


Predicate = Callable[[GuestState], bool]


class GuestWatch:
    """Follows the guest's serial output; thread-safe (``poll`` from one thread,
    ``state``/``wait`` from any)."""

    def __init__(
        self,
        log: EventLog | None = None,
        *,
        device_key: Callable[[], str | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log  # failure lines go here as errors
        self._device_key = device_key
        self._clock = clock
        self._lock = threading.Lock()
        self._path: Path | None = None
        self._offset = 0
        self._partial = b""
        self._state = GuestState()
        self._recent: collections.deque[str] = collections.deque(maxlen=4)

    @property
    def state(self) -> GuestState:
        return self._state

    @property
    def path(self) -> Path | None:
        return self._path

    def follow(self, path: Path) -> None:
        """Read what is left of the current log, then go on with ``path`` from its
        start (the partial last line carries over)."""
        with self._lock:
            if self._path is not None:
                self._read_locked()
            self._path = path
            self._offset = 0
            self._state = dataclasses.replace(self._state, logs=self._state.logs + 1)

    def poll(self) -> GuestState:
        """Read newly written lines and update the state."""
        with self._lock:
            self._read_locked()
            return self._state

    def _read_locked(self) -> None:
        if self._path is None:
            return
        try:
            with self._path.open("rb") as f:
                f.seek(self._offset)
                data = f.read(READ_LIMIT)
        except FileNotFoundError:
            return
        if not data:
            return
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()[-4096:]  # a line this long is not ours
        now = self._clock()
        state = self._state
        failures: list[str] = []
        for chunk in chunks:
            line = chunk.decode(errors="replace").rstrip("\r")
            event = parse_line(line, now)
            if event is None:
                if line.strip():
                    self._recent.append(line.strip())
                continue
            self._recent.append(event.raw)
            state = _apply(state, event, now)
            if event.is_failure:
                failures.append(event.raw)
        self._state = state
        if self.log is not None:
            for raw in failures:
                self.log.error(f"guest: {raw}", device_key=self._device_key())

    def tail(self) -> str:
        with self._lock:
            return " | ".join(self._recent)

    def wait(
        self,
        predicate: Predicate,
        timeout: float,
        what: str,
        *,
        fail_on_failure: bool = True,
        alive: Callable[[], bool] | None = None,
    ) -> GuestState:
        """Poll until ``predicate(state)``; ``GuestIOError`` if a failure line not
        in ``state`` yet appears first (``fail_on_failure``), ``GuestTimeout`` after ``timeout`` s
        or as soon as ``alive()`` turns false."""
        deadline = self._clock() + timeout
        failures_before = self._state.failures
        while True:
            state = self.poll()
            if predicate(state):
                return state
            if fail_on_failure and state.failures > failures_before:
                raise GuestIOError(f"guest reported {state.last_failure} while waiting for {what}")
            if alive is not None and not alive():
                raise GuestTimeout(f"gave up waiting for {what}: the lab is stopping")
            if self._clock() >= deadline:
                raise GuestTimeout(
                    f"no {what} within {timeout:g}s; guest console: {self.tail() or '(nothing)'}"
                )
            time.sleep(0.05)

    def wait_verified(
        self, count: int, timeout: float, *, alive: Callable[[], bool] | None = None
    ) -> GuestState:
        """Wait for ``count`` more verified I/O iterations than the state shows now
        (a failure line not read yet, or coming meanwhile, ends the wait)."""
        target = self._state.verified + count
        return self.wait(
            lambda s: s.verified >= target,
            timeout,
            f"{count} more verified I/O iteration(s)",
            alive=alive,
        )


def _apply(t: GuestState, event: GuestLine, now: float) -> GuestState:
    """The state after ``event`` (read at ``now``)."""
    changes: dict[str, object] = {}
    uptime = event.float_field("t")
    if uptime is not None:
        changes["uptime_s"] = uptime
    it = event.int_field("iter")
    if event.kind == "READY":
        changes["booted"] = True
    elif event.kind == "HB":
        changes["last_hb_at"] = now
    elif event.io_ok:
        changes.update(booted=True, verified=t.verified + 1, last_ok_at=now)
        if it is not None:
            if t.last_iter is not None and it <= t.last_iter:
                changes["out_of_order"] = t.out_of_order + 1
            changes["last_iter"] = it
    if event.is_failure:
        changes.update(failures=t.failures + 1, last_failure=event.raw)
        if it is not None:
            changes["last_iter"] = it
    return dataclasses.replace(t, **changes)  # type: ignore[arg-type]
