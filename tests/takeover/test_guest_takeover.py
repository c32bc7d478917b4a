"""50 takeovers under a real TCG guest doing verified I/O on vhost-user-blk
(QEMU -> ``svqtui --headless`` -> qemu-storage-daemon), shadow mode
alternating (docs/design.md#takeover). QEMU's chardev does not reconnect, so
a single disconnect would stop the guest's disk for good."""

from __future__ import annotations

import functools
import itertools
import json
import re
import statistics
import time
from pathlib import Path

import pytest

from svqtui.lab.guest_init import GuestParams
from svqtui.lab.storage import StorageDaemon
from svqtui.thread_priority import START_NICE_ENV
from tests.support.guest import BootGuest
from tests.support.headless import HeadlessProcess, connected_device
from tests.support.wait import wait_until
from tests.takeover.rig import fd_count, settled_fd_count, take_over

pytestmark = pytest.mark.qemu

TAKEOVERS = 50
TIMELINE = re.compile(
    r"timeline \(new svqtui pid \d+, ms from the request at monotonic ([\d.]+)\): (.*)"
)
STEP = re.compile(r"([a-z ]+) ([+-][\d.]+)(?:, |$)")
#: Takeovers in pairs (shadow on, off) with and without the nicer start-up.
NICE_START = [i // 2 % 2 == 0 for i in range(TAKEOVERS)]
QUIET_S = 20.0  # guest I/O without a takeover, cut into windows as long as a takeover's
DISCONNECT_WORDS = ("disconnect", "Disconnect", "vhost", "closed", "error", "Error")


def _config(directory: Path, backend: Path) -> Path:
    cfg = directory / "config.yaml"
    cfg.write_text(
        "refresh: 0.2\ndemo: {enabled: false}\nqmp: {discover: false}\n"
        f"control: {{socket: {directory / 'c.sock'}}}\n"
        f"devices:\n  - {{name: blk0, listen: {directory / 'vu0.sock'}, backend: {backend}, "
        "shadow: off}\n"
    )
    return cfg


def _take_over(
    current: HeadlessProcess, cfg: Path, directory: Path, nice: bool = False
) -> HeadlessProcess:
    """N takes over from ``current``; ``nice``: N starts up at nice 10
    (SVQTUI_START_NICE=10), for the comparison."""
    return take_over(current, cfg, directory, {START_NICE_ENV: "10"} if nice else None)


def test_fifty_takeovers_under_guest_io(
    sock_dir: Path, storage_daemon: StorageDaemon, boot_guest: BootGuest
) -> None:
    """50 takeovers, shadow toggled before each: the guest verifies every
    iteration (none missing, no failure), QEMU never disconnects (its log and
    the back-end's stay quiet), counters continue, fd counts are stable per
    shadow mode; prints the guest's I/O gap per takeover (p50, max; per
    shadow mode) and the same measure over windows without a takeover."""
    cfg = _config(sock_dir, storage_daemon.socket)
    proc = HeadlessProcess(sock_dir, config=cfg).start()
    procs = [proc]
    try:
        vm = boot_guest(sock_dir / "vu0.sock", params=GuestParams(delay_ms=0), wait_io=3)
        vm.console.poll()  # the console is read when polled: these lines are before
        quiet_from = time.monotonic()
        time.sleep(QUIET_S)
        vm.console.poll()
        quiet = (quiet_from, time.monotonic())
        windows: list[tuple[float, float]] = []
        fds: dict[bool, set[int]] = {True: set(), False: set()}
        kicks = 0
        for i in range(TAKEOVERS):
            shadow = i % 2 == 0
            with proc.client(timeout=20) as c:
                c.shadow("blk0", shadow)
            vm.wait_io_ok(1, 60, since=vm.console.mark())
            assert proc.proc is not None
            fds[shadow].add(settled_fd_count(proc.proc.pid, min(fds[shadow] or {0}), 0.5))
            start = time.monotonic()
            proc = _take_over(proc, cfg, sock_dir, nice=NICE_START[i])
            procs.append(proc)
            windows.append((start, time.monotonic()))
            dev = wait_until(
                functools.partial(connected_device, proc, "vu:blk0"), 10, what="N shows the device"
            )
            assert dev.shadow == shadow
            q0 = next(q for q in dev.queues if q.index == 0)
            if shadow:
                assert (q0.kicks or 0) >= kicks
                kicks = q0.kicks or 0
        vm.wait_io_ok(3, 60, since=vm.console.mark())
        io = [e for e in vm.console.events if e.kind == "IO"]
        assert all(e.io_ok for e in io), [e.raw for e in io if not e.io_ok]
        assert not [e.raw for e in vm.console.events if e.kind == "ERROR"]
        iters = [e.int_field("iter") for e in io]
        assert iters == list(range(iters[0], iters[0] + len(iters)))  # none missing
        qemu_log = vm.spec.stderr_log.read_text(errors="replace")
        qsd_log = storage_daemon.stderr_path.read_text(errors="replace")
        for log in (qemu_log, qsd_log):
            assert not [w for w in DISCONNECT_WORDS if w in log], log[-2000:]
        assert proc.proc is not None
        final = fd_count(proc.proc.pid)
        assert len(fds[True]) == 1 and len(fds[False]) == 1, fds
        # The guest's view: the longest interval between verified iterations
        # (guest uptime stamps) whose lines arrived around each takeover.
        stamps = [(e.seen_at, float(e.fields["t"])) for e in io if "t" in e.fields]

        def gap(start: float, end: float) -> float:
            near = [t for seen, t in stamps if start <= seen <= end]
            return max((b - a for a, b in itertools.pairwise(near)), default=0.0)

        gaps = [gap(start - 0.5, end + 1.5) for start, end in windows]
        # The same measure without a takeover: the quiet period's iterations
        # (guest time) cut into windows as long as a takeover's.
        length = statistics.median(end - start for start, end in windows) + 2.0
        quiet_t = [t for seen, t in stamps if quiet[0] < seen <= quiet[1]]
        quiet_gaps = []
        for k in range(int((quiet_t[-1] - quiet_t[0]) // length) if quiet_t else 0):
            lo = quiet_t[0] + k * length
            near = [t for t in quiet_t if lo <= t <= lo + length]
            quiet_gaps.append(max((b - a for a, b in itertools.pairwise(near)), default=0.0))
        steady = [b - a for (_, a), (_, b) in itertools.pairwise(stamps)]
        # A sharper view: guest time mapped to host time (the guest clock is
        # the host's under TCG; the line read soonest after it was printed
        # gives the offset), then the longest pause between iterations that
        # overlaps [N started, N serves], and the same over windows of that
        # length in the quiet period.
        offset = min(seen - t for seen, t in stamps)
        guest = sorted(t + offset for _, t in stamps)

        def pause_over(lo: float, hi: float) -> float:
            over = [b - a for a, b in itertools.pairwise(guest) if a <= hi and b >= lo]
            return max(over, default=0.0)

        span = statistics.median(end - start for start, end in windows)
        pauses = [pause_over(start, end) for start, end in windows]
        quiet_pauses = [
            pause_over(quiet[0] + k * span, quiet[0] + (k + 1) * span)
            for k in range(int((quiet[1] - quiet[0]) // span))
        ]
        # Which part: N's start-up (process start -> its request) or the
        # hand-over itself (request -> "serving" sent), from N's timeline line.
        startup, handover = [], []
        for n in procs[1:]:
            found = TIMELINE.search(n.stderr)
            if found is None:
                continue
            at = float(found.group(1))
            marks = dict(STEP.findall(found.group(2)))
            begin = at + float(marks.get("process start", "0")) / 1000
            startup.append(pause_over(begin, at))
            handover.append(pause_over(at, at + float(marks["serving sent"]) / 1000))

        def ms(values: list[float], how: str) -> float:
            pick = statistics.median if how == "p50" else max
            return round(1000 * pick(values), 1) if values else 0.0

        figures = {
            "takeovers": TAKEOVERS,
            "iterations": len(io),
            "verify_errors": 0,
            "io_gap_ms_p50": ms(gaps, "p50"),
            "io_gap_ms_max": ms(gaps, "max"),
            "io_gap_ms_p50_shadow_on_off": [ms(gaps[0::2], "p50"), ms(gaps[1::2], "p50")],
            "quiet_gap_ms_p50": ms(quiet_gaps, "p50"),
            "quiet_gap_ms_max": ms(quiet_gaps, "max"),
            "window_s": round(length, 2),
            "pause_over_takeover_ms_p50": ms(pauses, "p50"),
            "pause_over_takeover_ms_max": ms(pauses, "max"),
            "pause_quiet_ms_p50": ms(quiet_pauses, "p50"),
            "pause_quiet_ms_max": ms(quiet_pauses, "max"),
            "pause_over_takeover_ms_p50_nice_start_yes_no": [
                ms([p for p, nice in zip(pauses, NICE_START, strict=True) if nice], "p50"),
                ms([p for p, nice in zip(pauses, NICE_START, strict=True) if not nice], "p50"),
            ],
            "pause_over_n_startup_ms_p50_max": [ms(startup, "p50"), ms(startup, "max")],
            "pause_over_handover_ms_p50_max": [ms(handover, "p50"), ms(handover, "max")],
            "takeover_wall_ms_p50": ms([end - start for start, end in windows], "p50"),
            "iteration_interval_ms_p50": round(1000 * statistics.median(steady), 1),
            "fds_shadow_on_off": [sorted(fds[True]), sorted(fds[False]), final],
        }
        print("TAKEOVER-GUEST", json.dumps(figures))
    finally:
        for p in procs:
            p.stop()
