"""A real TCG guest on qemu-storage-daemon's vhost-user-blk export (svqtui.lab.qemu_vm).

These boot the Debian cloud kernel with the busybox initramfs under TCG (/dev/kvm
cannot run it here); boot to first verified I/O takes ~3 s.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from svqtui.lab.errors import GuestIOError, LabProcessError
from svqtui.lab.guest_image import GuestImage
from svqtui.lab.guest_init import GuestParams, block_pattern
from svqtui.lab.qemu_vm import QemuVM, VhostUserBlkDisk, VhostUserNetNic, VMSpec
from svqtui.lab.storage import StorageDaemon
from tests.support.guest import BootGuest, processes_mentioning

TIMEOUT_S = 120.0


def test_command_line_has_shared_memory_vhost_user_disk_qmp_and_name(tmp_path: Path) -> None:
    """vhost-user needs shared guest RAM; QMP, serial log and -name are where the
    harness and discovery expect them."""
    spec = VMSpec(
        name="vm1",
        kernel=Path("/k"),
        initrd=Path("/i"),
        workdir=tmp_path,
        disks=(VhostUserBlkDisk(tmp_path / "a.sock", num_queues=4, reconnect_s=1),),
        append="svq.iters=3",
    )
    argv = spec.argv()
    joined = " ".join(argv)
    assert argv[argv.index("-name") + 1] == "vm1"
    assert "memory-backend-memfd,id=mem,size=256M,share=on" in argv
    assert "q35,accel=tcg,memory-backend=mem" in argv
    assert f"socket,id=vhost0,path={tmp_path / 'a.sock'},reconnect=1" in argv
    assert "vhost-user-blk-pci,id=vblk0,chardev=vhost0,num-queues=4" in argv
    assert f"unix:{tmp_path / 'vm1.qmp'},server=on,wait=off" in argv
    assert argv[argv.index("-append") + 1] == "console=ttyS0 quiet panic=1 svq.iters=3"
    assert "-nographic" not in joined  # it would put a monitor on stdio


def test_command_line_has_a_vhost_user_net_nic(tmp_path: Path) -> None:
    """A vhost-user netdev on its chardev, multi-queue, INTx (vectors=0: QEMU 7.2
    under TCG does not deliver its MSI-X interrupts)."""
    spec = VMSpec(
        name="vm1",
        kernel=Path("/k"),
        initrd=Path("/i"),
        workdir=tmp_path,
        nics=(VhostUserNetNic(tmp_path / "n.sock", queues=2),),
    )
    argv = spec.argv()
    assert f"socket,id=vnet0,path={tmp_path / 'n.sock'}" in argv
    assert "vhost-user,id=vnetdev0,chardev=vnet0,queues=2" in argv
    nic = "virtio-net-pci,id=vnic0,netdev=vnetdev0,mac=52:54:00:12:34:56,vectors=0,mq=on"
    assert nic in argv


def test_bounded_guest_verifies_io_through_the_daemon_and_exits(
    tmp_path: Path, guest_image: GuestImage, record_property: Callable[[str, object], None]
) -> None:
    """A guest with svq.iters=N boots, verifies N write/read-back iterations with no
    failure, dumps its virtio interrupt counts (at least one interrupt per request),
    powers off by itself; the data really went through qemu-storage-daemon (the
    disk image holds each slot's last pattern); no process is left afterwards.
    Also measures boot-to-first-I/O and the iteration rate."""
    iters, slots, blocks = 60, 16, 8
    params = GuestParams(delay_ms=0, iters=iters, slots=slots, blocks=blocks, irq_every=20)
    with StorageDaemon(tmp_path / "disk.img", tmp_path / "qsd.sock") as qsd:
        vm = QemuVM.for_guest(guest_image, tmp_path, (VhostUserBlkDisk(qsd.socket),), params)
        with vm:
            first = vm.wait_io_ok(1, TIMEOUT_S)
            done = vm.wait_done(TIMEOUT_S)
            assert vm.wait_exit(TIMEOUT_S) == 0
        assert done.fields["iters"] == done.fields["ok"] == str(iters)
        assert done.fields["fail"] == "0"
        oks = vm.console.io_ok
        assert [e.int_field("iter") for e in oks] == list(range(1, iters + 1))
        assert vm.console.failures == []
        irq_dumps = {e.int_field("iter") for e in vm.console.of_kind("IRQ")}
        assert irq_dumps == {20, 40, 60}
        counts = vm.console.irq_counts()
        # each iteration is a synchronous O_DIRECT write then read: >= 2 completions
        assert counts["virtio0-req.0"] >= 2 * iters
        image = (tmp_path / "disk.img").read_bytes()
        for slot in range(slots):
            last = max(n for n in range(1, iters + 1) if (n - 1) % slots == slot)
            start = slot * blocks * 4096
            assert image[start : start + blocks * 4096] == block_pattern(last, slot, blocks)
        assert image[slots * blocks * 4096 :].count(0) == len(image) - slots * blocks * 4096

    assert vm.started_at is not None
    first_io_s = first.seen_at - vm.started_at
    t0, t1 = oks[0].float_field("t"), oks[-1].float_field("t")
    assert t0 is not None and t1 is not None and t1 > t0
    rate = (len(oks) - 1) / (t1 - t0)
    record_property("first_io_s", round(first_io_s, 2))
    record_property("iterations_per_s", round(rate, 1))
    print(
        f"\nlab guest: first verified I/O {first_io_s:.2f} s after QEMU start; "
        f"{rate:.1f} iterations/s (1 vCPU, delay 0, {blocks * 4} KiB a request)"
    )
    assert processes_mentioning(str(tmp_path)) == []


def test_booted_guest_fixture_runs_with_heartbeat_and_irq_dumps(booted_guest: QemuVM) -> None:
    """The booted_guest fixture: an endless guest doing verified I/O, with heartbeat
    lines and periodic SVQ-IRQ dumps of its virtio request queue; waiting from a
    mark counts only iterations printed after it."""
    vm = booted_guest
    vm.wait_for(lambda e: e.kind == "HB", TIMEOUT_S, "a heartbeat")
    vm.wait_for(
        lambda e: e.kind == "IRQ" and e.fields.get("name") == "virtio0-req.0",
        TIMEOUT_S,
        "an SVQ-IRQ line of virtio0-req.0",
    )
    assert vm.running and vm.console.failures == []
    assert vm.console.irq_counts()["virtio0-req.0"] > 0
    mark = vm.console.mark()
    last_before = vm.console.io_ok[-1].int_field("iter") or 0
    later = vm.wait_io_ok(3, TIMEOUT_S, since=mark)
    assert (later.int_field("iter") or 0) >= last_before + 3


def test_two_vcpus_drive_both_request_queues(
    storage_daemon: StorageDaemon, boot_guest: BootGuest
) -> None:
    """With cpus=2 the guest alternates CPUs, so both queues of the 2-queue disk
    carry requests (as the interrupt counts of req.0 and req.1 show)."""
    vm = boot_guest(
        storage_daemon.socket,
        cpus=2,
        params=GuestParams(delay_ms=0, iters=10, irq_every=10),
        wait_io=0,
    )
    vm.wait_done(TIMEOUT_S)
    counts = vm.console.irq_counts()
    assert counts["virtio0-req.0"] >= 10 and counts["virtio0-req.1"] >= 10
    assert {e.int_field("cpu") for e in vm.console.io_ok} == {0, 1}


def test_guest_setup_error_ends_the_wait_and_the_vm(
    storage_daemon: StorageDaemon, boot_guest: BootGuest
) -> None:
    """A guest that cannot run its loop (disk smaller than slots*blocks) reports
    SVQ-ERROR, the wait raises GuestIOError naming it, and the guest powers off."""
    with pytest.raises(GuestIOError, match="disk-too-small"):
        boot_guest(storage_daemon.socket, params=GuestParams(slots=4096, blocks=64))


def test_everything_is_killed_when_the_test_body_raises(
    tmp_path: Path, guest_image: GuestImage
) -> None:
    """An exception while the guest does I/O stops QEMU and the daemon (with blocks)."""
    qsd = StorageDaemon(tmp_path / "disk.img", tmp_path / "qsd.sock")
    vm = QemuVM.for_guest(guest_image, tmp_path, (VhostUserBlkDisk(qsd.socket),))
    with pytest.raises(RuntimeError, match="body failed"), qsd, vm:
        vm.wait_io_ok(1, TIMEOUT_S)
        assert len(processes_mentioning(str(tmp_path))) == 2
        raise RuntimeError("test body failed")
    assert processes_mentioning(str(tmp_path)) == []


def test_qemu_without_a_backend_fails_with_its_reason(
    tmp_path: Path, guest_image: GuestImage
) -> None:
    """QEMU started on a vhost-user socket nobody listens on exits at once: one
    LabProcessError with QEMU's own message."""
    disks = (VhostUserBlkDisk(tmp_path / "nobody.sock"),)
    start = time.monotonic()
    with pytest.raises(LabProcessError, match=r"QEMU \(svq-guest\) exited .*nobody.sock"):
        QemuVM.for_guest(guest_image, tmp_path, disks).start()
    assert time.monotonic() - start < TIMEOUT_S
    assert processes_mentioning(str(tmp_path)) == []
