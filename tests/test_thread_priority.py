"""svqtui.thread_priority: the engine's short slice keeps its policy and nice value;
the process's collector policy after start-up."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from svqtui.gc_policy import GEN0_THRESHOLD, settle_after_start
from svqtui.thread_priority import request_short_slice

T = TypeVar("T")


def _in_thread(fn: Callable[[], T]) -> T:
    out: list[T] = []
    thread = threading.Thread(target=lambda: out.append(fn()))
    thread.start()
    thread.join()
    return out[0]


def test_a_short_slice_keeps_the_threads_nice_value_and_policy() -> None:
    def run() -> tuple[bool, int, int, str]:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + 3)
        nice = os.getpriority(os.PRIO_PROCESS, tid)
        granted = request_short_slice(100)
        sched = Path(f"/proc/self/task/{tid}/sched")
        text = sched.read_text() if sched.exists() else ""
        return granted, nice, os.getpriority(os.PRIO_PROCESS, tid), text

    granted, nice, after, sched = _in_thread(run)
    assert after == nice  # only this thread, nothing else changed
    assert os.sched_getscheduler(0) == os.SCHED_OTHER
    if granted:  # a kernel with custom slices (Linux 6.12+) reports it
        slices = [line.split(":")[1].strip() for line in sched.splitlines() if "se.slice" in line]
        assert slices in ([], ["100000"])


def test_after_start_the_collector_skips_a_refreshs_churn() -> None:
    before = gc.get_threshold()
    try:
        settle_after_start()
        assert gc.get_threshold()[0] >= GEN0_THRESHOLD
        assert gc.get_threshold()[1:] == before[1:]
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
