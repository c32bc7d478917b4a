"""The I/O loop: one asyncio event loop in its own thread, never the UI's.

vhost-user forwarding, QMP clients and the control socket server live here, so
a frozen or slow console cannot delay a VM's device messages. Other threads
hand it coroutines: ``submit`` (fire and get a future) or ``call`` (block until
the result, with a timeout that becomes an operator-readable error).

Errors nobody awaited (a callback that raised, a task's exception never
retrieved) go through the loop's exception handler: one line each in the
event log (``log``, or stderr without one), rate-limited per kind, never a
traceback on the terminal (hundreds of them hit stderr when svqtui ran out of
fds).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from svqtui.errors import IOLoopError, wire_error
from svqtui.log_rate import RateLimiter
from svqtui.text_safety import safe_text

if TYPE_CHECKING:
    from svqtui.eventlog import EventLog

T = TypeVar("T")

THREAD_NAME = "svqtui-io"
DEFAULT_CALL_TIMEOUT_S = 10.0


@wire_error("IOLoopTimeout")
class IOLoopTimeout(IOLoopError):
    """A blocking call onto the I/O loop got no result in time."""


@wire_error("IOLoopReentry")
class IOLoopReentry(IOLoopError):
    """A blocking call was made from the I/O loop's own thread (it would wait
    on itself forever): a bug in the caller, which must await instead."""


@wire_error("IOLoopStopped")
class IOLoopStopped(IOLoopError):
    """A blocking call was made while the I/O loop thread is not running."""


def _describe(coro: Coroutine[Any, Any, Any]) -> str:
    return getattr(coro, "__qualname__", None) or type(coro).__name__


class IOLoop:
    """Runs an asyncio loop in a daemon thread; other threads submit work."""

    def __init__(self, name: str = THREAD_NAME, log: EventLog | None = None) -> None:
        self.log = log
        self._stderr_limiter = RateLimiter()
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._on_exception)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._started = threading.Event()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        self.loop.run_forever()
        # Cancel what is left so nothing runs against closed resources.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.close()

    def _on_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """One line per unhandled error, rate-limited per kind."""
        exc = context.get("exception")
        message = str(context.get("message") or "unhandled error")
        kind = f"I/O loop: {type(exc).__name__ if exc is not None else message}"
        text = f"I/O loop: {message}" + (f": {type(exc).__name__}: {exc}" if exc else "")
        if self.log is not None:
            self.log.error(text, kind=kind)
            return
        if self._stderr_limiter.allow(kind):
            print(safe_text(text), file=sys.stderr)
        for gone in self._stderr_limiter.summaries():
            print(gone.line(), file=sys.stderr)

    def start(self) -> None:
        self._thread.start()
        self._started.wait()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def in_loop_thread(self) -> bool:
        """Whether the calling thread is this loop's own thread."""
        return threading.get_ident() == self._thread.ident

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the loop from any thread."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(
        self,
        coro: Coroutine[Any, Any, T],
        timeout: float = DEFAULT_CALL_TIMEOUT_S,
        *,
        what: str | None = None,
    ) -> T:
        """Run ``coro`` on the loop and wait for its result, from another thread.

        ``what`` names the work for the operator (default: the coroutine's
        name). The coroutine's own exception is raised with its class;
        ``IOLoopTimeout`` if it has no result within ``timeout`` seconds (it
        goes on running on the loop); ``IOLoopReentry`` if called from the
        loop's own thread; ``IOLoopStopped`` if the loop thread is not running.
        """
        label = what or _describe(coro)
        if self.in_loop_thread():
            coro.close()
            raise IOLoopReentry(
                f"{label}: a blocking call was made from the I/O loop thread itself, which"
                " would wait on itself forever (a bug: await the coroutine there instead)"
            )
        if not self._thread.is_alive():
            coro.close()
            raise IOLoopStopped(
                f"{label}: the I/O loop thread is not running (svqtui is starting or"
                " stopping); retry once it is up"
            )
        future = self.submit(coro)
        try:
            return future.result(timeout)
        except TimeoutError:
            if future.done():  # the coroutine itself raised TimeoutError
                raise
            raise IOLoopTimeout(
                f"{label}: no result within {timeout:g}s; it is still running on the"
                " I/O loop, waiting on its peer (a VM's QEMU or vhost-user back-end):"
                " check that the peer is alive and answering, then retry"
            ) from None

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        self.loop.call_soon_threadsafe(fn, *args)

    def stop(self, timeout: float = 5.0) -> None:
        if not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)
