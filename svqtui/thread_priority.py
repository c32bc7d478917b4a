"""Thread priority: svqtui's own Python threads yield the CPU to the relay engine."""

from __future__ import annotations

import contextlib
import os
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
