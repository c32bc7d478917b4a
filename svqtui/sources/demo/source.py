"""The embedded demo source: synthetic VMs whose notifications are real.

Each demo queue has a "guest" side (it posts requests, kicks, and reads calls)
and a "device" side (it reads kicks, completes requests, and calls), talking
over real eventfds. In shadow mode the queue's fds are relayed by the real
engine, exactly as for an interposed vhost-user device; with shadow off the
device uses the guest's fds directly and svqtui counts nothing, as for a real
device. The workload varies: per-queue rates, occasional guest masking of a
queue, and one queue whose device periodically stalls and recovers.

Each queue also has a simulated split ring (svqtui.sources.demo.ring) that
guest and device write as a real driver and device would, read back with
the same ``inspect_ring`` as an interposed device: suppression flags, event
indices and the oldest request show in the demo. Scheduled ``EPISODES``
(a lost call, a forgotten NO_INTERRUPT, a lost kick, a guest mask, device
polling with NO_NOTIFY, the stall) make every diagnosis appear once per
cycle of STALL_EVERY_TICKS.

``seed`` fixes the workload's plan (rates, mask and stall schedule).
``autorun=False`` runs no threads: tests call ``advance(ticks)``, which steps
guest and device in lock-step with the engine and gives exact counters.
"""

from __future__ import annotations

import enum
import os
import random
import select
import threading
import time
from dataclasses import dataclass, field

from svqtui.engine import Engine, EngineSnapshot, Link, QueueCounters
from svqtui.engine.faults import Fault, FaultKind, fault_fields
from svqtui.model import (
    DeviceView,
    MaskState,
    QueueView,
    ShadowVia,
    SourceKind,
    SourceStatus,
    VMView,
)
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.demo.ring import DemoRing
from svqtui.sources.errors import ActionUnsupported, UnknownDevice
from svqtui.sources.ring_view import ring_fields
from svqtui.virtio.requests import DeviceKind
from svqtui.virtio.split_ring import VRING_AVAIL_F_NO_INTERRUPT, VRING_USED_F_NO_NOTIFY

TICK_S = 0.05
RING_SIZE = 256
STALL_EVERY_TICKS = 900  # the stalling queue stops answering every 45 s...
STALL_TICKS = 160  # ...for 8 s, longer than the default stuck_after (5 s)
SETTLE_TIMEOUT_S = 2.0


class Episode(enum.Enum):
    """What goes wrong (or just differently) on a demo queue for a while, so
    that every diagnosis (svqtui.diagnosis) shows once per cycle."""

    CALL_LOST = "the device completes without calling"  # -> device owes a call
    NO_INTERRUPT = "the guest sets NO_INTERRUPT and forgets it"  # -> guest suppressed calls
    KICK_LOST = "the guest posts without kicking"  # -> kick owed
    GUEST_MASK = "the guest masks the call vector"  # -> calls held by the guest's mask
    POLLING = "the device polls with NO_NOTIFY set"  # healthy: a flag that changes
    STALL = "the device stops completing"  # -> back-end not reading


EPISODE_TICKS = 240  # 12 s: a diagnosis shows for 7 s after the 5 s stuck_after
# (device, queue) -> [(first tick of the cycle, episode)], each EPISODE_TICKS long
# (the stall: STALL_TICKS, as the existing stall schedule)
EPISODES: dict[tuple[str, int], tuple[tuple[int, Episode], ...]] = {
    ("demo:db01/blk0", 0): ((60, Episode.CALL_LOST), (420, Episode.KICK_LOST)),
    ("demo:db01/blk0", 1): ((STALL_EVERY_TICKS - STALL_TICKS, Episode.STALL),),
    ("demo:web01/net0", 1): ((150, Episode.NO_INTERRUPT),),
    ("demo:web01/net0", 2): ((300, Episode.GUEST_MASK),),
    ("demo:web01/net0", 3): ((560, Episode.POLLING),),
}


