"""Operator-armed faults on real eventfds through the real engine: a dropped
notification is counted and never delivered, a delayed one arrives late but
arrives, a duplicated one is written twice; each disarms as documented, and
masking still applies to what a fault delivers."""

from __future__ import annotations

import os
import time

import pytest

from svqtui.engine import Engine, Link
from svqtui.engine.errors import BadFault
from svqtui.engine.faults import Fault, FaultKind, armed
from tests.support.engine import drain, eventfd
from tests.support.wait import wait_until


@pytest.fixture
def engine() -> Engine:
    e = Engine(8)
    e.start()
    yield e  # type: ignore[misc]
    e.close()


def _queue(engine: Engine) -> tuple[int, list[int]]:
    fds = [eventfd() for _ in range(4)]  # kick src, kick dst, call src, call dst
    slot = engine.add_queue(*fds)
    drain(fds[1]), drain(fds[3])  # the add's signal-once
    return slot, fds


def _settled(engine: Engine, slot: int, link: Link, reads: int) -> None:
    wait_until(
        lambda: getattr(engine.queue(slot), link.name.lower()).reads >= reads,
        what=f"{reads} reads on the {link.name.lower()} link",
    )


def test_drop_swallows_the_next_n_counts_them_and_disarms(engine: Engine) -> None:
    """drop-call 2: two calls are counted as dropped and not delivered, the
    fault then disarms and the third call is delivered."""
    slot, fds = _queue(engine)
    fault = Fault.named("drop-call", 2)
    engine.set_fault(slot, fault.link, fault.kind, fault.amount)
    assert armed(engine.queue(slot).call, Link.CALL) == "drop the next 2 calls"
    for n in (1, 2):
        os.eventfd_write(fds[2], 1)
        _settled(engine, slot, Link.CALL, n)
    assert drain(fds[3]) == 0
    call = engine.queue(slot).call
    assert call.dropped == 2 and call.notifications == 2 and call.fault == FaultKind.NONE
    os.eventfd_write(fds[2], 1)
    _settled(engine, slot, Link.CALL, 3)
    assert drain(fds[3]) == 1


def test_drop_kick_leaves_calls_alone(engine: Engine) -> None:
    """A fault is per link: drop-kick swallows a kick, a call still goes through."""
    slot, fds = _queue(engine)
    fault = Fault.named("drop-kick")
    engine.set_fault(slot, fault.link, fault.kind, fault.amount)
    os.eventfd_write(fds[0], 1)
    os.eventfd_write(fds[2], 1)
    _settled(engine, slot, Link.KICK, 1)
    _settled(engine, slot, Link.CALL, 1)
    assert drain(fds[1]) == 0 and drain(fds[3]) == 1
    assert engine.queue(slot).kick.dropped == 1


def test_delay_delivers_late_and_clear_flushes_what_waits(engine: Engine) -> None:
    """delay-call 300: a call arrives at its destination only after the delay;
    clearing the fault while one waits delivers it at once (never lost)."""
    slot, fds = _queue(engine)
    engine.set_fault(slot, Link.CALL, FaultKind.DELAY, 300)
    sent = time.monotonic()
    os.eventfd_write(fds[2], 1)
    _settled(engine, slot, Link.CALL, 1)
    assert drain(fds[3]) == 0  # not yet
    wait_until(lambda: drain(fds[3]) == 1, what="the delayed call")
    assert time.monotonic() - sent >= 0.29
    assert engine.queue(slot).call.delayed == 1
    os.eventfd_write(fds[2], 1)
    _settled(engine, slot, Link.CALL, 2)
    engine.set_fault(slot, Link.CALL, FaultKind.NONE, 0)
    assert drain(fds[3]) == 1  # flushed by the clear, before the 300 ms
    assert engine.queue(slot).call.fault == FaultKind.NONE


def test_dup_writes_twice_and_masking_still_holds(engine: Engine) -> None:
    """dup-call 1: the destination's counter gets 2 for one call; while
    masked, a duplicated call is held like any other (one pending call)."""
    slot, fds = _queue(engine)
    engine.set_fault(slot, Link.CALL, FaultKind.DUP, 1)
    os.eventfd_write(fds[2], 1)
    _settled(engine, slot, Link.CALL, 1)
    assert drain(fds[3]) == 2 and engine.queue(slot).call.duplicated == 1
    engine.set_masked(slot, True)
    engine.set_fault(slot, Link.CALL, FaultKind.DUP, 1)
    os.eventfd_write(fds[2], 1)
    _settled(engine, slot, Link.CALL, 2)
    assert drain(fds[3]) == 0 and engine.queue(slot).call.pending
    engine.set_masked(slot, False)
    assert drain(fds[3]) == 1


def test_removing_the_queue_flushes_a_delayed_call(engine: Engine) -> None:
    """Shadow off removes the queue: a call a delay holds is delivered then."""
    slot, fds = _queue(engine)
    engine.set_fault(slot, Link.CALL, FaultKind.DELAY, 60_000)
    os.eventfd_write(fds[2], 1)
    _settled(engine, slot, Link.CALL, 1)
    engine.remove_queue(slot, handback=False)
    assert drain(fds[3]) >= 1


@pytest.mark.parametrize(
    ("name", "amount"), [("drop-calls", 1), ("drop-call", 0), ("delay-call", 60_001)]
)
def test_bad_faults_are_one_precise_error(name: str, amount: int) -> None:
    """An unknown fault or an amount out of range is a BadFault naming it."""
    with pytest.raises(BadFault, match=name.split("s")[0] if name.endswith("s") else name):
        Fault.named(name, amount)
