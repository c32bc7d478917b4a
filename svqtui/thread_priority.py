"""Thread priority: svqtui's own Python threads yield the CPU to the relay engine."""

from __future__ import annotations

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