def episode_at(key: str, index: int, tick: int) -> Episode | None:
    """The episode queue ``index`` of device ``key`` is in at ``tick``."""
    phase = tick % STALL_EVERY_TICKS
    for start, episode in EPISODES.get((key, index), ()):
        length = STALL_TICKS if episode is Episode.STALL else EPISODE_TICKS
        if start <= phase < start + length:
            return episode
    return None


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def _drain(fd: int) -> int:
    try:
        return os.eventfd_read(fd)
    except BlockingIOError:
        return 0


@dataclass
class _Totals:
    """Counts carried over from earlier shadow periods (engine slots reset)."""

    kicks: int = 0
    calls: int = 0
    held: int = 0
    injected_kicks: int = 0
    injected_calls: int = 0


@dataclass
class DemoQueue:
    """One synthetic virtqueue: its guest fds, device fds and split ring."""

    index: int
    rate: float  # requests per second
    batch: int = 1  # requests per notification (notification suppression)
    ring: DemoRing | None = None  # the simulated split ring the view reads back
    consumed: int = 0  # the used index the guest has handled (frees its descriptors)
    episode: Episode | None = None
    guest_kick: int = field(default_factory=_eventfd)  # guest writes
    guest_call: int = field(default_factory=_eventfd)  # guest reads
    dev_kick: int = -1  # device reads: guest_kick, or the engine's fd in shadow
    dev_call: int = -1  # device writes: guest_call, or the engine's fd in shadow
    shadow_kick: int = -1  # engine-owned fds handed to the "device" in shadow mode
    shadow_call: int = -1
    slot: int | None = None
    avail: int = 0
    used: int = 0
    guest_masked: bool = False
    hold: bool = False  # the operator's hold (`m`)
    stalls: bool = False
    stalled: bool = False
    credit: float = 0.0
    mask_until: int = 0
    kicks_written: int = 0  # while shadowed: what the engine must have read
    calls_written: int = 0
    totals: _Totals = field(default_factory=_Totals)

    def __post_init__(self) -> None:
        self.dev_kick, self.dev_call = self.guest_kick, self.guest_call

    @property
    def in_flight(self) -> int:
        return (self.avail - self.used) & 0xFFFF


@dataclass
class DemoDevice:
    key: str
    name: str
    kind: str
    queues: list[DemoQueue]
    shadow: bool = False


@dataclass
class DemoVM:
    key: str
    name: str
    devices: list[DemoDevice]


def _plan(rng: random.Random) -> list[DemoVM]:
    """Two VMs: virtio-net with 4 queue pairs, vhost-user-blk with 2 queues."""
    net = [
        DemoQueue(i, rng.uniform(40, 160) if i % 2 else rng.uniform(80, 300), rng.randint(1, 6))
        for i in range(8)
    ]
    blk = [DemoQueue(i, rng.uniform(20, 90), rng.randint(1, 3)) for i in range(2)]
    blk[1].stalls = True
    for q in net:  # virtio-net without EVENT_IDX: the flags are what suppresses
        q.ring = DemoRing(RING_SIZE, DeviceKind.NET, q.index, event_idx=False)
    for q in blk:  # vhost-user-blk with EVENT_IDX: the event indices are
        q.ring = DemoRing(RING_SIZE, DeviceKind.BLK, q.index, event_idx=True)
    return [
        DemoVM(
            "demo:web01",
            "web01",
            [DemoDevice("demo:web01/net0", "net0", "virtio-net (demo)", net)],
        ),
        DemoVM(
            "demo:db01",
            "db01",
            [DemoDevice("demo:db01/blk0", "blk0", "vhost-user-blk (demo)", blk)],
        ),
    ]


