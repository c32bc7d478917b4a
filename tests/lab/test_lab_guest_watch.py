"""Following the guest's health from its serial log across migrations
(svqtui.lab.guest_watch), on files written by the test: no QEMU needed."""

from __future__ import annotations

from pathlib import Path

import pytest

from svqtui.eventlog import EventLog
from svqtui.lab.errors import GuestIOError, GuestTimeout
from svqtui.lab.guest_watch import GuestState, GuestWatch, status_text


def ok(n: int) -> str:
    return f"SVQ-IO ok iter={n} cpu=0 off={8 * n} blocks=8 t={n / 10:.2f}\n"


def append(path: Path, text: str) -> None:
    with path.open("a") as f:
        f.write(text)


def test_counts_verified_io_heartbeats_and_ignores_kernel_noise(tmp_path: Path) -> None:
    """Verified iterations, the latest iteration and heartbeat are tracked; lines
    that are not SVQ lines (kernel messages) change nothing."""
    now = [100.0]
    watch = GuestWatch(clock=lambda: now[0])
    log = tmp_path / "a.serial"
    append(log, "[    0.5] virtio_blk virtio0: [vda] 131072 512-byte logical blocks\n")
    append(log, "SVQ-READY dev=/dev/vda size=67108864 cpus=1\n" + ok(1) + ok(2))
    watch.follow(log)
    state = watch.poll()
    assert (state.booted, state.verified, state.last_iter, state.failures) == (True, 2, 2, 0)
    append(log, "SVQ-HB t=0.90 iter=2\n")
    now[0] = 101.0
    state = watch.poll()
    assert state.last_hb_at == 101.0 and state.uptime_s == 0.9
    assert status_text(state, 101.4) == "guest: 2 I/O verified, heartbeat 0.4s ago"


def test_a_line_split_by_the_migration_is_completed_from_the_new_log(tmp_path: Path) -> None:
    """The guest's UART output continues in the destination's serial log; a line cut
    at the switch-over is joined, so no iteration is lost or counted twice."""
    watch = GuestWatch()
    a, b = tmp_path / "a.serial", tmp_path / "b.serial"
    append(a, ok(1) + ok(2) + "SVQ-IO ok iter=3 cpu=0 of")
    watch.follow(a)
    assert watch.poll().verified == 2
    append(b, "f=24 blocks=8 t=0.30\n" + ok(4))
    watch.follow(b)
    state = watch.poll()
    assert (state.verified, state.last_iter, state.out_of_order, state.logs) == (4, 4, 0, 2)


def test_failures_are_counted_logged_as_errors_and_end_waits(tmp_path: Path) -> None:
    """A FAIL line counts as a failure, goes to the event log as an error on the
    current device, and a wait in progress raises GuestIOError at once."""
    events = EventLog()
    watch = GuestWatch(events, device_key=lambda: "vu:lab-b")
    log = tmp_path / "a.serial"
    append(log, ok(1))
    watch.follow(log)
    watch.poll()
    append(log, "SVQ-IO FAIL iter=2 cpu=0 off=8 what=mismatch detail=differ: byte 1\n")
    with pytest.raises(GuestIOError, match="what=mismatch"):
        watch.wait_verified(5, timeout=30.0)
    _, logged = events.since(0)
    assert [(e.level, e.device_key) for e in logged] == [("error", "vu:lab-b")]
    assert "SVQ-IO FAIL iter=2" in logged[0].text
    assert watch.state.failures == 1
    assert "1 FAILED" in status_text(watch.state, 0.0)


def test_repeated_iteration_is_flagged(tmp_path: Path) -> None:
    """An iteration number that does not increase (serial output replayed after a
    migration) is counted as out of order."""
    watch = GuestWatch()
    log = tmp_path / "a.serial"
    append(log, ok(1) + ok(2) + ok(2))
    watch.follow(log)
    assert watch.poll().out_of_order == 1


def test_wait_gives_up_with_the_console_tail_or_when_the_lab_stops(tmp_path: Path) -> None:
    """No progress is a GuestTimeout naming what was awaited and the last lines; a
    stopping lab (alive() false) ends the wait at once."""
    watch = GuestWatch()
    log = tmp_path / "a.serial"
    append(log, "SVQ-BOOT kernel=6.1 delay_ms=20\n")
    watch.follow(log)
    with pytest.raises(GuestTimeout, match=r"no 1 more verified .* SVQ-BOOT kernel=6.1"):
        watch.wait_verified(1, timeout=0.2)
    with pytest.raises(GuestTimeout, match="the lab is stopping"):
        watch.wait_verified(1, timeout=60.0, alive=lambda: False)


def test_status_before_boot_and_when_io_stops() -> None:
    """Before any line: booting; a heartbeat without I/O for a while says so."""
    assert status_text(GuestState(), 5.0) == "guest: booting"
    state = GuestState(booted=True, verified=7, last_ok_at=10.0, last_hb_at=19.5)
    assert status_text(state, 20.0) == ("guest: 7 I/O verified, heartbeat 0.5s ago, no I/O for 10s")
