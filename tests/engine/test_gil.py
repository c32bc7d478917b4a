"""Rule 5 for the UI: the relay needs no GIL, so a busy Python thread cannot delay it.

How the tests hold the GIL: the main thread runs a pure-Python loop and makes
no call that releases the GIL. os.read/os.write and select would release it,
so the loop reaches the eventfds through libc loaded with ctypes.PyDLL, whose
calls keep the GIL held; and the interpreter's switch interval is raised to
100 s, so no waiting thread is handed the GIL by a forced switch either. Any
relay that needs the GIL (a Python thread, a callback into Python) is frozen
for the whole loop; the control test shows exactly that with a Python relay.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from tests.support.engine import Rig, drain, eventfd
from tests.support.wait import wait_until

if hasattr(sys, "_is_gil_enabled") and not sys._is_gil_enabled():
    pytest.skip("free-threaded interpreter: there is no GIL to hold", allow_module_level=True)

_libc = ctypes.PyDLL(None, use_errno=True)  # PyDLL: calls keep the GIL held
for _name in ("read", "write"):
    _fn = getattr(_libc, _name)
    _fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t]
    _fn.restype = ctypes.c_ssize_t


@contextmanager
def gil_held() -> Iterator[None]:
    """Stop the interpreter from handing the GIL to another thread."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(100.0)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def relay_round_trips(src: int, dst: int, rounds: int, budget_s: float) -> int:
    """With the GIL held throughout, kick `src` and spin until `dst` is
    signalled, `rounds` times; give up after `budget_s`. Returns the number
    of rounds whose notification came through."""
    one, buf = ctypes.c_uint64(1), ctypes.c_uint64(0)
    done = 0
    deadline = time.monotonic() + budget_s  # time.monotonic keeps the GIL
    with gil_held():
        while done < rounds and time.monotonic() < deadline:
            assert _libc.write(src, ctypes.byref(one), 8) == 8
            while _libc.read(dst, ctypes.byref(buf), 8) != 8:
                if time.monotonic() > deadline:
                    return done
            done += 1
    return done


def test_relay_runs_while_the_main_thread_holds_the_gil(rig: Rig) -> None:
    """The engine relays while a Python thread hogs the interpreter: 200
    kicks made and received from inside one GIL-holding busy loop all come
    through, so the C loop relays without ever taking the GIL (see the
    module docstring for why the loop never lets go of it)."""
    slot, fds = rig.add()
    assert relay_round_trips(fds.kick_src, fds.kick_dst, 200, budget_s=10.0) == 200
    assert rig.engine.queue(slot).kick.reads == 200
    assert rig.engine.health().alive


def test_busy_main_thread_does_not_stall_heartbeat(rig: Rig) -> None:
    """While the main thread spins in pure Python for about a second with the
    GIL held, the engine loop keeps turning (its loop counter moves on) and
    keeps relaying."""
    slot, fds = rig.add()
    loops_before = rig.engine.health().loops
    assert relay_round_trips(fds.call_src, fds.call_dst, 10**9, budget_s=1.0) > 0
    assert rig.engine.health().loops > loops_before
    assert rig.engine.queue(slot).call.healthy


def test_control_a_python_relay_is_frozen_by_the_held_gil() -> None:
    """Control for the two tests above: the same check against a relay that
    is a Python thread sees nothing while the GIL is held, then the relay
    catches up once it is released. This proves the method can fail, i.e.
    that the loop really never lets another Python thread run."""
    src = os.eventfd(0)  # blocking: the Python relay waits in os.read
    dst = eventfd()
    stop = threading.Event()

    def python_relay() -> None:
        while True:
            value = os.read(src, 8)
            if stop.is_set():
                return
            os.write(dst, value)

    thread = threading.Thread(target=python_relay, daemon=True)
    thread.start()
    try:
        os.write(src, (1).to_bytes(8, "little"))  # warm up: the relay works at all
        wait_until(lambda: drain(dst) == 1, what="the Python relay")
        assert relay_round_trips(src, dst, 1, budget_s=0.5) == 0
        wait_until(lambda: drain(dst) == 1, what="the Python relay to catch up")
    finally:
        stop.set()
        os.write(src, (1).to_bytes(8, "little"))
        thread.join()
        os.close(src)
        os.close(dst)
