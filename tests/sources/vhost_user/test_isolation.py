"""Forwarding never waits on the caller: a frozen UI thread does not delay
vhost-user round trips or the relay (docs/design.md#relay-rules, rule 5)."""

from __future__ import annotations

import asyncio
import struct
import threading
import time

from svqtui.sources.vhost_user.codec import FrontendRequest
from tests.support.vhost_user_frontend import pattern
from tests.support.vhost_user_rig import InterposerRig
from tests.support.wait import wait_until

R = FrontendRequest
FREEZE_S = 2.0
ROUND_TRIP_LIMIT_S = 0.050


def test_frozen_caller_loop_does_not_delay_round_trips_or_relaying(rig: InterposerRig) -> None:
    """While the thread that drives the source (a UI with its own asyncio
    loop) is frozen for 2 s, every round trip of the test front-end through
    the interposer (GET_FEATURES, GET_CONFIG, then GET_VRING_BASE) is answered
    within 50 ms, and shadowed I/O keeps completing through the engine."""
    fe = rig.ready_frontend().start()
    rig.source.set_shadow(rig.key(), True)
    frozen = threading.Event()
    thawed = threading.Event()
    round_trips: list[float] = []
    ios = [0]
    errors: list[BaseException] = []

    def timed(request: int, payload: bytes = b"") -> bytes:
        start = time.perf_counter()
        reply = fe.request(request, payload)
        round_trips.append(time.perf_counter() - start)
        assert reply is not None
        return reply.payload

    def guest() -> None:
        try:
            frozen.wait(10)
            while not thawed.is_set():
                timed(R.GET_FEATURES)
                config = timed(R.GET_CONFIG, struct.pack("=III", 0, 8, 0) + bytes(8))
                assert struct.unpack_from("=Q", config, 12)[0] == (16 << 20) // 512
                block = ios[0] % 32
                fe.write_block(0, block, pattern(block, ios[0]))
                assert fe.read_block(0, block) == pattern(block, ios[0])
                ios[0] += 1
            for qi in range(len(fe.queues)):  # GET_VRING_BASE round trips
                timed(R.GET_VRING_BASE, struct.pack("=II", qi, 0))
        except BaseException as err:
            errors.append(err)

    kicks_before = rig.queue(0).kicks or 0
    worker = threading.Thread(target=guest)
    worker.start()

    async def frozen_ui() -> None:
        frozen.set()
        time.sleep(FREEZE_S)  # the UI's loop is blocked: no callback of it runs
        thawed.set()

    ui_loop = asyncio.new_event_loop()
    try:
        ui_loop.run_until_complete(frozen_ui())
    finally:
        ui_loop.close()
    worker.join(30)
    assert not errors, errors
    assert ios[0] >= 20, f"only {ios[0]} I/O rounds during the freeze"
    worst = max(round_trips)
    assert worst < ROUND_TRIP_LIMIT_S, f"slowest round trip {worst * 1000:.1f} ms"
    wait_until(
        lambda: (rig.queue(0).kicks or 0) - kicks_before == 2 * ios[0],
        what="the engine to have relayed every kick of the freeze",
    )
