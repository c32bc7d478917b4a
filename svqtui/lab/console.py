"""Parse and follow the lab guest's serial console (the ``SVQ-*`` lines).

The protocol is documented in ``svqtui.lab.guest_init``. ``parse_line`` turns one
line into a ``GuestLine`` (kind, status, fields); ``ConsoleLog`` tails the
serial log file QEMU writes, keeps every line and parsed event, and offers
waits that end early, with a precise error, when the guest reports a failure
or its QEMU dies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from svqtui.lab.errors import GuestIOError, GuestTimeout, LabProcessError

PREFIX = "SVQ-"


@dataclass(frozen=True, slots=True)
class GuestLine:
    """One ``SVQ-<kind> [status] key=value ...`` line; ``detail`` takes the rest of the line."""

    kind: str  # BOOT, READY, IO, IRQ, HB, DONE, ERROR
    status: str | None  # "ok" / "FAIL" for IO, else None
    fields: dict[str, str]
    raw: str
    seen_at: float = field(default=0.0, compare=False)  # time.monotonic() when read

    def int_field(self, key: str) -> int | None:
        """``fields[key]`` as an int, or None if absent or not a number."""
        value = self.fields.get(key, "")
        return int(value) if value.isdigit() else None

    def float_field(self, key: str) -> float | None:
        try:
            return float(self.fields[key])
        except (KeyError, ValueError):
            return None

    @property
    def io_ok(self) -> bool:
        return self.kind == "IO" and self.status == "ok"

    @property
    def is_failure(self) -> bool:
        return (self.kind == "IO" and self.status != "ok") or self.kind == "ERROR"


def parse_line(line: str, seen_at: float = 0.0) -> GuestLine | None:
    """The event on ``line``, or None if it is not an ``SVQ-`` line (kernel output...)."""
    start = line.find(PREFIX)
    if start < 0:
        return None
    text = line[start:].strip()
    head, _, rest = text.partition(" ")
    kind = head[len(PREFIX) :]
    if not kind.isalpha() or not kind.isupper():
        return None
    detail_at = rest.find("detail=")
    detail = None
    if detail_at >= 0 and (detail_at == 0 or rest[detail_at - 1] == " "):
        detail = rest[detail_at + len("detail=") :]
        rest = rest[:detail_at]
    status: str | None = None
    fields: dict[str, str] = {}
    for token in rest.split():
        key, sep, value = token.partition("=")
        if sep:
            fields[key] = value
        elif status is None and not fields:
            status = token
    if detail is not None:
        fields["detail"] = detail
    return GuestLine(kind, status, fields, text, seen_at)


Predicate = Callable[[GuestLine], bool]


class ConsoleLog:
    """Follows a serial log file; ``poll()`` reads what was appended since last time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        self.events: list[GuestLine] = []
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[GuestLine]:
        """Read newly written complete lines; return the events among them."""
        try:
            with self.path.open("rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        if not data:
            return []
        self._offset += len(data)
        chunks = (self._partial + data).split(b"\n")
        self._partial = chunks.pop()
        now = time.monotonic()
        new: list[GuestLine] = []
        for chunk in chunks:
            line = chunk.decode(errors="replace").rstrip("\r")
            self.lines.append(line)
            event = parse_line(line, now)
            if event is not None:
                self.events.append(event)
                new.append(event)
        return new

    # ---- summaries -------------------------------------------------------------

    def mark(self) -> int:
        """The index the next event will get (after reading what is there): pass it
        as ``since`` to wait only for what the guest prints from now on."""
        self.poll()
        return len(self.events)

    def of_kind(self, kind: str) -> list[GuestLine]:
        return [e for e in self.events if e.kind == kind]

    @property
    def io_ok(self) -> list[GuestLine]:
        return [e for e in self.events if e.io_ok]

    @property
    def failures(self) -> list[GuestLine]:
        return [e for e in self.events if e.is_failure]

    def irq_counts(self) -> dict[str, int]:
        """The latest count of each virtio interrupt line (name -> count)."""
        counts: dict[str, int] = {}
        for e in self.of_kind("IRQ"):
            count = e.int_field("count")
            if count is not None:
                counts[e.fields.get("name", "?")] = count
        return counts

    def tail(self, lines: int = 8) -> str:
        return " | ".join(line for line in self.lines[-lines:] if line.strip())

    # ---- waits -----------------------------------------------------------------

    def _check(self, predicate: Predicate, cursor: list[int], fail_fast: bool) -> GuestLine | None:
        """Offer each event from ``cursor[0]`` on to ``predicate`` exactly once."""
        self.poll()
        while cursor[0] < len(self.events):
            event = self.events[cursor[0]]
            cursor[0] += 1
            if predicate(event):
                return event
            if fail_fast and event.is_failure:
                raise GuestIOError(f"guest reported {event.raw} (serial log {self.path})")
        return None

    def _give_up(self, what: str, remaining: float, dead: bool) -> None:
        if dead:
            raise LabProcessError(
                f"the guest's QEMU exited while waiting for {what}; "
                f"console: {self.tail() or '(empty)'} (serial log {self.path})"
            )
        if remaining <= 0:
            raise GuestTimeout(
                f"no {what} on the guest console: last lines: {self.tail() or '(none)'} "
                f"(serial log {self.path})"
            )

    def wait_for(
        self,
        predicate: Predicate,
        timeout: float,
        what: str,
        *,
        since: int = 0,
        fail_fast: bool = True,
        alive: Callable[[], bool] | None = None,
    ) -> GuestLine:
        """The first event (from index ``since``) matching ``predicate``, which sees
        each event once, in order (so it may count). Raises
        ``GuestIOError`` on an earlier failure line if ``fail_fast``,
        ``LabProcessError`` if ``alive()`` turns false, ``GuestTimeout`` after
        ``timeout`` s; ``what`` names the awaited thing in those errors."""
        deadline = time.monotonic() + timeout
        cursor = [since]
        while True:
            dead = alive is not None and not alive()  # sampled before reading the log
            found = self._check(predicate, cursor, fail_fast)
            if found is not None:
                return found
            self._give_up(what, deadline - time.monotonic(), dead)
            time.sleep(0.02)

    async def wait_for_async(
        self,
        predicate: Predicate,
        timeout: float,
        what: str,
        *,
        since: int = 0,
        fail_fast: bool = True,
        alive: Callable[[], bool] | None = None,
    ) -> GuestLine:
        """``wait_for`` for asyncio code: polls without blocking the event loop."""
        deadline = time.monotonic() + timeout
        cursor = [since]
        while True:
            dead = alive is not None and not alive()  # sampled before reading the log
            found = self._check(predicate, cursor, fail_fast)
            if found is not None:
                return found
            self._give_up(what, deadline - time.monotonic(), dead)
            await asyncio.sleep(0.02)


def nth_io_ok(n: int) -> Predicate:
    """Matches the ``n``-th verified I/O among the events it is shown (a fresh
    predicate per wait: it counts)."""
    seen = 0

    def predicate(event: GuestLine) -> bool:
        nonlocal seen
        if event.io_ok:
            seen += 1
        return seen >= n

    return predicate