class DemoSource(Source):
    """Synthetic VMs driving real eventfds through the real engine."""

    kind = SourceKind.DEMO

    def __init__(self, seed: int | None = None, autorun: bool = True, shadow: bool = True) -> None:
        self.name = "demo"
        self.seed = seed
        self._rng = random.Random(seed)
        self.vms = _plan(self._rng)
        self._autorun = autorun
        self._initial_shadow = shadow
        self._engine: Engine | None = None
        self._ctx: SourceContext | None = None
        self._lock = threading.RLock()  # guards queue state between threads
        self._tick = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._switch_ack = threading.Condition(self._lock)
        self._device_gen = 0  # bumped when device fds change
        self._device_seen_gen = 0

    # -- lifecycle -------------------------------------------------------------

    def start(self, ctx: SourceContext) -> None:
        self._ctx = ctx
        self._engine = ctx.engine
        if self._initial_shadow:
            for dev in self._devices():
                self._shadow_on(dev)
        if self._autorun:
            self._threads = [
                threading.Thread(target=self._guest_loop, name="demo-guest", daemon=True),
                threading.Thread(target=self._device_loop, name="demo-device", daemon=True),
            ]
            for t in self._threads:
                t.start()
        ctx.log.info(
            "demo: 2 synthetic VMs started"
            + (f" (seed {self.seed})" if self.seed is not None else "")
        )

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2.0)
        self._threads = []
        with self._lock:
            for dev in self._devices():
                if dev.shadow:
                    self._shadow_off(dev)
                for q in dev.queues:
                    for fd in (q.guest_kick, q.guest_call):
                        if fd >= 0:
                            os.close(fd)
                    q.guest_kick = q.guest_call = q.dev_kick = q.dev_call = -1

    def _devices(self) -> list[DemoDevice]:
        return [d for vm in self.vms for d in vm.devices]

    def _device(self, key: str) -> DemoDevice:
        for dev in self._devices():
            if dev.key == key:
                return dev
        raise UnknownDevice(f"demo has no device {key!r}")

    def _queue(self, key: str, index: int) -> DemoQueue:
        dev = self._device(key)
        if not 0 <= index < len(dev.queues):
            raise UnknownDevice(f"{dev.name} has queues 0-{len(dev.queues) - 1}, not {index}")
        return dev.queues[index]

    # -- shadow mode -----------------------------------------------------------

    def _shadow_on(self, dev: DemoDevice) -> None:
        assert self._engine is not None
        for q in dev.queues:
            q.shadow_kick, q.shadow_call = _eventfd(), _eventfd()
            q.kicks_written = q.calls_written = 0
            q.slot = self._engine.add_queue(
                kick_src=q.guest_kick,
                kick_dst=q.shadow_kick,
                call_src=q.shadow_call,
                call_dst=q.guest_call,
                masked=q.guest_masked or q.hold,
            )
            self._set_device_fds(q, q.shadow_kick, q.shadow_call)
        dev.shadow = True

    def _shadow_off(self, dev: DemoDevice) -> None:
        assert self._engine is not None
        for q in dev.queues:
            # The device takes the guest's fds back first, then the engine lets
            # go and signals them once, so a notification in flight is not lost.
            self._set_device_fds(q, q.guest_kick, q.guest_call)
            if q.slot is not None:
                counters = self._engine.queue(q.slot)
                self._engine.remove_queue(q.slot, handback=True)
                self._carry(q, counters)
                q.slot = None
            for fd in (q.shadow_kick, q.shadow_call):
                if fd >= 0:
                    os.close(fd)
            q.shadow_kick = q.shadow_call = -1
            q.hold = False
        dev.shadow = False

    @staticmethod
    def _carry(q: DemoQueue, c: QueueCounters) -> None:
        q.totals.kicks += c.kick.notifications
        q.totals.calls += c.call.notifications
        q.totals.held += c.call.held
        q.totals.injected_kicks += c.kick.injected
        q.totals.injected_calls += c.call.injected

    def _set_device_fds(self, q: DemoQueue, kick: int, call: int) -> None:
        """Point the device at new fds and wait until the device thread no
        longer uses the old ones (they may be closed right after)."""
        with self._lock:
            q.dev_kick, q.dev_call = kick, call
            self._device_gen += 1
            gen = self._device_gen
            if not self._threads or self._stop.is_set():
                return
            self._switch_ack.wait_for(
                lambda: self._device_seen_gen >= gen or self._stop.is_set(), timeout=2.0
            )

    def _apply_mask(self, q: DemoQueue) -> None:
        if self._engine is not None and q.slot is not None:
            self._engine.set_masked(q.slot, q.guest_masked or q.hold)

    # -- the workload ----------------------------------------------------------

    def _guest_tick(self) -> None:
        """Post requests and kick; mask/unmask now and then."""
        with self._lock:
            self._tick += 1
            for dev in self._devices():
                for q in dev.queues:
                    self._episode(dev, q)
                    if _drain(q.guest_call) and q.episode is not Episode.NO_INTERRUPT:
                        self._consume(q)  # the guest handles its completions
                    if q.episode is Episode.GUEST_MASK:
                        pass
                    elif q.mask_until and self._tick >= q.mask_until:
                        q.mask_until = 0
                        q.guest_masked = False
                        self._apply_mask(q)
                    elif not q.guest_masked and self._rng.random() < 0.002:
                        q.guest_masked = True
                        q.mask_until = self._tick + self._rng.randint(6, 30)
                        self._apply_mask(q)
                    if q.stalls:
                        phase = self._tick % STALL_EVERY_TICKS
                        q.stalled = phase >= STALL_EVERY_TICKS - STALL_TICKS
                    q.credit += q.rate * TICK_S * self._rng.uniform(0.5, 1.5)
                    # like a driver, the guest reuses only descriptors it saw used
                    n = min(int(q.credit), RING_SIZE - ((q.avail - q.consumed) & 0xFFFF))
                    if n <= 0:
                        continue
                    q.credit -= n
                    if q.ring is not None:
                        for i in range(n):
                            q.ring.post((q.avail + i) & 0xFFFF)
                        q.ring.set_avail_idx(q.avail + n)
                    q.avail = (q.avail + n) & 0xFFFF
                    if q.episode in (Episode.KICK_LOST, Episode.POLLING):
                        continue  # lost, or the device said it polls (NO_NOTIFY)
                    kicks = -(-n // q.batch)  # coalesced kicks, as one eventfd add
                    os.eventfd_write(q.guest_kick, kicks)
                    if q.slot is not None:
                        q.kicks_written += kicks

    def _episode(self, dev: DemoDevice, q: DemoQueue) -> None:
        """Enter or leave this queue's scheduled episode (EPISODES)."""
        now = episode_at(dev.key, q.index, self._tick)
        if now is q.episode:
            return
        before, q.episode = q.episode, now
        ring = q.ring
        if before is Episode.GUEST_MASK:
            q.guest_masked = False
            self._apply_mask(q)
        if now is Episode.GUEST_MASK:
            q.guest_masked, q.mask_until = True, 0
            self._apply_mask(q)
        if ring is None:
            return
        ring.set_avail_flags(VRING_AVAIL_F_NO_INTERRUPT if now is Episode.NO_INTERRUPT else 0)
        ring.set_used_flags(VRING_USED_F_NO_NOTIFY if now is Episode.POLLING else 0)
        if before is Episode.NO_INTERRUPT:
            self._consume(q)  # calls back on: the guest catches up
        if before is Episode.CALL_LOST:
            os.eventfd_write(q.dev_call, 1)  # the device's late call (what `c` would do)
            if q.slot is not None:
                q.calls_written += 1
        if before is Episode.KICK_LOST and q.in_flight:
            os.eventfd_write(q.guest_kick, 1)  # the guest's late kick
            if q.slot is not None:
                q.kicks_written += 1

    @staticmethod
    def _consume(q: DemoQueue) -> None:
        """The guest handled completions up to used.idx: with EVENT_IDX it
        asks for a call on the next one (used_event = used.idx)."""
        q.consumed = q.used
        if q.ring is not None:
            q.ring.set_used_event(q.used)

    def _device_service(self, q: DemoQueue) -> bool:
        """Read the kick fd and complete the ring unless stalled; True if a
        call was written."""
        with self._lock:
            kicked = _drain(q.dev_kick) > 0
            if q.stalled or q.in_flight == 0:
                return False
            if q.episode is Episode.KICK_LOST and not kicked:
                return False  # it waits for a kick that never comes
            calls = -(-q.in_flight // q.batch)
            if q.ring is not None:
                q.ring.complete(q.used, q.avail)
                q.ring.set_avail_event(q.avail)  # "kick me once you pass this"
            q.used = q.avail
            if q.episode in (Episode.CALL_LOST, Episode.NO_INTERRUPT):
                return False  # lost, or suppressed by the guest's NO_INTERRUPT
            os.eventfd_write(q.dev_call, calls)
            if q.slot is not None:
                q.calls_written += calls
            return True

    def _guest_loop(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self._guest_tick()
            except Exception as err:  # a demo bug must not take the console down
                self._report(f"demo guest stopped: {err}")
                return
            next_t += TICK_S
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    def _device_loop(self) -> None:
        poller = select.epoll()
        watched: dict[int, DemoQueue] = {}
        queues = [q for d in self._devices() for q in d.queues]
        try:
            while not self._stop.is_set():
                with self._lock:
                    wanted = {q.dev_kick: q for q in queues}
                    for fd in set(watched) - set(wanted):
                        poller.unregister(fd)
                    for fd in set(wanted) - set(watched):
                        poller.register(fd, select.EPOLLIN)
                    watched = wanted
                    self._device_seen_gen = self._device_gen
                    self._switch_ack.notify_all()
                for fd, _ in poller.poll(TICK_S):
                    if fd in watched:
                        self._device_service(watched[fd])
                for q in queues:  # a stalled queue recovers with its backlog
                    if q.in_flight and not q.stalled:
                        self._device_service(q)
        except Exception as err:
            self._report(f"demo device stopped: {err}")
        finally:
            poller.close()

    def _report(self, text: str) -> None:
        if self._ctx is not None:
            self._ctx.log.error(text)

    def advance(self, ticks: int = 1) -> None:
        """Lock-step mode (autorun=False): run guest and device ``ticks`` times,
        waiting for the engine to relay each half, so counters are exact."""
        for _ in range(ticks):
            self._guest_tick()
            self._settle()
            for q in self._all_queues():
                self._device_service(q)
            self._settle()

    def _all_queues(self) -> list[DemoQueue]:
        return [q for d in self._devices() for q in d.queues]

    def _settle(self) -> None:
        """Wait until the engine has read every notification written so far."""
        if self._engine is None:
            return
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            counters = self._engine.snapshot().queues
            if all(
                counters[q.slot].kick.notifications >= q.kicks_written
                and counters[q.slot].call.notifications >= q.calls_written
                for q in self._all_queues()
                if q.slot is not None and q.slot in counters
            ):
                return
            time.sleep(0.0005)

    # -- Source interface ------------------------------------------------------

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        engine_queues = engine.queues
        with self._lock:
            return [
                VMView(
                    key=vm.key,
                    name=vm.name,
                    source=SourceKind.DEMO,
                    label="demo",
                    status="running (synthetic)",
                    devices=tuple(self._device_view(d, engine_queues) for d in vm.devices),
                )
                for vm in self.vms
            ]

    def _device_view(self, dev: DemoDevice, counters: dict[int, QueueCounters]) -> DeviceView:
        return DeviceView(
            key=dev.key,
            name=dev.name,
            kind=dev.kind,
            source=SourceKind.DEMO,
            status="running, shadow on" if dev.shadow else "running, shadow off",
            shadow=dev.shadow,
            shadow_via=ShadowVia.ENGINE,
            shadow_note="demo: svqtui's engine relays this device in shadow mode",
            queues=tuple(
                self._queue_view(q, None if q.slot is None else counters.get(q.slot))
                for q in dev.queues
            ),
            notes=("synthetic device: its guest and device are threads of svqtui",),
        )

    def _queue_view(self, q: DemoQueue, c: QueueCounters | None) -> QueueView:
        common = {
            "index": q.index,
            "avail_idx": q.avail,
            "used_idx": q.used,
            "ring_source": "demo",
            "shadow": c is not None,
            "stuck_hint": None,
            "hold": q.hold,
        }
        if q.ring is not None:
            common.update(ring_fields(q.ring.report()))
        if c is None:
            mask = MaskState.MASKED if q.guest_masked else MaskState.UNMASKED
            return QueueView(
                mask=mask,
                kick_fd=f"guest eventfd {q.guest_kick} (device reads it directly)",
                call_fd=f"guest eventfd {q.guest_call} (device writes it directly)",
                **common,  # type: ignore[arg-type]
            )
        mask = MaskState.UNMASKED
        if c.call.masked:
            mask = MaskState.PENDING if c.call.pending else MaskState.MASKED
        t = q.totals
        return QueueView(
            kicks=t.kicks + c.kick.notifications,
            calls=t.calls + c.call.notifications,
            mask=mask,
            last_kick_ns=c.kick.last_ns,
            last_call_ns=c.call.last_ns,
            held=t.held + c.call.held,
            injected_kicks=t.injected_kicks + c.kick.injected,
            injected_calls=t.injected_calls + c.call.injected,
            kick_fd=f"guest eventfd {c.kick.src} -> engine eventfd {c.kick.dst}",
            call_fd=f"engine eventfd {c.call.src} -> guest eventfd {c.call.dst}",
            error=c.error,
            **common,  # type: ignore[arg-type]
            **fault_fields(c),  # type: ignore[arg-type]
        )

    def status(self) -> SourceStatus:
        alive = not self._autorun or all(t.is_alive() for t in self._threads)
        return SourceStatus(self.name, self.kind, alive, "synthetic VMs" if alive else "stopped")

    def owns(self, device_key: str) -> bool:
        return any(d.key == device_key for d in self._devices())

    def set_shadow(self, device_key: str, on: bool) -> None:
        dev = self._device(device_key)
        with self._lock:
            if dev.shadow == on:
                return
            if on:
                self._shadow_on(dev)
            else:
                self._shadow_off(dev)
        self._log(f"shadow {'on' if on else 'off'}", device_key)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        q = self._queue(device_key, queue)
        with self._lock:
            if q.slot is None:
                raise ActionUnsupported(
                    "shadow mode is off: the operator hold needs the engine in the path "
                    "(press s first)"
                )
            q.hold = masked
            self._apply_mask(q)
        self._log(f"queue {queue}: {'hold (masked)' if masked else 'released'}", device_key, queue)

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        q = self._queue(device_key, queue)
        with self._lock:
            if q.slot is None or self._engine is None:
                raise ActionUnsupported(
                    "shadow mode is off: faults are armed in the engine (press s first)"
                )
            if fault is None:
                for link in Link:
                    self._engine.set_fault(q.slot, link, FaultKind.NONE, 0)
            else:
                self._engine.set_fault(q.slot, fault.link, fault.kind, fault.amount)
        what = f"fault: {fault.describe()}" if fault else "faults cleared"
        self._log(f"queue {queue}: {what}", device_key, queue)

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        q = self._queue(device_key, queue)
        with self._lock:
            if q.slot is None or self._engine is None:
                # No engine in the path: signal the fd the peer reads directly.
                os.eventfd_write(q.guest_kick if link is Link.KICK else q.guest_call, 1)
            else:
                self._engine.inject(q.slot, link)
        self._log(f"queue {queue}: injected a {link.name.lower()}", device_key, queue)

    def reset(self, device_key: str | None = None) -> None:
        devices = self._devices() if device_key is None else [self._device(device_key)]
        with self._lock:
            for dev in devices:
                for q in dev.queues:
                    q.totals = _Totals()
                    if q.slot is not None and self._engine is not None:
                        self._engine.reset(q.slot)

    def _log(self, text: str, device_key: str, queue: int | None = None) -> None:
        if self._ctx is not None:
            self._ctx.log.info(text, device_key, queue)
