"""The lab: a real guest on a real disk behind svqtui's interposer, set up and torn down
in order, with the actions of the demo (migrate, stall the back-end).

Start order (``Lab.start``): the guest image (built once, cached), the shared
disk (qemu-storage-daemon with one export per slot), svqtui's runtime (engine,
I/O loop, interposers ``lab-a``/``lab-b`` listening, the lab source), then
QEMU on slot ``a`` (TCG: /dev/kvm here cannot run the stock guest kernel, and a
TCG guest behaves the same everywhere), and the first verified guest I/O.
``Lab.close`` stops everything in the reverse order, from any thread, on any
exit path (an exception, SIGTERM, Ctrl-C): QEMUs first (so they never see
their back-end vanish), then the runtime, then the daemon (resumed first if
stalled), then the work directory if the lab made it.

``Lab.drop_call`` is the lab's two-key script: it drops the next call of the
guest's busy queue (the engine's ``drop-call 1`` fault, shadow mode on first),
the guest's I/O stops and the queue turns STUCK with the owed call diagnosed;
injecting a call (the console's ``c``) brings it back.

Every action that starts or stops a process runs on the lab's own thread: one
thread, alive as long as the lab, so actions never overlap (a second one while
one runs raises ``LabBusy``) and the children's parent-death signal (armed per
starting thread, see svqtui.lab.process) only fires if the whole lab dies.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from svqtui.engine.faults import Fault
from svqtui.errors import LabError, SvqtuiError
from svqtui.lab.disk import SharedDisk
from svqtui.lab.errors import LabBusy, LabProcessError, MigrationFailed
from svqtui.lab.guest_image import GuestImage, build_guest_image
from svqtui.lab.guest_init import GuestParams
from svqtui.lab.guest_watch import GuestWatch
from svqtui.lab.interposers import LabInterposers
from svqtui.lab.layout import STUCK_AFTER_S, LabLayout, Slot, lab_config
from svqtui.lab.migration import CRASH_HINT, MigrationResult, Mode, run_migration
from svqtui.lab.qemu_vm import QemuVM, VhostUserBlkDisk, VMSpec
from svqtui.lab.qmp import LabQMP
from svqtui.lab.source import LabSource, Role
from svqtui.model import DeviceView, MaskState
from svqtui.recording.settings import RecordSettings
from svqtui.runtime import Runtime
from svqtui.sources.errors import UnknownDevice
from svqtui.sources.qmp.errors import QMPError
from svqtui.sources.qmp.settings import PLUGIN as QMP
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.sources.vhost_user.errors import NotConnected
from svqtui.sources.vhost_user.settings import PLUGIN as VHOST_USER

T = TypeVar("T")
BOOT_TIMEOUT_S = 120.0
LAB_PARAMS = GuestParams(delay_ms=20, hb_ms=500)


@dataclass(frozen=True, slots=True)
class LabOptions:
    """How to run the lab."""

    workdir: Path | None = None  # None: a temporary directory, removed at the end
    shadow: bool = False  # the interposed device starts in shadow mode
    cpus: int = 1  # guest CPUs (2: both request queues carry I/O)
    params: GuestParams = field(default_factory=lambda: LAB_PARAMS)
    stuck_after_s: float = STUCK_AFTER_S
    boot_timeout_s: float = BOOT_TIMEOUT_S
    migration: Mode = Mode.LIVE
    record: Path | None = None  # a recording of the whole run (svqtui.recording), or none


@dataclass(frozen=True, slots=True)
class DroppedCall:
    """Where ``Lab.drop_call`` armed its fault."""

    device_key: str
    device: str
    queue: int
    shadow_turned_on: bool  # shadow mode was off and the lab turned it on

    @property
    def row_key(self) -> str:
        """The queue's row in the monitor's snapshot (``Snapshot.rows``)."""
        return f"{self.device_key}#{self.queue}"


class Lab:
    """The lab's processes and svqtui's runtime over them."""

    def __init__(self, options: LabOptions | None = None) -> None:
        self.options = options or LabOptions()
        self.layout = LabLayout.create(self.options.workdir)
        self.config = lab_config(
            self.layout, shadow=self.options.shadow, stuck_after_s=self.options.stuck_after_s
        )
        self.recording: Path | None = self.options.record
        if self.recording is not None:
            # The whole run to one file, and incident files (stuck, migration) beside it.
            record = RecordSettings(
                enabled=True, dir=str(self.recording.parent), continuous=str(self.recording)
            )
            self.config = dataclasses.replace(self.config, record=record)
        devices = self.config.section(VHOST_USER)
        self.vhost = VhostUserSource(devices)
        self.guest = GuestWatch(device_key=lambda: self.current.device_key)
        self.source = LabSource(
            self.guest, poll_s=self.config.section(QMP).poll_s, on_tick=self._watch_vm
        )
        self.runtime = Runtime(self.config, sources=[LabInterposers(self.vhost), self.source])
        self.disk = SharedDisk(self.layout)
        self.current: Slot = self.layout.slots[0]
        self.image: GuestImage | None = None
        self.created_at = time.monotonic()
        self.booted_at: float | None = None  # first verified guest I/O
        self.migrations: list[MigrationResult] = []
        self.started_pids: list[int] = []  # every process the lab started, for checks
        self._vms: dict[str, QemuVM] = {}
        self._qmp: dict[str, LabQMP] = {}
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="svqtui-lab")
        self._lab_thread: threading.Thread | None = None
        self._busy = threading.Lock()
        self._closing = threading.Event()
        self._closed = False
        self._runtime_started = False
        self._reported_exit: int | None = None  # pid of a QEMU whose exit was logged

    # -- running things on the lab thread ---------------------------------------------

    @property
    def closing(self) -> bool:
        return self._closing.is_set()

    def alive(self) -> bool:
        """False once ``close`` began: long waits give up."""
        return not self._closing.is_set()

    def submit(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        """Run ``fn`` on the lab thread; ``LabBusy`` if another action is running."""
        if self._closing.is_set():
            raise LabBusy("the lab is stopping")
        if not self._busy.acquire(blocking=False):
            raise LabBusy("the lab is busy with another action (a migration?): try again")

        def run() -> T:
            self._lab_thread = threading.current_thread()
            try:
                return fn()
            finally:
                self._busy.release()

        try:
            return self._executor.submit(run)
        except RuntimeError:  # the executor was shut down meanwhile
            self._busy.release()
            raise LabBusy("the lab is stopping") from None

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the lab thread and wait for its result."""
        if threading.current_thread() is self._lab_thread:
            return fn()
        return self.submit(fn).result()

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    # -- start ------------------------------------------------------------------------

    def start(self, on_step: Callable[[str], None] | None = None) -> None:
        """Bring the lab up (blocks until the guest verified its first I/O)."""
        self.call(lambda: self._start(on_step or (lambda _: None)))

    def _start(self, step: Callable[[str], None]) -> None:
        step("guest image")
        self.image = build_guest_image()
        step("qemu-storage-daemon")
        self.disk.start()
        if self.disk.pid is not None:
            self.started_pids.append(self.disk.pid)
        step("svqtui runtime")
        self.runtime.start()
        self._runtime_started = True
        for view in self.vhost.collect(self.runtime.engine.snapshot()):
            if not view.connected:
                raise LabError(f"interposer {view.name} cannot listen: {view.status}")
        self.log(
            f"lab: work directory {self.layout.workdir}; disk {self.layout.disk_image}"
            f" served by qemu-storage-daemon (pid {self.disk.pid}) on both slots"
        )
        step("QEMU")
        self.start_vm(self.current, incoming=False)
        self.source.attach(self.current, Role.CURRENT)
        self.guest.follow(self.current.serial_log)
        step("guest boot")
        self.guest.wait(
            lambda s: s.verified >= 1,
            self.options.boot_timeout_s,
            "first verified guest I/O",
            alive=self._vm_alive(self.current),
        )
        self.booted_at = time.monotonic()
        self.log(
            f"lab: guest up on slot {self.current.name} after "
            f"{self.booted_at - self.created_at:.1f}s, doing verified I/O on {self.current.device}"
        )

    def _vm_alive(self, slot: Slot) -> Callable[[], bool]:
        def alive() -> bool:
            vm = self._vms.get(slot.name)
            return self.alive() and vm is not None and vm.running

        return alive

    # -- QEMUs (lab thread) ---------------------------------------------------------

    def vm_spec(self, slot: Slot, *, incoming: bool) -> VMSpec:
        """QEMU for ``slot``: the lab guest, its disk through the slot's interposer,
        a second QMP socket for svqtui, ``-incoming defer`` for a destination."""
        if self.image is None:
            raise LabError("the guest image is not built yet")
        extra = ["-qmp", f"unix:{slot.svqtui_qmp},server=on,wait=off"]
        if incoming:
            extra += ["-incoming", "defer"]
        return VMSpec(
            name=slot.vm_name,
            kernel=self.image.kernel,
            initrd=self.image.initrd,
            workdir=self.layout.workdir,
            disks=(VhostUserBlkDisk(slot.listen, num_queues=self.disk.num_queues),),
            append=self.options.params.kernel_args(),
            cpus=self.options.cpus,
            extra_args=tuple(extra),
        )

    def start_vm(self, slot: Slot, *, incoming: bool) -> QemuVM:
        """Start QEMU on ``slot`` and open the lab's QMP session to it."""
        if self._closing.is_set():
            raise LabBusy("the lab is stopping")
        if slot.name in self._vms:
            raise LabProcessError(f"slot {slot.name} already runs a QEMU")
        with contextlib.suppress(FileNotFoundError):
            slot.svqtui_qmp.unlink()
        vm = QemuVM(self.vm_spec(slot, incoming=incoming))
        self._vms[slot.name] = vm
        vm.start()
        if vm.pid is not None:
            self.started_pids.append(vm.pid)
        if self._closing.is_set():
            vm.stop()
            raise LabBusy("the lab is stopping")
        self._qmp[slot.name] = LabQMP(slot.control_qmp, f"lab {slot.vm_name}", self.runtime.loop)
        self._qmp[slot.name].open()
        return vm

    def vm(self, slot: Slot) -> QemuVM:
        vm = self._vms.get(slot.name)
        if vm is None:
            raise LabProcessError(f"no QEMU runs on slot {slot.name}")
        return vm

    def qmp(self, slot: Slot) -> LabQMP:
        qmp = self._qmp.get(slot.name)
        if qmp is None:
            raise LabProcessError(f"no QEMU runs on slot {slot.name}")
        return qmp

    def stop_vm(self, slot: Slot) -> int | None:
        """Stop the QEMU on ``slot`` (SIGTERM, which QEMU handles like QMP ``quit``;
        SIGKILL if it lingers); its slot is free again. Its exit code."""
        self.source.detach(slot)
        qmp = self._qmp.pop(slot.name, None)
        vm = self._vms.pop(slot.name, None)
        if qmp is not None:
            qmp.close()
        return vm.stop() if vm is not None else None

    def vm_running(self) -> bool:
        """Whether the QEMU the guest currently runs in is alive."""
        vm = self._vms.get(self.current.name)
        return vm is not None and vm.running

    def vm_exit_text(self) -> str:
        """Why the current QEMU is gone, in one line (for errors and the log)."""
        vm = self._vms.get(self.current.name)
        code = vm.process.returncode if vm is not None and vm.pid is not None else None
        text = (
            f"the guest's QEMU on slot {self.current.name} exited (code {code}); "
            f"guest console: {self.guest.tail() or '(nothing)'}"
        )
        if self.migrations and self.migrations[-1].mode is Mode.LIVE:
            text += f" ({CRASH_HINT})"
        return text

    def _watch_vm(self) -> None:
        """From the lab source's thread: log once when the guest's QEMU dies on its own."""
        vm = self._vms.get(self.current.name)
        if vm is None or vm.pid is None or vm.running or self._closing.is_set():
            return
        if self._reported_exit != vm.pid and not self.busy:
            self._reported_exit = vm.pid
            self.log(f"lab: {self.vm_exit_text()}", level="error")

    def device_view(self, slot: Slot) -> DeviceView:
        """The interposer's current view of ``slot``'s device (fresh, not a snapshot)."""
        try:
            return self.vhost.device_view(slot.device_key)
        except UnknownDevice:
            raise NotConnected(f"no interposer device {slot.device}") from None

    # -- actions -------------------------------------------------------------------------

    def migrate(self) -> MigrationResult:
        """Migrate the VM to the other slot and wait (see svqtui.lab.migration)."""
        return self.call(self._migrate)

    def _migrate(self) -> MigrationResult:
        """One migration from the current slot to the other one (lab thread)."""
        if self.stalled:
            raise MigrationFailed("the back-end is stalled: resume it (S) before migrating")
        src = self.current
        dst = self.layout.other(src)
        names = (src.name, dst.name)
        mode = self.options.migration
        began = time.monotonic()
        device = self.device_view(src)
        shadow = device.shadow
        for q in device.queues:
            if q.shadow and q.mask in (MaskState.MASKED, MaskState.PENDING):
                self.runtime.set_masked(src.device_key, q.index, False)
                self.log(
                    f"lab: unmasked {src.device} queue {q.index} before migrating", level="warning"
                )
        self.runtime.set_shadow(dst.device_key, shadow)
        verified = self.guest.poll().verified
        self.log(
            f"lab: migrating the VM from slot {src.name} to {dst.name} "
            f"(shadow {'on' if shadow else 'off'}, {verified} I/O verified so far)"
        )
        try:
            self.start_vm(dst, incoming=True)
            self.source.attach(dst, Role.INCOMING)
            reply = run_migration(self.qmp(src), self.qmp(dst), names, mode, self.alive)
        except BaseException as err:
            self.stop_vm(dst)
            if mode is Mode.PAUSED:
                with contextlib.suppress(SvqtuiError):
                    self.qmp(src).execute("cont")  # the guest stays where it was, running
            if isinstance(err, QMPError):
                raise MigrationFailed(f"migration {src.name} -> {dst.name} failed: {err}") from None
            raise
        self.source.set_role(dst, Role.CURRENT)
        self.source.set_role(src, Role.OUTGOING)
        self.current = dst
        self.guest.follow(dst.serial_log)
        result = MigrationResult.from_reply(
            reply, names, shadow=shadow, mode=mode, verified_at_switch=verified
        )
        self.source.last_migration = result.view()
        self.stop_vm(src)
        result = dataclasses.replace(result, wall_s=time.monotonic() - began)
        self.migrations.append(result)
        self.log(f"lab: migrated {result.summary()}; QEMU on slot {src.name} quit")
        return result

    # -- the back-end stall --------------------------------------------------------------

    @property
    def stalled(self) -> bool:
        return self.disk.stalled

    def toggle_stall(self) -> bool:
        """Stall the back-end, or resume it if stalled (lab thread); stalled now?"""
        return self.call(self._toggle_stall)

    def _toggle_stall(self) -> bool:
        self.set_stall(not self.disk.stalled)
        return self.disk.stalled

    def set_stall(self, on: bool) -> None:
        """Freeze (SIGSTOP) or resume (SIGCONT) qemu-storage-daemon."""
        if on == self.disk.stalled:
            return
        if on:
            self.disk.stall()
            self.log(
                f"lab: back-end stalled (qemu-storage-daemon pid {self.disk.pid} SIGSTOPped): "
                f"watch {self.current.device}'s queue turn stuck, 'back-end not reading', its "
                "oldest request the guest's READ/WRITE growing older; S resumes it",
                level="warning",
            )
        else:
            self.disk.resume()
            self.log(f"lab: back-end resumed (qemu-storage-daemon pid {self.disk.pid} SIGCONT)")

    # -- the dropped call ------------------------------------------------------------------

    def drop_call(self) -> DroppedCall:
        """Drop the next call of the guest's busiest queue (lab thread); see
        ``_drop_call``."""
        return self.call(self._drop_call)

    def _drop_call(self) -> DroppedCall:
        """Arm the engine fault ``drop-call 1`` on the busiest queue of the
        guest's device, shadow mode on first if it is off (faults need it): the
        guest waits for a completion it is never told of, the queue turns STUCK
        with "device owes a call", and injecting a call (``c``) brings it back."""
        if self.stalled:
            raise LabError("the back-end is stalled: resume it (S) before dropping a call")
        slot = self.current
        device = self.device_view(slot)
        shadow_on = not device.shadow
        if shadow_on:
            self.runtime.set_shadow(slot.device_key, True)
            self.log(f"lab: shadow mode on for {slot.device} (faults need the engine in the path)")
            device = self.device_view(slot)
        queues = [q for q in device.queues if q.shadow]
        if not queues:
            raise LabError(f"{slot.device} has no queue in shadow mode yet: try again")
        busiest = max(queues, key=lambda q: (q.kicks or 0, q.used_idx or 0))
        self.runtime.set_fault(slot.device_key, busiest.index, Fault.named("drop-call", 1))
        dropped = DroppedCall(slot.device_key, slot.device, busiest.index, shadow_on)
        self.log(
            f"lab: dropping the next call of {slot.device} queue {busiest.index}: the guest's "
            "I/O stops (it waits for a completion it is never told of); watch the queue turn "
            "STUCK with 'device owes a call'; c on that queue injects the call and the guest "
            "goes on",
            level="warning",
        )
        return dropped

    # -- events ------------------------------------------------------------------------------

    def log(self, text: str, *, level: str = "info") -> None:
        self.runtime.log.add(level, text, device_key=None)

    # -- stop --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process and the runtime; idempotent, callable from any thread,
        even while a lab action is running (it fails fast once its QEMU is gone)."""
        if self._closed:
            return
        self._closing.set()
        with contextlib.suppress(Exception):
            self.disk.resume()
        for name in list(self._vms):
            vm = self._vms.get(name)
            if vm is not None:
                vm.stop()
        self._executor.shutdown(wait=True, cancel_futures=True)
        for name in list(self._vms):
            with contextlib.suppress(Exception):
                self.stop_vm(self.layout.slot(name))
        if self._runtime_started:
            self.runtime.stop()
            self._runtime_started = False
        self.disk.stop()
        self._closed = True
        if self.layout.temporary:
            shutil.rmtree(self.layout.workdir, ignore_errors=True)

    @property
    def pids(self) -> list[int]:
        """Every lab process that is running now (QEMUs and the daemon)."""
        pids = [vm.pid for vm in self._vms.values() if vm.running and vm.pid is not None]
        if self.disk.running and self.disk.pid is not None:
            pids.append(self.disk.pid)
        return pids

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
