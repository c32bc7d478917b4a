"""``svqtui lab --check``: the whole lab demo, unattended, one line per step.

Each step does what an operator would do in the console, through the same
runtime (``Runtime.set_shadow``/``set_masked``/``inject``, the monitor's
snapshots, the lab's migrate, stall and dropped call), and checks what the
console would show, with generous timeouts (a loaded 2-core machine) and never
a timing assertion:

boot, live counters, verified I/O, shadow on (kicks and calls counted), mask
(PENDING builds, unmask delivers it), stall (the stuck detector fires and
clears), drop a call and inject one (the lab's D then c: stuck with "device
owes a call", the guest's I/O stops, the injected call brings it back),
migrate there with shadow on (carried to the destination, counters go on
there), shadow off, migrate back with shadow off, any further
ping-pong migrations (``--migrations N``), the guest's whole record (every
iteration verified once, in order, none failed), and after teardown, that no
process of the lab is left.

A line is ``PASS <step> <figures>`` or ``FAIL <step> <why>``; after a failure
the remaining steps are ``SKIP``. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO

import psutil

from svqtui.engine.engine import Link
from svqtui.errors import SvqtuiError
from svqtui.lab.layout import Slot
from svqtui.lab.migration import MigrationResult
from svqtui.lab.scenario import Lab
from svqtui.model import MaskState, QueueRow, Snapshot

WAIT_S = 60.0  # any one condition; generous for a loaded machine
POLL_S = 0.2
IO_STEP = 3  # verified guest iterations that prove I/O goes on after a step


class CheckFailed(SvqtuiError):
    """A step of the lab check did not hold."""


@dataclass(frozen=True, slots=True)
class StepResult:
    name: str
    ok: bool | None  # None: skipped
    detail: str
    seconds: float

    def line(self) -> str:
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        return f"{word} {self.name:<26} {self.detail} [{self.seconds:.1f}s]"


Step = tuple[str, Callable[[], str]]


class LabCheck:
    """Runs the steps against a lab that is not started yet; ``run()`` starts it."""

    def __init__(
        self, lab: Lab, *, migrations: int = 2, out: TextIO = sys.stdout, err: TextIO = sys.stderr
    ) -> None:
        if migrations < 2:
            raise ValueError("the check migrates there and back: migrations must be at least 2")
        self.lab = lab
        self.migrations = migrations
        self.out = out
        self.err = err
        self.results: list[StepResult] = []
        self.pids: set[int] = set()

    # -- running -------------------------------------------------------------------------

    def steps(self) -> list[Step]:
        steps: list[Step] = [
            ("boot", self.boot),
            ("live counters", self.live_counters),
            ("verified I/O", self.verified_io),
            ("shadow on", self.shadow_on),
            ("mask/unmask", self.mask_unmask),
            ("stall back-end", self.stall),
            ("drop call / inject call", self.drop_call),
            ("migrate (shadow on)", self.migrate_shadowed),
            ("shadow off", self.shadow_off),
            ("migrate back (shadow off)", self.migrate_plain),
        ]
        for n in range(3, self.migrations + 1):
            steps.append((f"migrate #{n}", functools.partial(self.migrate_again, n)))
        steps.append(("guest record", self.guest_record))
        return steps

    def run(self) -> bool:
        """Every step in order, then teardown and the cleanup step; True if all passed."""
        steps = self.steps()
        try:
            for i, (name, fn) in enumerate(steps):
                if not self._step(name, fn):
                    for skipped, _ in steps[i + 1 :]:
                        self._emit(StepResult(skipped, None, "not run after a failure", 0.0))
                    self._dump_log()
                    break
        finally:
            self.pids.update(self.lab.started_pids)
            self.lab.close()
        self._step("cleanup", self.cleanup)
        return all(r.ok for r in self.results)

    def _step(self, name: str, fn: Callable[[], str]) -> bool:
        began = time.monotonic()
        try:
            detail = fn()
            ok = True
        except SvqtuiError as err:
            detail, ok = str(err), False
        self._emit(StepResult(name, ok, detail, time.monotonic() - began))
        return ok

    def _emit(self, result: StepResult) -> None:
        self.results.append(result)
        print(result.line(), file=self.out, flush=True)

    def _dump_log(self) -> None:
        _, events = self.lab.runtime.log.since(0)
        tail = self.lab.guest.tail()
        if not events and not tail:
            return
        print("last events of the run:", file=self.err)
        for e in events[-15:]:
            print(f"  {e.level}: {e.text}", file=self.err)
        if tail:
            print(f"  guest console: {tail}", file=self.err)
        self.err.flush()

    # -- helpers -------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """An early snapshot with fresh device state (the rate window is the monitor's)."""
        snap = self.lab.runtime.monitor.refresh_soon(wait=True)
        if snap is None:
            raise CheckFailed("svqtui's monitor published no snapshot")
        return snap

    def wait(self, what: str, predicate: Callable[[Snapshot], bool]) -> Snapshot:
        """Refresh until ``predicate`` holds; ``CheckFailed`` after WAIT_S, on a guest
        failure line, or as soon as the guest's QEMU is gone."""
        deadline = time.monotonic() + WAIT_S
        failures = self.lab.guest.state.failures
        while True:
            snap = self.snapshot()
            if predicate(snap):
                return snap
            state = self.lab.guest.poll()
            if state.failures > failures:
                raise CheckFailed(f"guest reported {state.last_failure} waiting for {what}")
            if self.lab.booted_at is not None and not self.lab.vm_running():
                raise CheckFailed(f"waiting for {what}: {self.lab.vm_exit_text()}")
            if time.monotonic() > deadline:
                raise CheckFailed(f"no {what} within {WAIT_S:g}s")
            time.sleep(POLL_S)

    def row(self, snap: Snapshot, slot: Slot, queue: int = 0) -> QueueRow | None:
        return snap.rows.get(f"{slot.device_key}#{queue}")

    def io_goes_on(self, count: int = IO_STEP) -> int:
        """Wait for ``count`` more verified guest iterations; the new total."""
        lab = self.lab
        try:
            return lab.guest.wait_verified(
                count, WAIT_S, alive=lambda: lab.alive() and lab.vm_running()
            ).verified
        except SvqtuiError as err:
            raise CheckFailed(lab.vm_exit_text() if not lab.vm_running() else str(err)) from None

    def counted(self, slot: Slot, what: str) -> tuple[int, int]:
        """Wait until the engine counts kicks and calls on ``slot``'s busiest queue;
        the increase seen of each."""
        first = self.snapshot()
        base = {k: (r.view.kicks or 0, r.view.calls or 0) for k, r in first.rows.items()}

        def grown(snap: Snapshot) -> bool:
            return any(
                r.device_key == slot.device_key
                and r.view.kicks is not None
                and r.view.calls is not None
                and r.view.kicks >= base.get(k, (0, 0))[0] + 5
                and r.view.calls >= base.get(k, (0, 0))[1] + 5
                for k, r in snap.rows.items()
            )

        snap = self.wait(what, grown)
        best = max(
            (r for r in snap.rows_of(slot.device_key) if r.view.kicks is not None),
            key=lambda r: r.view.kicks or 0,
        )
        k0, c0 = base.get(best.key, (0, 0))
        return (best.view.kicks or 0) - k0, (best.view.calls or 0) - c0

    # -- steps ---------------------------------------------------------------------------

    def boot(self) -> str:
        lab = self.lab
        lab.start()
        image = lab.image
        assert image is not None and lab.booted_at is not None
        since = lab.booted_at - _process_started()
        return (
            f"guest image {'cached' if image.cache_hit else 'built'} ({image.kernel_version}); "
            f"qemu-storage-daemon, interposers {', '.join(s.device for s in lab.layout.slots)}, "
            f"QEMU (TCG) on {lab.current.device}; first verified guest I/O {since:.1f}s "
            "after process start"
        )

    def live_counters(self) -> str:
        slot = self.lab.current
        first: dict[str, int] = {}

        def moving(snap: Snapshot) -> bool:
            row = self.row(snap, slot)
            if row is None or row.view.used_idx is None:
                return False
            value = row.view.used_idx if row.view.kicks is None else row.view.kicks
            first.setdefault("value", value)
            return value != first["value"]

        snap = self.wait(f"moving ring indices on {slot.device}", moving)
        row = self.row(snap, slot)
        assert row is not None
        since = time.monotonic() - _process_started()
        what = (
            f"avail {row.view.avail_idx} used {row.view.used_idx} (ring indices, shadow off)"
            if row.view.kicks is None
            else f"kicks {row.view.kicks} calls {row.view.calls} (shadow on)"
        )
        return f"{slot.device} #0 live: {what}, {since:.1f}s after process start"

    def verified_io(self) -> str:
        lab = self.lab
        began, start = time.monotonic(), lab.guest.state.verified
        total = self.io_goes_on(10)
        rate = (total - start) / max(time.monotonic() - began, 1e-3)
        return f"{total} iterations verified so far ({rate:.1f}/s), 0 failures"

    def shadow_on(self) -> str:
        slot = self.lab.current
        self.lab.runtime.set_shadow(slot.device_key, True)
        self.wait(
            f"{slot.device} in shadow mode",
            lambda s: slot.device_key in s.devices and s.devices[slot.device_key].shadow,
        )
        kicks, calls = self.counted(slot, f"kicks and calls counted on {slot.device}")
        verified = self.io_goes_on()
        return f"{slot.device}: engine counted kicks +{kicks}, calls +{calls}; guest at {verified}"

    def mask_unmask(self) -> str:
        lab, slot = self.lab, self.lab.current
        key = slot.device_key
        began = time.monotonic()
        lab.runtime.set_masked(key, 0, True)
        try:
            snap = self.wait(
                f"{slot.device} #0 PENDING",
                lambda s: (r := self.row(s, slot)) is not None and r.view.mask is MaskState.PENDING,
            )
        except CheckFailed:
            lab.runtime.set_masked(key, 0, False)
            raise
        pending_after = time.monotonic() - began
        row = self.row(snap, slot)
        assert row is not None
        held, calls = row.view.held, row.view.calls or 0
        lab.runtime.set_masked(key, 0, False)
        self.wait(
            f"{slot.device} #0 unmasked with the held call delivered",
            lambda s: (
                (r := self.row(s, slot)) is not None
                and r.view.mask is MaskState.UNMASKED
                and (r.view.calls or 0) > calls
            ),
        )
        verified = self.io_goes_on()
        return (
            f"{slot.device} #0 masked: PENDING after {pending_after:.1f}s (held {held}); "
            f"unmasked: held call delivered, calls go on past {calls}; guest at {verified}"
        )

    def stall(self) -> str:
        lab, slot = self.lab, self.lab.current
        began = time.monotonic()
        lab.call(lambda: lab.set_stall(True))
        try:
            snap = self.wait(
                f"a stuck queue on {slot.device}",
                lambda s: any(r.stuck for r in s.rows_of(slot.device_key)),
            )
        finally:
            stuck_after = time.monotonic() - began
            lab.call(lambda: lab.set_stall(False))
        reason = next(r.stuck for r in snap.rows_of(slot.device_key) if r.stuck)
        resumed = time.monotonic()
        self.wait(
            f"{slot.device}'s stuck verdict cleared",
            lambda s: not any(r.stuck for r in s.rows_of(slot.device_key)),
        )
        cleared = time.monotonic() - resumed
        verified = self.io_goes_on()
        return (
            f"qemu-storage-daemon SIGSTOPped: stuck after {stuck_after:.1f}s "
            f"(threshold {lab.config.stuck.after_s:g}s: {reason}); SIGCONT: cleared after "
            f"{cleared:.1f}s; guest at {verified}"
        )

    def drop_call(self) -> str:
        """The presenter's script (D, then c): drop the next call of the busy
        queue; the queue turns stuck with the owed call diagnosed and the guest's
        I/O stops (its heartbeat goes on); a call injected brings it back."""
        lab = self.lab
        began = time.monotonic()
        dropped = lab.drop_call()
        key = dropped.row_key

        def owed(s: Snapshot) -> bool:
            row = s.rows.get(key)
            return (
                row is not None
                and row.stuck is not None
                and (row.diagnosis or "").startswith("device owes a call")
            )

        try:
            snap = self.wait(f"{dropped.device} #{dropped.queue} stuck, a call owed", owed)
            stuck_after = time.monotonic() - began
            verified = lab.guest.poll().verified
            heartbeat = lab.guest.state.last_hb_at
            self.wait(
                "the guest's heartbeat while its I/O waits",
                lambda s: owed(s) and lab.guest.poll().last_hb_at != heartbeat,
            )
            still = lab.guest.poll().verified
        finally:  # whatever happened: no fault left armed, no guest left waiting
            lab.runtime.set_fault(dropped.device_key, dropped.queue, None)
            lab.runtime.inject(dropped.device_key, dropped.queue, Link.CALL)
        injected = time.monotonic()
        row = snap.rows[key]
        if still != verified:
            raise CheckFailed(
                f"the guest verified I/O ({verified} -> {still}) while {key} was stuck "
                f"({row.diagnosis})"
            )
        if row.view.dropped < 1 or row.view.fault is not None:
            raise CheckFailed(
                f"the dropped call is not counted (dropped {row.view.dropped}, "
                f"fault {row.view.fault!r})"
            )
        total = self.io_goes_on()
        back = time.monotonic() - injected
        self.wait(f"{key}'s stuck verdict cleared", lambda s: not owed(s))
        return (
            f"{dropped.device} #{dropped.queue}: next call dropped (counted, dropped "
            f"{row.view.dropped}); stuck after {stuck_after:.1f}s: {row.diagnosis}; guest "
            f"I/O stopped at {verified}; call injected: {IO_STEP} more verified after "
            f"{back:.1f}s, guest at {total}"
        )

    def _migrate(self, expect_shadow: bool) -> tuple[MigrationResult, str]:
        lab = self.lab
        before = lab.guest.poll().verified
        result = lab.migrate()
        dst = lab.current
        if result.shadow != expect_shadow:
            raise CheckFailed(f"migrated with shadow {result.shadow}, expected {expect_shadow}")
        self.wait(
            f"{dst.device} connected with shadow {'on' if expect_shadow else 'off'}",
            lambda s: (
                dst.device_key in s.devices
                and s.devices[dst.device_key].connected
                and s.devices[dst.device_key].shadow == expect_shadow
            ),
        )
        carried = ""
        if expect_shadow:
            kicks, calls = self.counted(dst, f"kicks and calls counted on {dst.device}")
            carried = f"shadow carried to {dst.device} (kicks +{kicks}, calls +{calls}); "
        verified = self.io_goes_on()
        return result, (
            f"{result.summary()}; {carried}guest verified {before} before, {verified} after"
        )

    def migrate_shadowed(self) -> str:
        return self._migrate(True)[1]

    def shadow_off(self) -> str:
        slot = self.lab.current
        self.lab.runtime.set_shadow(slot.device_key, False)
        snap = self.wait(
            f"{slot.device} out of shadow mode",
            lambda s: slot.device_key in s.devices and not s.devices[slot.device_key].shadow,
        )
        row = self.row(snap, slot)
        counted = row is not None and row.view.kicks is not None
        if counted:
            raise CheckFailed(f"{slot.device} still reports engine counters after shadow off")
        verified = self.io_goes_on()
        return (
            f"{slot.device}: on QEMU's own eventfds again (no engine counters); guest at {verified}"
        )

    def migrate_plain(self) -> str:
        return self._migrate(False)[1]

    def migrate_again(self, n: int) -> str:
        """Further ping-pong: shadow on for odd-numbered migrations, off for even."""
        want = n % 2 == 1
        slot = self.lab.current
        self.lab.runtime.set_shadow(slot.device_key, want)
        self.wait(
            f"{slot.device} shadow {'on' if want else 'off'}",
            lambda s: slot.device_key in s.devices and s.devices[slot.device_key].shadow == want,
        )
        return self._migrate(want)[1]

    def guest_record(self) -> str:
        state = self.lab.guest.poll()
        moves = len(self.lab.migrations)
        if state.failures:
            raise CheckFailed(
                f"the guest reported {state.failures} failure(s): {state.last_failure}"
            )
        if state.out_of_order:
            raise CheckFailed(f"{state.out_of_order} iteration(s) repeated or out of order")
        if state.last_iter != state.verified:
            raise CheckFailed(
                f"the guest finished iteration {state.last_iter} but {state.verified} were "
                "seen verified: serial output lost across a migration?"
            )
        figures = "; ".join(
            f"{m.source}->{m.destination} shadow {'on' if m.shadow else 'off'} "
            f"total {m.total_ms} ms downtime {m.downtime_ms} ms"
            for m in self.lab.migrations
        )
        return (
            f"{state.verified} iterations verified across {moves} migrations, each once and in "
            f"order, 0 failures ({figures})"
        )

    def cleanup(self) -> str:
        left = []
        for pid in sorted(self.pids):
            try:
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} ({proc.name()})")
            except psutil.NoSuchProcess:
                continue
        if left:
            raise CheckFailed(f"lab processes still running: {', '.join(left)}")
        workdir = self.lab.layout.workdir
        if self.lab.layout.temporary and workdir.exists():
            raise CheckFailed(f"the lab's temporary directory {workdir} is still there")
        return f"all {len(self.pids)} lab processes stopped (qemu-storage-daemon and every QEMU)"


def _process_started() -> float:
    """This process's start on the time.monotonic() clock."""
    return time.monotonic() - (time.time() - psutil.Process().create_time())


def run_check(lab: Lab, *, migrations: int = 2, out: TextIO = sys.stdout) -> int:
    """Run the check; the exit status (0: every step passed)."""
    check = LabCheck(lab, migrations=migrations, out=out)
    ok = check.run()
    passed = sum(1 for r in check.results if r.ok)
    print(
        f"{'PASS' if ok else 'FAIL'} lab check: {passed}/{len(check.results)} steps passed",
        file=out,
        flush=True,
    )
    return 0 if ok else 1
