"""Why is the lab guest's queue stuck? A real TCG guest on vhost-user-blk
through svqtui's interposer, in-process (svqtui.lab.scenario.Lab), read through
the public JSON document (``--once --json``/``ctl status --json``):

- the back-end stalled (the lab's S): the oldest request is the guest's own
  READ/WRITE at the sector the guest reports for that iteration, its age grows,
  and the diagnosis says the back-end is not completing;
- a dropped call (the lab's D): the guest's I/O stops, the queue is stuck with
  the owed call diagnosed with its numbers, the drop is counted, and an injected
  call (the console's c) brings the guest back with its I/O verified;
- a dropped kick: the same unread request as the stall, diagnosed as a kick
  owed, and an injected kick (the console's k) brings the guest back;
- the same two keys pressed in the lab console (Textual pilot) over the real guest.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from svqtui.engine.engine import Link
from svqtui.engine.faults import Fault
from svqtui.lab.app import LabApp
from svqtui.lab.console import ConsoleLog
from svqtui.lab.scenario import Lab, LabOptions
from svqtui.model import Snapshot
from svqtui.outputs.json_doc import snapshot_document
from svqtui.virtio.requests import SECTOR_SIZE
from tests.support.console import until
from tests.support.lab import lab_processes
from tests.support.wait import wait_until

WAIT_S = 60.0
SIZE = (160, 50)
OWED = re.compile(
    r"device owes a call: used index (\d+) passed used_event (\d+) and no call for [\d.]+ s"
)


def queue_doc(snap: Snapshot, device_key: str, index: int) -> dict[str, Any]:
    """One queue of the public JSON document."""
    for vm in snapshot_document(snap)["vms"]:
        for dev in vm["devices"]:
            if dev["key"] == device_key:
                for q in dev["queues"]:
                    if q["index"] == index:
                        return dict(q)
    raise AssertionError(f"no queue {device_key}#{index} in the snapshot")


def wait_doc(
    lab: Lab, what: str, device_key: str, index: int, pred: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Refresh until the queue's JSON satisfies ``pred`` (generous timeout)."""

    def holds() -> dict[str, Any] | None:
        q = queue_doc(lab.runtime.monitor.refresh(), device_key, index)
        return q if pred(q) else None

    last: list[dict[str, Any]] = []

    def describe() -> object:
        last[:] = [queue_doc(lab.runtime.monitor.refresh(), device_key, index)]
        return {k: last[0].get(k) for k in ("stuck", "diagnosis", "ring", "oldest")}

    return wait_until(holds, WAIT_S, interval=0.2, what=what, describe=describe)


def busy_data(q: dict[str, Any]) -> bool:
    """The oldest request is a decoded READ or WRITE (not the FLUSH between them)."""
    oldest = q["oldest"]
    return oldest is not None and oldest["kind"] in ("READ", "WRITE")


