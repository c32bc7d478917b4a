"""Thread priority: svqtui's own Python threads yield the CPU to the relay engine."""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import struct
import threading

UI_NICE = 10  # how much lower than the engine the monitor's and console's threads run


def lower_thread_priority(by: int = UI_NICE) -> None:
    """Make the calling thread (only it: Linux nice is per thread) yield the
    CPU to the relay engine and the sources: on a busy host a refresh or a
    render must never delay a relayed notification. Best effort."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (OSError, AttributeError):
        pass


ENGINE_SLICE_US = 100  # the shortest slice Linux grants (it clamps to 0.1-100 ms)
_SYS_SCHED_SETATTR = {"x86_64": 314, "aarch64": 274}
_SCHED_ATTR = struct.Struct("=IIQiIQQQII")  # struct sched_attr, SCHED_ATTR_SIZE_VER1 (56)


def request_short_slice(slice_us: int = ENGINE_SLICE_US) -> bool:
    """Ask the scheduler for a short time slice for the calling thread (the
    relay engine's), keeping its policy (SCHED_OTHER) and nice value.

    Under EEVDF (Linux 6.12+: ``sched_attr.sched_runtime`` of a fair thread),
    a thread waking with a shorter slice than the running one's preempts it
    at once; with the default slice (~3 ms) a woken engine could wait for a
    console or monitor thread, at nice +10, to finish its own slice: the
    relay p99 with the console running was 2-9x its p99 without, on two
    CPUs, and 1.1-1.5x with a 100 us slice (benchmarks/ui.py). The slice does
    not raise the thread's share of the CPU. Best effort: False where the
    kernel or the platform does not have it (older kernels ignore it)."""
    number = _SYS_SCHED_SETATTR.get(platform.machine())
    if number is None:
        return False
    try:
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        libc = ctypes.CDLL(None, use_errno=True)
        attr = ctypes.create_string_buffer(
            _SCHED_ATTR.pack(
                _SCHED_ATTR.size, os.SCHED_OTHER, 0, nice, 0, slice_us * 1000, 0, 0, 0, 0
            ),
            _SCHED_ATTR.size,
        )
        return int(libc.syscall(number, tid, attr, 0)) == 0
    except (OSError, AttributeError):
        return False


#: How much nicer a successor's start-up (``--takeover``: imports,
#: configuration) runs, its priority restored before its first thread
#: starts: SVQTUI_START_NICE=N (1-19). Off by default: measured under a TCG
#: guest on a loaded 2-CPU host, nice 10 made no difference to the guest's
#: pauses and doubled the start-up's wall time (docs/design.md#takeover).
START_NICE = 0
START_NICE_ENV = "SVQTUI_START_NICE"
CAP_SYS_NICE = 23
_quiet_from: int | None = None  # the nice value before quiet_start()


def _may_raise_priority(to: int) -> bool:
    """Whether this process may set a nice value as low as ``to``
    (CAP_SYS_NICE, or RLIMIT_NICE allows it)."""
    try:
        import resource

        if resource.getrlimit(resource.RLIMIT_NICE)[0] >= 20 - to:
            return True
        with open("/proc/self/status", encoding="ascii") as f:
            caps = next(line for line in f if line.startswith("CapEff:"))
        return bool(int(caps.split()[1], 16) >> CAP_SYS_NICE & 1)
    except (OSError, ValueError, StopIteration, ImportError):
        return False


def start_nice_from_env() -> int:
    """SVQTUI_START_NICE (0-19), else START_NICE."""
    value = os.environ.get(START_NICE_ENV, "")
    return int(value) if value.isdigit() and int(value) <= 19 else START_NICE


def quiet_start(by: int) -> bool:
    """Lower this process's only thread's priority for its start-up, if it
    may raise it again (``end_quiet_start``); False if left as it is."""
    global _quiet_from
    if by <= 0 or _quiet_from is not None or threading.active_count() != 1:
        return False
    try:
        tid = threading.get_native_id()
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        if nice >= 19 or not _may_raise_priority(nice):
            return False
        os.setpriority(os.PRIO_PROCESS, tid, min(19, nice + by))
    except OSError:
        return False
    _quiet_from = nice
    return True


def end_quiet_start() -> None:
    """The start-up is over: the priority ``quiet_start`` found, for every
    thread of this process (call it before starting threads: a thread
    started meanwhile inherited the lowered priority)."""
    global _quiet_from
    nice, _quiet_from = _quiet_from, None
    if nice is None:
        return
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        tids = [threading.get_native_id()]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, nice)
