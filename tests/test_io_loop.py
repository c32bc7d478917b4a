"""The I/O loop's blocking call: results, exceptions, timeouts and the refusal
to block its own thread, on a real loop thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest

from svqtui.errors import IOLoopError
from svqtui.io_loop import THREAD_NAME, IOLoop, IOLoopReentry, IOLoopStopped, IOLoopTimeout
from svqtui.sources.errors import UnknownDevice


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    loop = IOLoop()
    loop.start()
    yield loop
    loop.stop()


def test_call_returns_the_coroutines_result_from_the_loop_thread(io_loop: IOLoop) -> None:
    """The coroutine runs on the loop's own thread and its result comes back."""

    async def where() -> tuple[str, int]:
        await asyncio.sleep(0)
        return threading.current_thread().name, 42

    assert io_loop.call(where()) == (THREAD_NAME, 42)


def test_call_raises_the_coroutines_exception_with_its_class(io_loop: IOLoop) -> None:
    """An exception raised by the coroutine reaches the caller unchanged,
    including a TimeoutError of its own (not mistaken for the call's timeout)."""

    async def fails() -> None:
        raise UnknownDevice("no device 'x'")

    async def times_out() -> None:
        await asyncio.wait_for(asyncio.sleep(10), 0.01)

    with pytest.raises(UnknownDevice, match="no device 'x'"):
        io_loop.call(fails())
    with pytest.raises(TimeoutError) as raised:
        io_loop.call(times_out(), timeout=5)
    assert not isinstance(raised.value, IOLoopError)


def test_a_call_without_result_in_time_is_an_io_loop_timeout(io_loop: IOLoop) -> None:
    """No result within the timeout raises IOLoopTimeout naming what did not
    answer, within how long, and what to do; the loop keeps serving."""
    release = asyncio.Event()

    async def hangs() -> None:
        await release.wait()

    with pytest.raises(IOLoopTimeout) as raised:
        io_loop.call(hangs(), timeout=0.2, what="vhost-user: shadow on for vu:blk0")
    text = str(raised.value)
    assert text.startswith("vhost-user: shadow on for vu:blk0: no result within 0.2s")
    assert "check that the peer is alive" in text
    io_loop.call_soon(release.set)
    assert io_loop.call(asyncio.sleep(0, result="alive")) == "alive"


def test_a_call_from_the_loop_thread_is_refused(io_loop: IOLoop) -> None:
    """Blocking on the loop from its own thread (a deadlock) is refused with
    IOLoopReentry, and the coroutine is closed, never run."""
    ran: list[bool] = []

    async def inner() -> None:
        ran.append(True)

    async def outer() -> str:
        try:
            io_loop.call(inner(), what="inner step")
        except IOLoopReentry as err:
            return str(err)
        return "not refused"

    text = io_loop.call(outer())
    assert text.startswith("inner step: a blocking call was made from the I/O loop thread")
    assert ran == []


def test_a_call_to_a_stopped_loop_is_refused_at_once() -> None:
    """Calling onto a loop whose thread is not running fails at once (not
    after the timeout) with IOLoopStopped."""
    loop = IOLoop()

    async def nothing() -> None:
        pass

    with pytest.raises(IOLoopStopped, match="the I/O loop thread is not running"):
        loop.call(nothing(), timeout=60)


def test_unhandled_errors_are_one_rate_limited_line_each(capfd: pytest.CaptureFixture[str]) -> None:
    """300 callbacks that raise on the loop: the event log gets at most 5
    lines of that kind (then one "... and N more" summary), never a traceback
    on stderr (before: one traceback each, 297 of them out of fds)."""
    from svqtui.eventlog import EventLog

    log = EventLog()
    loop = IOLoop("test-io", log=log)
    loop.start()
    try:

        def boom() -> None:
            raise OSError(24, "Too many open files")

        for _ in range(300):
            loop.call_soon(boom)
        loop.call(asyncio.sleep(0.1))
    finally:
        loop.stop()
    lines = [e.text for e in log.since(0)[1]]
    assert 1 <= len(lines) <= 5, lines
    assert "I/O loop: Exception in callback" in lines[0] and "Too many open files" in lines[0]
    assert "Traceback" not in capfd.readouterr().err
