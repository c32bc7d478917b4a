"""Parsing and following the guest's serial console (svqtui.lab.console)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from svqtui.lab.console import ConsoleLog, nth_io_ok, parse_line
from svqtui.lab.errors import GuestIOError, GuestTimeout, LabProcessError


def test_parse_io_ok_line() -> None:
    """An SVQ-IO ok line gives kind, status and integer fields."""
    e = parse_line("SVQ-IO ok iter=3 cpu=1 off=16 blocks=8 t=2.31")
    assert e is not None and e.io_ok and not e.is_failure
    assert (e.kind, e.int_field("iter"), e.int_field("off")) == ("IO", 3, 16)
    assert e.float_field("t") == 2.31


def test_parse_failure_detail_keeps_the_rest_of_the_line() -> None:
    """``detail=`` swallows the rest of the line, spaces and '=' included."""
    e = parse_line("SVQ-IO FAIL iter=9 cpu=0 off=8 what=mismatch detail=/tmp/w /tmp/r differ: a=b")
    assert e is not None and e.is_failure and e.status == "FAIL"
    assert e.fields["what"] == "mismatch"
    assert e.fields["detail"] == "/tmp/w /tmp/r differ: a=b"


def test_parse_ignores_kernel_noise_and_finds_prefixed_lines() -> None:
    """Kernel messages are not events; an SVQ line after console garbage still parses."""
    assert parse_line("[    9.205365] reboot: Power down") is None
    assert parse_line("SVQ-lower x=1") is None
    e = parse_line("\x1b[0mSVQ-IRQ iter=10 irq=25 count=82 name=virtio0-req.0\r")
    assert e is not None and e.kind == "IRQ" and e.fields["name"] == "virtio0-req.0"
    hb = parse_line("SVQ-HB t=1.0 iter=")
    assert hb is not None and hb.int_field("iter") is None


def test_console_log_reads_appended_complete_lines_only(tmp_path: Path) -> None:
    """poll() returns only whole lines, keeping a partial last line for later."""
    path = tmp_path / "serial"
    log = ConsoleLog(path)
    assert log.poll() == []  # no file yet
    with path.open("ab") as f:
        f.write(b"boot noise\nSVQ-IO ok iter=1 t=1\nSVQ-IO ok it")
    assert [e.int_field("iter") for e in log.poll()] == [1]
    with path.open("ab") as f:
        f.write(b"er=2 t=2\r\nSVQ-IRQ iter=2 irq=25 count=7 name=virtio0-req.0\n")
    assert [e.kind for e in log.poll()] == ["IO", "IRQ"]
    assert log.lines == [
        "boot noise",
        "SVQ-IO ok iter=1 t=1",
        "SVQ-IO ok iter=2 t=2",
        "SVQ-IRQ iter=2 irq=25 count=7 name=virtio0-req.0",
    ]
    assert len(log.io_ok) == 2 and log.irq_counts() == {"virtio0-req.0": 7}


def test_wait_for_sees_lines_written_later(tmp_path: Path) -> None:
    """A wait returns once a writer (another thread here) appends the awaited line,
    and a counting predicate sees each event once."""
    path = tmp_path / "serial"
    path.write_bytes(b"SVQ-IO ok iter=1 t=1\n")
    log = ConsoleLog(path)

    def writer() -> None:
        for i in (2, 3):
            with path.open("ab") as f:
                f.write(f"SVQ-IO ok iter={i} t={i}\n".encode())

    t = threading.Timer(0.1, writer)
    t.start()
    try:
        event = log.wait_for(nth_io_ok(3), 30.0, "3 I/Os")
    finally:
        t.join()
    assert event.int_field("iter") == 3
    assert len(log.io_ok) == 3


def test_wait_for_raises_on_guest_failure(tmp_path: Path) -> None:
    """A FAIL (or ERROR) line before the awaited one ends the wait with GuestIOError."""
    path = tmp_path / "serial"
    path.write_bytes(b"SVQ-IO ok iter=1\nSVQ-IO FAIL iter=2 what=read detail=I/O error\n")
    with pytest.raises(GuestIOError, match="what=read"):
        ConsoleLog(path).wait_for(nth_io_ok(5), 30.0, "5 I/Os")
    path.write_bytes(b"SVQ-ERROR what=no-disk detail=/dev/vda did not appear\n")
    with pytest.raises(GuestIOError, match="no-disk"):
        ConsoleLog(path).wait_for(nth_io_ok(1), 30.0, "1 I/O")


def test_wait_for_times_out_with_console_tail(tmp_path: Path) -> None:
    """No awaited line in time: GuestTimeout naming what was awaited and the last lines."""
    path = tmp_path / "serial"
    path.write_bytes(b"SVQ-HB t=1.00 iter=0\n")
    with pytest.raises(GuestTimeout, match=r"no SVQ-DONE .*SVQ-HB t=1.00"):
        ConsoleLog(path).wait_for(lambda e: e.kind == "DONE", 0.2, "SVQ-DONE")


def test_wait_for_stops_when_the_process_is_gone_but_reads_its_last_words(
    tmp_path: Path,
) -> None:
    """A dead QEMU ends the wait (LabProcessError), unless the awaited line is already
    in the log: the log is read after liveness is sampled."""
    path = tmp_path / "serial"
    path.write_bytes(b"SVQ-HB t=1 iter=0\n")
    with pytest.raises(LabProcessError, match="exited"):
        ConsoleLog(path).wait_for(lambda e: e.kind == "DONE", 30.0, "DONE", alive=lambda: False)
    path.write_bytes(b"SVQ-DONE iters=1 ok=1 fail=0\n")
    done = ConsoleLog(path).wait_for(lambda e: e.kind == "DONE", 30.0, "DONE", alive=lambda: False)
    assert done.int_field("ok") == 1


async def test_async_wait_does_not_block_the_loop(tmp_path: Path) -> None:
    """wait_for_async yields to the event loop, so a task on it can write the line."""
    path = tmp_path / "serial"
    path.write_bytes(b"")
    log = ConsoleLog(path)

    async def write_later() -> None:
        await asyncio.sleep(0.05)
        with path.open("ab") as f:
            f.write(b"SVQ-READY dev=/dev/vda size=1 cpus=1\n")

    task = asyncio.create_task(write_later())
    event = await log.wait_for_async(lambda e: e.kind == "READY", 30.0, "READY")
    await task
    assert event.fields["dev"] == "/dev/vda"