def test_a_stalled_back_end_shows_the_guests_request_and_not_reading(lab_workdir: Path) -> None:
    """With qemu-storage-daemon SIGSTOPped under guest I/O, the queue's JSON
    ``oldest`` is the guest's READ/WRITE of one 32 KiB slot within the disk, at
    the sector of the iteration the guest reports once resumed; its ``age_s``
    grows between two snapshots while the head stays; ``stuck`` is set and
    ``diagnosis`` says the back-end is not reading; resumed, the guest's I/O
    verifies with no failure."""
    with Lab(LabOptions(workdir=lab_workdir)) as lab:
        lab.start()
        slot = lab.current
        disk_bytes = lab.layout.disk_image.stat().st_size
        serial = ConsoleLog(slot.serial_log)
        for _ in range(5):  # a stall between a WRITE and its READ catches the FLUSH
            lab.guest.wait_verified(2, WAIT_S, alive=lab.vm_running)
            lab.call(lambda: lab.set_stall(True))
            first = wait_doc(  # stuck: the request the stall caught, not one completing
                lab,
                "stuck with an oldest request decoded",
                slot.device_key,
                0,
                lambda q: (
                    q["stuck"] is not None
                    and q["oldest"] is not None
                    and q["oldest"]["kind"] is not None
                ),
            )
            if busy_data(first):
                break
            lab.call(lambda: lab.set_stall(False))
        assert busy_data(first), first["oldest"]
        try:
            later = wait_doc(
                lab,
                "stuck, not reading, the request older",
                slot.device_key,
                0,
                lambda q: (
                    (q["diagnosis"] or "").startswith("back-end not reading: 1 request taken")
                    and q["oldest"]["age_s"] >= first["oldest"]["age_s"] + 1.0
                ),
            )
            mark = serial.mark()
        finally:
            lab.call(lambda: lab.set_stall(False))
        oldest = later["oldest"]
        assert later["stuck"] is not None and later["in_flight"] == 1
        assert (oldest["head"], oldest["position"]) == (
            first["oldest"]["head"],
            first["oldest"]["position"],
        )
        assert oldest["kind"] == first["oldest"]["kind"] and oldest["device"] == "blk"
        assert oldest["bytes"] == 8 * 4096  # the guest's request: 8 blocks of 4 KiB
        assert 0 <= oldest["sector"] * SECTOR_SIZE + oldest["bytes"] <= disk_bytes
        done = serial.wait_for(
            lambda e: e.kind == "IO", WAIT_S, "the stalled iteration", since=mark
        )
        assert done.io_ok, done.raw
        assert oldest["sector"] == int(done.fields["off"]) * 8, done.raw  # off: 4 KiB blocks
        state = lab.guest.wait_verified(3, WAIT_S, alive=lab.vm_running)
        assert state.failures == 0
    assert lab_processes(lab_workdir) == []


def test_a_dropped_call_stops_the_guest_until_a_call_is_injected(lab_workdir: Path) -> None:
    """drop-call 1 on the guest's busy queue (shadow on): the queue goes stuck
    with ``diagnosis`` naming the owed call, its used index and used_event being
    the ring's own; the dropped call is counted and the fault disarmed; the
    guest's verified I/O does not move while its heartbeat does; an injected
    call (the console's c) brings the I/O back, verified, with no failure."""
    with Lab(LabOptions(workdir=lab_workdir, shadow=True)) as lab:
        lab.start()
        lab.guest.wait_verified(3, WAIT_S, alive=lab.vm_running)
        dropped = lab.drop_call()
        assert dropped.device_key == lab.current.device_key and not dropped.shadow_turned_on
        key, index = dropped.device_key, dropped.queue
        q = wait_doc(
            lab,
            "stuck with a call owed",
            key,
            index,
            lambda q: q["stuck"] is not None and OWED.fullmatch(q["diagnosis"] or "") is not None,
        )
        match = OWED.fullmatch(q["diagnosis"])
        assert match is not None
        used, used_event = int(match[1]), int(match[2])
        assert (used, used_event) == (q["ring"]["used_idx"], q["ring"]["used_event"])
        assert used != used_event and q["ring"]["event_idx"]
        assert q["in_flight"] == 0  # completed by the device; the guest was never told
        row = lab.runtime.monitor.refresh().rows[dropped.row_key]
        assert row.view.dropped == 1 and row.view.dropped_kicks == 0
        assert row.view.fault is None  # drop-call 1 disarmed after its one call
        verified = lab.guest.poll().verified
        for _ in range(2):  # the guest runs (two heartbeats) while its I/O waits
            heartbeat = lab.guest.state.last_hb_at
            lab.guest.wait(lambda s, hb=heartbeat: s.last_hb_at != hb, WAIT_S, "a heartbeat")
        still = queue_doc(lab.runtime.monitor.refresh(), key, index)
        assert still["stuck"] is not None and lab.guest.poll().verified == verified
        injected = time.monotonic()
        lab.runtime.inject(key, index, Link.CALL)
        state = lab.guest.wait_verified(3, WAIT_S, alive=lab.vm_running)
        assert state.failures == 0 and state.out_of_order == 0
        print(f"guest back {time.monotonic() - injected:.2f}s after the injected call")
        wait_doc(lab, "the stuck verdict cleared", key, index, lambda q: q["stuck"] is None)
    assert lab_processes(lab_workdir) == []


