"""A successor starts up nicer and gets its priority back before its first
thread (svqtui.thread_priority.quiet_start / end_quiet_start,
docs/design.md#takeover)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import svqtui

SCRIPT = """
import os, threading
from svqtui.thread_priority import quiet_start, end_quiet_start
before = os.getpriority(os.PRIO_PROCESS, 0)
lowered = quiet_start(10)
during = os.getpriority(os.PRIO_PROCESS, 0)
end_quiet_start()
after = os.getpriority(os.PRIO_PROCESS, 0)
seen = []
t = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
t.start(); t.join()
print(before, lowered, during, after, seen[0])
"""


def _run(preexec: object = None) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(svqtui.__file__).parents[1])},
        preexec_fn=preexec,  # type: ignore[arg-type]
        timeout=60,
    )
    return out.stdout.split()


def test_the_start_up_runs_nicer_and_the_threads_do_not() -> None:
    """With the right to raise it again: nice +10 during the start-up, the
    original value after, and a thread started after has it."""
    before, lowered, during, after, thread = _run()
    if lowered != "True":
        pytest.skip("this process may not raise its priority again (no CAP_SYS_NICE)")
    assert int(during) == min(19, int(before) + 10)
    assert int(after) == int(before) and int(thread) == int(before)


def test_nothing_is_lowered_when_it_could_not_be_raised_again() -> None:
    """At nice 19 already (or without the right): left as it is."""
    before, lowered, during, after, _ = _run(lambda: os.nice(19))
    assert lowered == "False" and before == during == after == "19"
