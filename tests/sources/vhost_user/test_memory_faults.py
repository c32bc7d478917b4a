"""A hostile front-end's guest memory cannot crash svqtui or leak its fds:
ring reads are preads on kept fds (svqtui.virtio.guest_memory), so a memory
file truncated under the ring view costs only that ring's view, with the
reason, and every kept fd is released with its table or connection."""

from __future__ import annotations

import os

from svqtui.sources.vhost_user.codec import FrontendRequest, MemoryRegion, pack_memory_table
from tests.support.vhost_user_frontend import pattern
from tests.support.vhost_user_rig import InterposerRig, open_fds
from tests.support.wait import wait_until

R = FrontendRequest


def test_truncated_guest_memory_costs_only_that_rings_view(shadow_rig: InterposerRig) -> None:
    """A front-end ftruncates its memory file to 0 after SET_MEM_TABLE and
    SET_VRING_ADDR (with loads from a mapping, the next ring read killed
    svqtui with SIGBUS). Reading the view many times: svqtui keeps running,
    each of that device's queues says in one line that its ring is
    unreadable because the file is 0 bytes long, and the other shadowed
    device's guest keeps doing verified I/O with its ring view intact."""
    rig = shadow_rig
    healthy = rig.ready_frontend(1).start()
    hostile = rig.ready_frontend(0).start()
    for qi in (0, 1):  # both rings in use before the attack
        healthy.write_block(qi, 1, pattern(1, 1))
        hostile.write_block(qi, 1, pattern(1, 1))
    assert rig.queue(0, 0).avail_idx == 1 and rig.queue(0, 0).error is None
    os.ftruncate(hostile.mem_fd, 0)  # the test must not touch hostile.mem from here on
    for _ in range(50):
        for qi in (0, 1):
            view = rig.queue(qi, 0)
            assert view.avail_idx is None and view.used_idx is None
            assert view.error is not None and "\n" not in view.error
            assert view.error.startswith("ring unreadable: avail ring: ")
            assert "the memory file is 0 bytes long" in view.error
    for generation in range(2, 6):
        for qi in (0, 1):
            healthy.write_block(qi, generation, pattern(generation, generation))
            assert healthy.read_block(qi, generation) == pattern(generation, generation)
    for qi in (0, 1):
        view = rig.queue(qi, 1)
        assert view.error is None
        assert view.avail_idx == view.used_idx == 1 + 2 * 4
        assert view.kicks == 1 + 2 * 4
    assert rig.device(0).connected and rig.device(1).connected
    assert not rig.context.events(level="error")


def guest_memory_fds() -> int:
    """How many fds of this process (front-end's own and svqtui's kept dups)
    name the test front-end's guest memory memfd."""
    return sum("svqtui-test-guest" in target for target in open_fds().values())


def test_replaced_tables_and_disconnects_release_every_kept_fd(rig: InterposerRig) -> None:
    """Each SET_MEM_TABLE keeps one dup per region and releases the previous
    table's: after 100 replacements svqtui still holds exactly one fd of the
    guest memory; the disconnect releases it, and every fd the connection
    opened is closed (fds other tests left closing are not counted)."""
    before_connect = open_fds()
    fe = rig.ready_frontend().start()
    fe.write_block(0, 0, pattern(0, 0))
    # the front-end's memfd, its mmap's own dup (CPython keeps one), svqtui's kept dup
    assert guest_memory_fds() == 3
    region = MemoryRegion(0, fe.mem_size, 0x7F00_0000_0000, 0)
    for _ in range(100):
        fe.request(R.SET_MEM_TABLE, pack_memory_table([region]), [fe.mem_fd])
    fe.sync()
    assert guest_memory_fds() == 3
    fe.write_block(0, 0, pattern(0, 1))
    assert fe.read_block(0, 0) == pattern(0, 1)
    assert rig.queue(0).avail_idx == 3
    fe.close()
    rig.wait_connected(connected=False)
    wait_until(
        lambda: not open_fds().items() - before_connect.items(),
        what="every fd the connection opened (kept region fds included) to be closed",
    )
    assert guest_memory_fds() == 0
