"""Thread priority: svqtui's own Python threads yield the CPU to the relay engine."""

from __future__ import annotations

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
