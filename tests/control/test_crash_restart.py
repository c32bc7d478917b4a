"""SIGKILL of ``svqtui --headless`` under a real TCG guest doing verified I/O on
vhost-user-blk (QEMU -> svqtui -> qemu-storage-daemon), and a restart: the new
svqtui replaces the dead one's stale control socket, lock file and listen
socket, QEMU's reconnecting chardev (reconnect=1) connects again, and the
guest's I/O resumes with every iteration verified."""

from __future__ import annotations

import functools
import json
import signal
import time
from pathlib import Path

import pytest

from svqtui.lab.guest_init import GuestParams
from svqtui.lab.storage import StorageDaemon
from tests.support.guest import BootGuest
from tests.support.headless import HeadlessProcess, connected_device
from tests.support.wait import wait_until

pytestmark = pytest.mark.qemu


def _config(directory: Path, backend: Path, shadow: bool) -> Path:
    cfg = directory / "config.yaml"
    cfg.write_text(
        "refresh: 0.2\ndemo: {enabled: false}\nqmp: {discover: false}\n"
        f"control: {{socket: {directory / 'c.sock'}}}\n"
        f"devices:\n  - {{name: blk0, listen: {directory / 'vu0.sock'}, backend: {backend}, "
        f"shadow: {'on' if shadow else 'off'}}}\n"
    )
    return cfg


KILLS = 3


@pytest.mark.parametrize("shadow", [False, True], ids=["pass", "shadow"])
def test_sigkill_and_restart_the_guest_io_resumes(
    sock_dir: Path, storage_daemon: StorageDaemon, boot_guest: BootGuest, shadow: bool
) -> None:
    """SIGKILL (three times) while the guest writes and reads back without
    pause, each time a new svqtui on the same config: it starts despite the
    stale sockets and lock file, QEMU reconnects within seconds, and the
    guest goes on verifying iterations with no failure line and no
    iteration missing (a lost request would hang it: virtio-blk has no timeout)."""
    cfg = _config(sock_dir, storage_daemon.socket, shadow)
    proc = HeadlessProcess(sock_dir, config=cfg).start()
    procs = [proc]
    try:
        vm = boot_guest(
            sock_dir / "vu0.sock", params=GuestParams(delay_ms=0), reconnect_s=1, wait_io=3
        )
        figures = []
        for _ in range(KILLS):
            vm.wait_io_ok(3, 60, since=vm.console.mark())
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            proc.proc.wait(10)
            mark = vm.console.mark()
            last = max((e.int_field("iter") or 0) for e in vm.console.events if e.io_ok)
            assert (sock_dir / "vu0.sock").exists() and (sock_dir / "c.sock.lock").exists()
            proc = HeadlessProcess(sock_dir, config=cfg).start()
            procs.append(proc)
            serving = time.monotonic() - killed
            line = vm.wait_io_ok(1, 60, since=mark)
            figures.append((round(serving, 2), round(line.seen_at - killed, 2)))
            vm.wait_io_ok(5, 60, since=mark)
            after = [e for e in vm.console.events[mark:] if e.kind == "IO"]
            assert all(e.io_ok for e in after), [e.raw for e in after if not e.io_ok]
            assert not [e.raw for e in vm.console.events[mark:] if e.kind == "ERROR"]
            iters = [e.int_field("iter") for e in after]
            assert iters == list(range(iters[0], iters[0] + len(iters)))  # none missing
            assert iters[0] <= last + 1
            # A snapshot is the monitor's latest (its thread runs at nice +10 and
            # may trail a busy TCG guest): five fast iterations may come sooner.
            dev = wait_until(
                functools.partial(connected_device, proc, "vu:blk0"),
                30,
                what="svqtui shows QEMU connected",
            )
            assert dev.shadow == shadow
            assert "Traceback" not in proc.stderr
        print("CRASH-FIGURES", json.dumps({"shadow": shadow, "serving_s/io_resumed_s": figures}))
        print("QEMU-STDERR", vm.spec.stderr_log.read_text()[-2000:])
    finally:
        for p in procs:
            p.stop()


def _in_flight(proc: HeadlessProcess) -> int:
    """Requests the guest has made available and the back-end not yet used
    (queue 0's ring indices, read by svqtui from guest memory)."""
    with proc.client() as c:
        dev = c.snapshot().devices["vu:blk0"]
    q = next(q for q in dev.queues if q.index == 0)
    if q.avail_idx is None or q.used_idx is None:
        return 0
    return (q.avail_idx - q.used_idx) % 65536


@pytest.mark.parametrize("shadow", [False, True], ids=["pass", "shadow"])
def test_a_request_in_flight_at_the_kill_completes_after_restart(
    sock_dir: Path, storage_daemon: StorageDaemon, boot_guest: BootGuest, shadow: bool
) -> None:
    """The back-end is frozen (SIGSTOP) so that the guest's next request stays
    in flight; svqtui is SIGKILLed while the ring shows it in flight, the
    back-end resumes, svqtui restarts: that iteration completes verified
    (QEMU rewinds the ring to the used index and resubmits the request on the
    new connection), no iteration is missing and nothing fails."""
    cfg = _config(sock_dir, storage_daemon.socket, shadow)
    proc = HeadlessProcess(sock_dir, config=cfg).start()
    procs = [proc]
    try:
        vm = boot_guest(
            sock_dir / "vu0.sock", params=GuestParams(delay_ms=0), reconnect_s=1, wait_io=3
        )
        storage_daemon.stall()
        try:
            in_flight = wait_until(lambda: _in_flight(proc), 30, what="a request in flight")
            stuck_iter = max((e.int_field("iter") or 0) for e in vm.console.events if e.io_ok) + 1
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            proc.proc.wait(10)
        finally:
            storage_daemon.resume()
        mark = vm.console.mark()
        proc = HeadlessProcess(sock_dir, config=cfg).start()
        procs.append(proc)
        line = vm.wait_io_ok(1, 60, since=mark)
        vm.wait_io_ok(5, 60, since=mark)
        # The line of the iteration before the one in flight may still be on
        # its way over the serial console when the kill happens: check the
        # whole run, which must have every iteration, verified, in order.
        ios = [e for e in vm.console.events if e.kind == "IO"]
        assert all(e.io_ok for e in ios), [e.raw for e in ios if not e.io_ok]
        assert not [e.raw for e in vm.console.events if e.kind == "ERROR"]
        iters = [e.int_field("iter") for e in ios]
        assert iters == list(range(iters[0], iters[0] + len(iters)))  # none missing
        assert iters[-1] >= stuck_iter + 4  # the one in flight completed, and more after it
        figures = {
            "shadow": shadow,
            "in_flight_at_kill": in_flight,
            "io_resumed_s": round(line.seen_at - killed, 2),
        }
        print("CRASH-INFLIGHT", json.dumps(figures))
    finally:
        for p in procs:
            p.stop()
