"""Operator-armed faults on an interposed device with a real
qemu-storage-daemon: a dropped call stalls the front-end's request exactly
as a lost interrupt would, is counted, and an injected call recovers it."""

from __future__ import annotations

import pytest

from svqtui.engine import Link
from svqtui.engine.faults import Fault
from svqtui.sources.errors import ActionUnsupported
from tests.support.vhost_user_frontend import VIRTIO_BLK_T_OUT, IOTimeout, pattern
from tests.support.vhost_user_rig import InterposerRig
from tests.support.wait import wait_until


def test_a_dropped_call_stalls_the_request_and_an_injected_call_recovers_it(
    shadow_rig: InterposerRig,
) -> None:
    """drop-call 1: the back-end completes the write (used index moves) but
    the front-end hears nothing; the view counts one dropped call and says
    the fault disarmed; `c` (inject a call) wakes the front-end, which reaps
    the completion and reads the block back intact."""
    fe = shadow_rig.frontend().init().start()
    fe.write_block(0, 1, pattern(1, 1))  # healthy first
    key = shadow_rig.key()
    shadow_rig.source.set_fault(key, 0, Fault.named("drop-call"))
    wait_until(lambda: shadow_rig.queue(0).fault == "drop the next call", what="armed")
    fe.submit(0, VIRTIO_BLK_T_OUT, 16, pattern(2, 1))
    fe.kick(0)
    assert fe.arm_call(0)
    with pytest.raises(IOTimeout):
        fe.wait_call(0, timeout=1.0)
    wait_until(lambda: shadow_rig.queue(0).dropped == 1, what="one dropped call")
    q = shadow_rig.queue(0)
    assert q.fault is None and q.used_idx == q.avail_idx  # completed, unheard
    shadow_rig.source.inject(key, 0, Link.CALL)
    fe.wait_call(0, timeout=5.0)
    assert len(fe.reap(0)) == 1
    assert fe.read_block(0, 2) == pattern(2, 1)


def test_faults_need_shadow_mode(rig: InterposerRig) -> None:
    """Faults live in the engine: with shadow off they are refused in one line."""
    fe = rig.frontend().init().start()
    fe.write_block(0, 1, pattern(1, 1))
    with pytest.raises(ActionUnsupported, match="shadow"):
        rig.source.set_fault(rig.key(), 0, Fault.named("delay-call", 100))
