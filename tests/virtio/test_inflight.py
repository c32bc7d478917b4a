"""In-flight heads: the avail ring's entries from used.idx to avail.idx,
oldest first, across the ring's end and the 16-bit index wrap."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.virtio.inflight import InFlight, in_flight
from svqtui.virtio.split_ring import RingFeatures, read_ring_state
from tests.support.virtio_ring import USER_BASE, RingBuilder

SIZE = 16


@given(st.integers(0, 0xFFFF), st.integers(0, SIZE), st.data())
@settings(deadline=None)
def test_heads_between_used_and_avail_oldest_first(
    used: int, count: int, data: st.DataObject
) -> None:
    """Whatever the indices (wrapping the ring and 2^16), the heads returned
    are those made available at positions used.idx .. avail.idx - 1, in order."""
    heads = data.draw(st.lists(st.integers(0, 0xFFFF), min_size=count, max_size=count))
    ring = RingBuilder(SIZE)
    for position in range(used - SIZE, used):  # older, already used entries
        ring.set_avail_entry(position, 0xDEAD)
    for k, head in enumerate(heads):
        ring.set_avail_entry(used + k, head)
    ring.set_avail(0, (used + count) & 0xFFFF)
    ring.set_used(0, used)
    memory = ring.memory()
    state = read_ring_state(memory, ring.layout, RingFeatures())
    got = in_flight(memory, ring.layout, state)
    assert got == InFlight(tuple(heads), used, False, None)
    assert got.oldest == (heads[0] if heads else None) and got.count == count
    assert memory.reads <= 2 + 2  # the two ring headers, then at most two stretches


def test_out_of_order_completion_is_positional_as_documented() -> None:
    """Heads A, B, C made available, C completed first (used.idx 1): the
    derivation names the positions after used.idx, {B, C}, not the true
    {A, B}; the count is right. ``exact`` only with VIRTIO_F_IN_ORDER."""
    ring = RingBuilder(SIZE)
    for position, head in enumerate((0xA, 0xB, 0xC)):
        ring.set_avail_entry(position, head)
    ring.set_avail(0, 3)
    ring.set_used_entry(0, 0xC, 1)
    ring.set_used(0, 1)
    memory = ring.memory()
    state = read_ring_state(memory, ring.layout, RingFeatures())
    got = in_flight(memory, ring.layout, state)
    assert got.heads == (0xB, 0xC) and not got.exact
    assert in_flight(memory, ring.layout, state, in_order=True).exact


def test_indices_further_apart_than_the_queue_are_an_error() -> None:
    """avail.idx - used.idx > size is reported with the numbers, no entry read."""
    ring = RingBuilder(SIZE)
    ring.set_avail(0, 5)
    ring.set_used(0, 0xFFF0)
    memory = ring.memory()
    state = read_ring_state(memory, ring.layout, RingFeatures())
    reads = memory.reads
    got = in_flight(memory, ring.layout, state)
    assert got.heads == () and memory.reads == reads
    assert got.error == (
        "avail.idx 5 - used.idx 65520 = 21 exceeds the queue size 16: "
        "indices corrupt or ring being reset"
    )


def test_unreadable_rings_report_why() -> None:
    """Unknown indices or an avail ring whose entries run out of guest
    memory give an error, never an exception."""
    ring = RingBuilder(SIZE)
    bad = replace(ring.layout, avail=USER_BASE + len(ring.mem) + 0x1000)
    memory = ring.memory()
    got = in_flight(memory, bad, read_ring_state(memory, bad, RingFeatures()))
    assert got.heads == () and got.error is not None and "avail ring" in got.error
    # header readable (4 bytes), entries past the end of memory
    ring2 = RingBuilder(SIZE)
    tail = replace(ring2.layout, avail=USER_BASE + len(ring2.mem) - 4)
    ring2.write(len(ring2.mem) - 4, bytes([0, 0, 3, 0]))  # flags 0, idx 3
    memory2 = ring2.memory()
    state = read_ring_state(memory2, tail, RingFeatures())
    got = in_flight(memory2, tail, state)
    assert state.avail_idx == 3 and got.heads == ()
    assert got.error is not None and got.error.startswith("avail ring entries: ")
