"""The one way tests wait for something: poll a predicate until it holds.

Used instead of sleeps and timing assertions: a fast machine passes at once, a
slow or noisy one just polls longer; a timeout fails the test with an
``AssertionError`` saying what was awaited (and, with ``describe``, the state
it was in). Tries come quickly at first (1 ms apart, doubling) up to one per
``interval``, so a condition that holds within a millisecond costs about one,
and a slow one does not keep a CPU busy.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT_S = 30.0  # generous: a shared, noisy 2-core machine
INTERVAL_S = 0.05  # the longest pause between two tries
FIRST_PAUSE_S = 0.001


class _Deadline:
    def __init__(self, timeout: float, what: str, describe: Callable[[], object] | None) -> None:
        self.timeout = timeout
        self.what = what
        self.describe = describe
        self.at = time.monotonic() + timeout

    def check(self) -> None:
        if time.monotonic() > self.at:
            message = f"timed out after {self.timeout:g} s waiting for {self.what}"
            if self.describe is not None:
                message += f"; state: {self.describe()}"
            raise AssertionError(message)


def wait_until(
    predicate: Callable[[], T],
    timeout: float = TIMEOUT_S,
    interval: float = INTERVAL_S,
    what: str = "a condition",
    describe: Callable[[], object] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that;
    after ``timeout`` s, ``AssertionError`` naming ``what`` (and ``describe()``)."""
    deadline = _Deadline(timeout, what, describe)
    pause = min(FIRST_PAUSE_S, interval)
    while True:
        value = predicate()
        if value:
            return value
        deadline.check()
        time.sleep(pause)
        pause = min(pause * 2, interval)


async def wait_until_async(
    predicate: Callable[[], T],
    pause: Callable[[float], Awaitable[object]],
    timeout: float = TIMEOUT_S,
    interval: float = 0.02,
    what: str = "a condition",
    describe: Callable[[], object] | None = None,
) -> T:
    """``wait_until`` for a test running in an event loop: between tries it
    awaits ``pause(interval)`` (e.g. a Textual pilot's ``pause``)."""
    deadline = _Deadline(timeout, what, describe)
    while True:
        value = predicate()
        if value:
            return value
        deadline.check()
        await pause(interval)
