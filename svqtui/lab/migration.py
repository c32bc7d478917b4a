"""Live-migrate the lab VM to its other slot, over TCP on loopback.

One migration (``Lab.migrate``, svqtui.lab.scenario, on the lab thread; this
module owns the QEMU side, ``run_migration``, and the result's figures):

1. the source's shadow mode is carried over: the destination's interposer
   device gets the same mode *before* its QEMU connects, so the destination's
   notifications take the same path from the first one; queues the operator
   holds masked are unmasked first (a call held on the source would never
   reach the guest once the source quits);
2. the destination QEMU starts with ``-incoming defer`` on the free slot (its
   vhost-user disk: the slot's interposer device, then the daemon's export of
   the same disk), and listens on ``tcp:127.0.0.1:0`` (``migrate-incoming``):
   the kernel picks a free port and query-migrate tells which, so two labs
   never race for a port;
3. the source migrates there (``migrate``; the ``events`` capability on, so
   the console's QMP sessions hear every status change at once, bandwidth
   unthrottled: it is loopback) while the console shows the progress from
   the source's query-migrate. ``Mode.LIVE`` (the default) migrates the
   running guest; ``Mode.PAUSED`` stops it first and resumes it on the
   destination (its downtime is then the whole migration). The Debian QEMU
   7.2 TCG here corrupts a live-migrated guest now and then when the host is
   loaded (kernel oopses right after the switch-over, reproduced without
   svqtui in the path, never seen with a paused guest): a known class of TCG
   bugs fixed upstream in QEMU 8.1 ("accel/tcg: Always lock pages before
   translation"), so unattended runs on busy machines use PAUSED;
4. once the source says ``completed`` and the destination runs, the lab VM row
   moves to the destination, the guest's serial log is followed there, and the
   source QEMU quits: its slot (and interposer device) is free for the way back.

A failed migration stops the destination and leaves the VM running where it
was; ``MigrationFailed`` says why (QEMU's error-desc).
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from svqtui.errors import LabError
from svqtui.lab.errors import MigrationFailed
from svqtui.lab.qmp import LabQMP
from svqtui.model import MigrationView


class Mode(enum.StrEnum):
    """How the lab migrates."""

    LIVE = "live"  # the guest runs during the migration (stopped only for the downtime)
    PAUSED = "paused"  # the guest is stopped for the whole migration, resumed on arrival


MIGRATE_TIMEOUT_S = 120.0
RESUME_TIMEOUT_S = 30.0
MAX_BANDWIDTH = 10 << 30  # bytes/s: QEMU 7.2 defaults to 32 MiB/s
POLL_S = 0.05
FAILED = frozenset({"failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """One migration's figures: QEMU's (query-migrate of the source) and the lab's."""

    source: str  # slot names
    destination: str
    shadow: bool
    mode: Mode
    total_ms: int | None  # query-migrate total-time
    downtime_ms: int | None  # query-migrate downtime
    setup_ms: int | None
    transferred: int | None  # bytes of RAM sent
    wall_s: float  # the whole step: destination start to source quit
    verified_at_switch: int  # guest I/O verified before the migration

    @classmethod
    def from_reply(
        cls,
        reply: Mapping[str, Any],
        names: tuple[str, str],
        *,
        shadow: bool,
        mode: Mode,
        verified_at_switch: int,
    ) -> MigrationResult:
        """The figures of the source's final query-migrate ``reply`` (``wall_s`` 0)."""
        return cls(
            source=names[0],
            destination=names[1],
            shadow=shadow,
            mode=mode,
            total_ms=_int(reply, "total-time"),
            downtime_ms=_int(reply, "downtime"),
            setup_ms=_int(reply, "setup-time"),
            transferred=_int(reply, "ram", "transferred"),
            wall_s=0.0,
            verified_at_switch=verified_at_switch,
        )

    def summary(self) -> str:
        mib = f"{self.transferred / 2**20:.0f} MiB" if self.transferred is not None else "? MiB"
        mode = "" if self.mode is Mode.LIVE else f" ({self.mode.value})"
        return (
            f"{self.source} -> {self.destination}{mode}, shadow {'on' if self.shadow else 'off'}: "
            f"total {_ms(self.total_ms)}, downtime {_ms(self.downtime_ms)}, {mib} sent, "
            f"{self.wall_s:.1f}s with QEMU start and quit"
        )

    def view(self) -> MigrationView:
        return MigrationView(
            status="completed",
            transferred=self.transferred,
            remaining=0,
            total=self.transferred,
            downtime_ms=self.downtime_ms,
            total_time_ms=self.total_ms,
        )


