"""The lab in-process (svqtui.lab.scenario, .source, .migration): what the console
sees of the lab VM across a real migration, one action at a time, and cleanup when
starting fails half-way."""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from svqtui.errors import SvqtuiError
from svqtui.lab import scenario
from svqtui.lab.errors import LabBusy, LabProcessError
from svqtui.lab.guest_image import GuestImage, build_guest_image
from svqtui.lab.migration import Mode
from svqtui.lab.scenario import Lab, LabOptions
from svqtui.lab.source import VM_KEY
from svqtui.model import Snapshot
from tests.support.lab import lab_processes
from tests.support.wait import wait_until

WAIT_S = 60.0


def wait_snapshot(lab: Lab, what: str, predicate: Callable[[Snapshot], bool]) -> Snapshot:
    """Refresh the monitor until ``predicate`` holds (generous timeout)."""

    def holds() -> Snapshot | None:
        snap = lab.runtime.monitor.refresh()
        return snap if predicate(snap) else None

    return wait_until(holds, WAIT_S, interval=0.2, what=what)


def goes_on_or_skip_known_tcg_crash(lab: Lab) -> None:
    """Wait for the guest's I/O after a live migration. The Debian QEMU 7.2 TCG
    used here now and then corrupts a live-migrated guest on a loaded host (a kernel
    oops right after the switch-over; reproduced with the disk on
    qemu-storage-daemon directly, without svqtui in the path; fixed upstream in
    QEMU 8.1): that, and only that, skips the test instead of failing it."""
    try:
        lab.guest.wait_verified(3, WAIT_S, alive=lab.vm_running)
    except SvqtuiError:
        tail = lab.guest.tail()
        oops = ("Kernel panic", "BUG:", "Oops", "invalid opcode", "general protection")
        if not lab.vm_running() and any(word in tail for word in oops):
            pytest.skip(f"upstream QEMU 7.2 TCG live-migration guest corruption: {tail[:200]}")
        raise


def test_the_vm_row_follows_the_guest_to_the_other_slot(lab_workdir: Path) -> None:
    """Before and after a live migration the guest is one VM row with the same key
    (a console selection stays on it), its label names the slot, its device is the
    interposer of the slot it runs on (counting there, shadow carried), its status
    starts with the guest's health, and it shows QEMU's figures of the migration;
    the QEMU left behind is gone from the rows."""
    with Lab(LabOptions(workdir=lab_workdir, shadow=True)) as lab:
        lab.start()
        snap = wait_snapshot(
            lab, "the lab VM on slot a", lambda s: any(vm.key == VM_KEY for vm in s.vms)
        )
        vm = next(vm for vm in snap.vms if vm.key == VM_KEY)
        assert vm.name == "lab@a" and vm.status.startswith("guest: ")
        assert [d.key for d in vm.devices] == ["vu:lab-a"]
        assert not vm.devices[0].real  # disposable: quitting the lab asks nothing
        result = lab.migrate()
        assert (result.source, result.destination, result.shadow) == ("a", "b", True)
        assert result.mode is Mode.LIVE
        assert result.total_ms and result.total_ms > 0 and result.downtime_ms is not None
        goes_on_or_skip_known_tcg_crash(lab)

        def moved(s: Snapshot) -> bool:
            vms = {vm.key: vm for vm in s.vms}
            here = vms.get(VM_KEY)
            return (
                here is not None
                and here.name == "lab@b"
                and [d.key for d in here.devices] == ["vu:lab-b"]
                and here.devices[0].shadow
                and any((r.view.kicks or 0) > 0 for r in s.rows_of("vu:lab-b"))
            )

        snap = wait_snapshot(lab, "the VM on slot b, counting", moved)
        vm = next(vm for vm in snap.vms if vm.key == VM_KEY)
        assert vm.migration is not None and vm.migration.status == "completed"
        assert vm.migration.downtime_ms == result.downtime_ms
        assert not any(v.key.startswith(f"{VM_KEY}@") for v in snap.vms)
        state = lab.guest.wait_verified(3, WAIT_S)
        assert state.failures == 0 and state.logs == 2
        assert len(lab_processes(lab_workdir)) == 2  # the daemon and QEMU on b
    assert lab_processes(lab_workdir) == []


def test_a_failed_start_stops_what_was_already_running(
    lab_workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """QEMU failing to start (here: its kernel is missing) after the daemon and the
    runtime are up is one LabProcessError, and close() leaves no process behind."""
    real = build_guest_image()

    def broken() -> GuestImage:
        return dataclasses.replace(real, kernel=lab_workdir / "missing-vmlinuz")

    monkeypatch.setattr(scenario, "build_guest_image", broken)
    lab = Lab(LabOptions(workdir=lab_workdir))
    try:
        with pytest.raises(LabProcessError, match="missing-vmlinuz does not exist"):
            lab.start()
        assert lab.disk.running, "the daemon was started before QEMU failed"
    finally:
        lab.close()
    assert not lab.disk.running
    assert lab_processes(lab_workdir) == []


def test_one_action_at_a_time(lab_workdir: Path) -> None:
    """While an action runs on the lab thread, another is refused with LabBusy
    (e.g. a second M while migrating), and accepted again once it is done."""
    lab = Lab(LabOptions(workdir=lab_workdir))
    release = threading.Event()
    try:
        first = lab.submit(lambda: release.wait(30))
        assert lab.busy
        with pytest.raises(LabBusy, match="busy"):
            lab.submit(lambda: None)
        release.set()
        assert first.result(30)
        assert lab.submit(lambda: 42).result(30) == 42
    finally:
        release.set()
        lab.close()
    with pytest.raises(LabBusy, match="stopping"):
        lab.submit(lambda: None)


def test_a_qemu_dying_on_its_own_is_one_error_line(lab_workdir: Path) -> None:
    """When the guest's QEMU exits without the lab asking (here: SIGKILL), the event
    log gets one error naming the slot, the exit code and the guest's last console
    lines, so the console says why the VM row went away."""
    with Lab(LabOptions(workdir=lab_workdir)) as lab:
        lab.start()
        pid = lab.vm(lab.current).pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)

        def errors() -> list[str]:
            return [e.text for e in lab.runtime.log.since(0)[1] if e.level == "error"]

        wait_until(
            lambda: any("lab: the guest's QEMU" in t for t in errors()),
            WAIT_S,
            what="the error line",
            describe=errors,
        )
        lines = [t for t in errors() if "lab: the guest's QEMU" in t]
        assert len(lines) == 1
        assert "on slot a exited (code -9); guest console: SVQ-" in lines[0]
        time.sleep(0.5)  # the watch goes on: still one line
        assert len([t for t in errors() if "lab: the guest's QEMU" in t]) == 1
    assert lab_processes(lab_workdir) == []