def test_a_dropped_kick_is_a_kick_owed_not_a_stalled_back_end(lab_workdir: Path) -> None:
    """drop-kick 1 under guest I/O: the request waits in the ring unread, as in
    the stall, but the diagnosis tells the two apart: the kick the guest sent was
    swallowed, so it is "kick owed" with avail passing the device's avail_event
    (the ring's own numbers), counted as a dropped kick; an injected kick (the
    console's k) brings the guest back, verified."""
    owed = re.compile(r"kick owed: avail (\d+) passed avail_event (\d+), no kick for [\d.]+ s")
    with Lab(LabOptions(workdir=lab_workdir, shadow=True)) as lab:
        lab.start()
        lab.guest.wait_verified(3, WAIT_S, alive=lab.vm_running)
        key = lab.current.device_key
        lab.runtime.set_fault(key, 0, Fault.named("drop-kick", 1))
        q = wait_doc(
            lab,
            "stuck with a kick owed",
            key,
            0,
            lambda q: q["stuck"] is not None and owed.fullmatch(q["diagnosis"] or "") is not None,
        )
        match = owed.fullmatch(q["diagnosis"])
        assert match is not None
        assert (int(match[1]), int(match[2])) == (q["ring"]["avail_idx"], q["ring"]["avail_event"])
        assert q["in_flight"] == 1 and q["oldest"]["kind"] in ("READ", "WRITE", "FLUSH")
        row = lab.runtime.monitor.refresh().rows[f"{key}#0"]
        assert (row.view.dropped, row.view.dropped_kicks, row.view.fault) == (1, 1, None)
        lab.runtime.inject(key, 0, Link.KICK)
        state = lab.guest.wait_verified(3, WAIT_S, alive=lab.vm_running)
        assert state.failures == 0 and state.out_of_order == 0
    assert lab_processes(lab_workdir) == []


async def test_the_presenters_two_keys_on_a_real_guest(lab_workdir: Path) -> None:
    """In the lab console over a real guest (shadow off at first): D turns shadow
    on and drops the next call; the queue's row is stuck and its Stuck column
    shows the owed call (a queue not stuck would say "why: ..."); c (the
    console's inject call) on the row D put the cursor on brings the guest's
    verified I/O back; no action failed."""
    with Lab(LabOptions(workdir=lab_workdir)) as lab:
        lab.start()
        lab.guest.wait_verified(3, WAIT_S, alive=lab.vm_running)
        app = LabApp(lab)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.frames >= 1, "the first snapshot")
            await pilot.press("D")
            key = f"{lab.current.device_key}#0"

            def owed() -> bool:
                row = app.snapshot.rows.get(key) if app.snapshot else None
                return (
                    row is not None
                    and row.stuck is not None
                    and OWED.fullmatch(row.diagnosis or "") is not None
                )

            await until(pilot, owed, "STUCK with a call owed", timeout=WAIT_S)
            assert app.table.cursor_key == key
            await until(
                pilot,
                lambda: (app.table.plain_row(key) or ("",))[-1].startswith("device owes a call"),
                "the stuck row's last column saying the call is owed (not 'why: ...')",
            )
            verified = lab.guest.poll().verified
            await pilot.press("c")
            await until(
                pilot,
                lambda: lab.guest.poll().verified >= verified + 3,
                "the guest's I/O back",
                timeout=WAIT_S,
            )
        _, events = lab.runtime.log.since(0)
        assert [e.text for e in events if e.level == "error"] == []
        assert any("dropping the next call of lab-a queue 0" in e.text for e in events)
        assert lab.guest.poll().failures == 0
    assert lab_processes(lab_workdir) == []