def _ms(value: int | None) -> str:
    return f"{value} ms" if value is not None else "? ms"


CRASH_HINT = (
    "QEMU 7.2's TCG corrupts a live-migrated guest now and then on a loaded host; "
    "--migration paused avoids it"
)


def incoming_port(reply: object) -> int:
    """The TCP port a destination listens on, from its query-migrate reply
    (``socket-address``: the address ``migrate-incoming`` bound, port 0 resolved)."""
    if isinstance(reply, Mapping):
        for addr in reply.get("socket-address") or ():
            if isinstance(addr, Mapping) and addr.get("type") == "inet":
                port = str(addr.get("port", ""))
                if port.isdigit() and 0 < int(port) < 65536:
                    return int(port)
    raise MigrationFailed(
        f"the destination did not say which port it listens on (query-migrate: {reply!r})"
    )


def _int(reply: Mapping[str, Any], *path: str) -> int | None:
    value: Any = reply
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def run_migration(
    src: LabQMP,
    dst: LabQMP,
    names: tuple[str, str],
    mode: Mode,
    alive: Callable[[], bool],
) -> Mapping[str, Any]:
    """Steps 2-3 up to a running destination (``names``: the source's and the
    destination's slot names, for errors; ``alive`` turning False gives up);
    the source's final query-migrate
    (in PAUSED mode with ``downtime`` replaced by the time the guest was stopped)."""
    for qmp in (dst, src):
        qmp.execute(
            "migrate-set-capabilities",
            {"capabilities": [{"capability": "events", "state": True}]},
        )
    route = f"{names[0]} -> {names[1]}"
    dst.execute("migrate-incoming", {"uri": "tcp:127.0.0.1:0"})
    port = incoming_port(dst.execute("query-migrate"))
    src.execute("migrate-set-parameters", {"max-bandwidth": MAX_BANDWIDTH})
    stopped = time.monotonic()
    if mode is Mode.PAUSED:
        src.execute("stop")
    src.execute("migrate", {"uri": f"tcp:127.0.0.1:{port}"})
    deadline = time.monotonic() + MIGRATE_TIMEOUT_S
    while True:
        # Success is the source's runstate turning postmigrate: QEMU sets it after
        # computing total-time and downtime (its query-migrate says "completed" a
        # moment earlier, with both still 0, and a QEMU that was once a destination
        # says "completed" until its own outgoing migration has begun).
        state = src.execute("query-status")
        answer = src.execute("query-migrate")
        reply: Mapping[str, Any] = answer if isinstance(answer, Mapping) else {}
        status = reply.get("status")
        if isinstance(state, Mapping) and state.get("status") == "postmigrate":
            break
        if status in FAILED:
            why = reply.get("error-desc", "no reason given")
            raise MigrationFailed(f"migration {route} {status}: {why}")
        if not alive():
            raise LabError("the lab is stopping")
        if time.monotonic() > deadline:
            src.execute("migrate_cancel")
            raise MigrationFailed(
                f"migration {route} did not finish within "
                f"{MIGRATE_TIMEOUT_S:g}s (status {status}); cancelled"
            )
        time.sleep(POLL_S)
    deadline = time.monotonic() + RESUME_TIMEOUT_S
    while True:
        state = dst.execute("query-status")
        status = state.get("status") if isinstance(state, Mapping) else None
        if status == "paused" and mode is Mode.PAUSED:
            dst.execute("cont")
            continue
        if status == "running":
            if mode is Mode.PAUSED:
                paused_ms = round((time.monotonic() - stopped) * 1000)
                return {**reply, "downtime": paused_ms}
            return reply
        if not alive() or time.monotonic() > deadline:
            raise MigrationFailed(
                f"the destination on slot {names[1]} did not start running after the "
                f"migration (status {state.get('status') if isinstance(state, Mapping) else '?'})"
            )
        time.sleep(POLL_S)
