"""Helpers for console tests: a demo runtime in lock-step, frozen clocks for
byte-stable screenshots, and polling waits for Textual pilots.

Nothing here is a mock of svqtui: the demo drives real eventfds through the
real engine. Only the clocks are replaced, because the engine stamps real
CLOCK_MONOTONIC times that no screenshot could reproduce.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from textual.pilot import Pilot

from svqtui.config import Config
from svqtui.engine import EngineSnapshot
from svqtui.model import (
    DeviceView,
    EngineStatus,
    MaskState,
    QueueRow,
    QueueView,
    Snapshot,
    SourceKind,
    SourceStatus,
    VMView,
)
from svqtui.monitor import Monitor
from svqtui.runtime import Runtime
from svqtui.sources.demo import DemoSource
from tests.support.wait import wait_until_async

WAIT_TIMEOUT_S = 15.0
FROZEN_WALL = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC


class StepClock:
    """A monotonic clock that moves exactly one second per reading."""

    def __init__(self, start_ns: int = 10**12, step_ns: int = 10**9) -> None:
        self.now_ns = start_ns
        self.step_ns = step_ns

    def __call__(self) -> int:
        self.now_ns += self.step_ns
        return self.now_ns


class FrozenAgeDemo(DemoSource):
    """The demo with last-kick/call times rewritten relative to a StepClock
    (index-dependent, so ages differ per queue but never between runs)."""

    def __init__(self, clock: StepClock, seed: int) -> None:
        super().__init__(seed=seed, autorun=False)
        self.clock = clock

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        next_ns = self.clock.now_ns + self.clock.step_ns  # what the monitor reads next
        out = []
        for vm in super().collect(engine):
            devices = []
            for dev in vm.devices:
                queues = tuple(
                    dataclasses.replace(
                        q,
                        last_kick_ns=next_ns - (q.index + 1) * 150_000_000 if q.last_kick_ns else 0,
                        last_call_ns=next_ns - (q.index + 2) * 150_000_000 if q.last_call_ns else 0,
                    )
                    for q in dev.queues
                )
                devices.append(dataclasses.replace(dev, queues=queues))
            out.append(dataclasses.replace(vm, devices=tuple(devices)))
        return out


class RealDemo(DemoSource):
    """A stand-in for an interposed real device: the demo, with every device
    marked real=True (quitting while one is shadowed must ask first)."""

    def collect(self, engine: EngineSnapshot) -> list[VMView]:
        return [
            dataclasses.replace(
                vm, devices=tuple(dataclasses.replace(d, real=True) for d in vm.devices)
            )
            for vm in super().collect(engine)
        ]


@contextmanager
def started(runtime: Runtime) -> Iterator[Runtime]:
    runtime.start()
    try:
        yield runtime
    finally:
        runtime.stop()


def demo_runtime(source: DemoSource, refresh_s: float = 0.2, clock: bool = True) -> Runtime:
    """A runtime over one demo source (not started); ``clock=False``: its
    monitor refreshes only when asked."""
    return Runtime(Config(refresh_s=refresh_s, max_queues=64), sources=[source], clock=clock)


def frozen_runtime(seed: int = 7) -> tuple[Runtime, FrozenAgeDemo]:
    """A runtime whose monitor reads a StepClock and a frozen wall clock.
    Call ``prime`` after starting it."""
    clock = StepClock()
    demo = FrozenAgeDemo(clock, seed)
    runtime = demo_runtime(demo, refresh_s=1.0, clock=False)
    runtime.engine.set_polling("off")  # spin time is real time: "poll off" is stable
    runtime.monitor = Monitor(
        runtime.sources,
        runtime.engine,
        runtime.log,
        runtime.config.stuck,
        history=runtime.config.history,
        interval_s=runtime.config.refresh_s,
        clock_ns=clock,
        wall_clock=lambda: FROZEN_WALL,
    )
    return runtime, demo


def prime(
    runtime: Runtime, demo: DemoSource, samples: int = 12, ticks: int = 4, skip: int = 0
) -> None:
    """Build rate history: ``skip`` demo ticks first, then ``samples``
    refreshes, each after ``ticks`` demo ticks, then ``ticks`` more so the
    console's first refresh has rates."""
    demo.advance(skip)
    runtime.monitor.refresh()
    for _ in range(samples):
        demo.advance(ticks)
        runtime.monitor.refresh()
    demo.advance(ticks)


async def until(
    pilot: Pilot[object],
    pred: Callable[[], object],
    what: str,
    timeout: float = WAIT_TIMEOUT_S,
) -> None:
    """Let the app run until ``pred()`` holds; fail after a generous timeout."""
    await wait_until_async(pred, pilot.pause, timeout, what=what)


def synthetic_snapshot(
    devices: int, queues: int, tick: int = 0, stuck: frozenset[str] = frozenset()
) -> Snapshot:
    """A snapshot built directly from model data: ``devices`` devices (two per
    VM) of ``queues`` queues, counters growing with ``tick``. ``stuck`` names
    row keys to mark stuck."""
    vms: list[VMView] = []
    rows: dict[str, QueueRow] = {}
    device_views: dict[str, DeviceView] = {}
    for v in range(0, devices, 2):
        vm_devices = []
        for d in range(v, min(v + 2, devices)):
            key = f"syn:vm{v // 2}/dev{d}"
            qs = tuple(
                QueueView(
                    index=i,
                    kicks=tick * (i + 1),
                    calls=tick * (i + 1),
                    mask=MaskState.UNMASKED,
                    shadow=True,
                    avail_idx=tick & 0xFFFF,
                    used_idx=tick & 0xFFFF,
                )
                for i in range(queues)
            )
            dev = DeviceView(key, f"dev{d}", "virtio-net", SourceKind.DEMO, shadow=True, queues=qs)
            vm_devices.append(dev)
            device_views[key] = dev
            for q in qs:
                row = QueueRow(
                    view=q,
                    device_key=key,
                    vm_name=f"vm{v // 2}",
                    device_name=dev.name,
                    kick_rate=float(q.index + 1),
                    call_rate=float(q.index + 1),
                    history=(float(tick),),
                    stuck="no call for 9s" if f"{key}#{q.index}" in stuck else None,
                )
                rows[row.key] = row
        vms.append(VMView(f"syn:vm{v // 2}", f"vm{v // 2}", SourceKind.DEMO, tuple(vm_devices)))
    return Snapshot(
        taken_at=FROZEN_WALL,
        vms=tuple(vms),
        rows=rows,
        engine=EngineStatus(alive=True, relays_per_s=0.0, queues=0, backlog=0),
        sources=(SourceStatus("syn", SourceKind.DEMO, True),),
        interval_s=1.0,
        devices=device_views,
    )
