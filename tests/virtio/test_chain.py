"""The descriptor chain walker against well-formed and hostile rings: it
always ends within size + 1 descriptor reads, and reports the right outcome."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svqtui.virtio.chain import (
    VIRTQ_DESC_F_INDIRECT,
    VIRTQ_DESC_F_NEXT,
    VIRTQ_DESC_F_WRITE,
    Chain,
    ChainError,
    walk_chain,
)
from tests.support.virtio_ring import USER_BASE, Buffer, RingBuilder

SIZE = 64
HOSTILE_SIZE = 16


def buffers_of(chain: Chain) -> list[Buffer]:
    return [Buffer(d.addr, d.len, d.write) for d in chain.buffers]


@st.composite
def chains(draw: st.DrawFn, max_len: int = SIZE) -> tuple[list[Buffer], list[int]]:
    """1..max_len buffers (readable first, then writable) at distinct ring indices."""
    n = draw(st.integers(1, max_len))
    writable_from = draw(st.integers(0, n))
    buffers = [
        Buffer(draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**20)), i >= writable_from)
        for i in range(n)
    ]
    indices = draw(st.permutations(range(SIZE)))[:n]
    return buffers, list(indices)


@given(chains())
@settings(deadline=None, max_examples=100)
def test_direct_chains_round_trip(chain: tuple[list[Buffer], list[int]]) -> None:
    """A chain written at any distinct indices walks back to the same buffers, in order."""
    buffers, indices = chain
    ring = RingBuilder(SIZE)
    head = ring.chain(buffers, indices)
    memory = ring.memory()
    walked = walk_chain(memory, ring.layout, head)
    assert walked.ok and walked.error is None and walked.detail is None
    assert buffers_of(walked) == buffers and walked.indirect == ()
    assert [d.index for d in walked.buffers] == indices
    assert memory.reads == len(buffers)
    assert walked.total_bytes == sum(b.len for b in buffers)
    assert walked.writable_bytes == sum(b.len for b in buffers if b.write)


@given(chains(), st.integers(0, SIZE - 1), st.data())
@settings(deadline=None, max_examples=100)
def test_indirect_chains_round_trip(
    chain: tuple[list[Buffer], list[int]], head: int, data: st.DataObject
) -> None:
    """A chain in an indirect table (its entries in any order after entry 0)
    walks back to the same buffers; the indirect descriptor is reported apart."""
    buffers, _ = chain
    rest = data.draw(st.permutations(range(1, len(buffers))))
    ring = RingBuilder(SIZE)
    ring.indirect_chain(buffers, head, [0, *rest])
    walked = walk_chain(ring.memory(), ring.layout, head)
    assert walked.ok, walked.detail
    assert buffers_of(walked) == buffers
    assert len(walked.indirect) == 1 and walked.indirect[0].len == 16 * len(buffers)
    assert all(d.table == walked.indirect[0].addr for d in walked.buffers)


@given(st.binary(min_size=16 * SIZE, max_size=16 * SIZE), st.integers(0, 2 * SIZE), st.booleans())
@settings(deadline=None, max_examples=500)
def test_garbage_tables_always_terminate_within_bounds(
    table: bytes, head: int, indirect_ok: bool
) -> None:
    """Random bytes as the descriptor table (indirect pointers land anywhere
    in or out of guest memory): the walk never raises, reads at most
    size + 1 descriptors, returns at most size buffers, and a walk reported
    well-formed really ends on a descriptor without NEXT."""
    ring = RingBuilder(SIZE)
    ring.write(ring.desc, table)
    memory = ring.memory()
    walked = walk_chain(memory, ring.layout, head, indirect_ok=indirect_ok, max_bytes=1 << 40)
    assert memory.reads <= SIZE + 1
    assert len(walked.buffers) <= SIZE
    if head >= SIZE:
        assert walked.error is ChainError.HEAD_OUT_OF_RANGE and memory.reads == 0
    if walked.ok:
        assert walked.buffers and not walked.buffers[-1].has_next
        assert not any(d.indirect for d in walked.buffers)
    else:
        assert walked.detail


descriptors = st.tuples(
    st.one_of(st.integers(0, 2**64 - 1), st.integers(0x8_0000, 0x8_0400 + 64)),  # addr
    st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 16, 32, 48, 1024, 17])),  # len
    st.integers(0, 7),  # flags: NEXT, WRITE, INDIRECT in any mix
    st.integers(0, HOSTILE_SIZE + 2),  # next: mostly in range
)


@given(
    st.lists(descriptors, min_size=HOSTILE_SIZE, max_size=HOSTILE_SIZE),
    st.binary(min_size=0x400, max_size=0x400),
    st.integers(0, HOSTILE_SIZE - 1),
)
@settings(deadline=None, max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_hostile_tables_and_indirect_tables_terminate_within_bounds(
    table: list[tuple[int, int, int, int]], indirect_area: bytes, head: int
) -> None:
    """Descriptors with random flags, in-range nexts, lengths and addresses
    pointing into a random indirect area (garbage indirect tables): the
    walk reads at most size + 1 descriptors and its buffers form the chain
    it claims: each but the last has NEXT and names the next buffer (or the
    indirect descriptor whose table's entry 0 comes next)."""
    ring = RingBuilder(HOSTILE_SIZE)
    for i, (addr, length, flags, nxt) in enumerate(table):
        ring.put_desc(ring.desc, i, addr, length, flags, nxt)
    ring.write(0x8_0000, indirect_area)
    memory = ring.memory()
    walked = walk_chain(memory, ring.layout, head, max_bytes=1 << 40)
    assert memory.reads <= HOSTILE_SIZE + 1
    for a, b in zip(walked.buffers, walked.buffers[1:], strict=False):
        assert a.has_next
        if a.table == b.table:
            assert a.next == b.index
        else:  # from the ring's table into the indirect table, at its entry 0
            assert a.table is None and a.next == walked.indirect[0].index and b.index == 0
    if walked.ok:
        assert not walked.buffers[-1].has_next


@given(st.integers(1, SIZE), st.integers(0, SIZE - 1), st.data())
@settings(deadline=None)
def test_a_loop_is_reported_with_each_descriptor_once(
    length: int, back_to: int, data: st.DataObject
) -> None:
    """A chain whose last ``next`` points back into itself is a LOOP after
    reading each of its descriptors exactly once."""
    indices = list(data.draw(st.permutations(range(SIZE))))[:length]
    ring = RingBuilder(SIZE)
    head = ring.chain([Buffer(0x1000 * i, 512) for i in range(length)], indices)
    target = indices[back_to % length]
    last = indices[-1]
    ring.put_desc(ring.desc, last, 0x1000 * (length - 1), 512, VIRTQ_DESC_F_NEXT, target)
    memory = ring.memory()
    walked = walk_chain(memory, ring.layout, head)
    assert walked.error is ChainError.LOOP
    assert f"descriptor {target} of the descriptor table visited twice" == walked.detail
    assert [d.index for d in walked.buffers] == indices
    assert memory.reads == length


@given(st.integers(SIZE, 0xFFFF))
@settings(deadline=None)
def test_next_out_of_range(nxt: int) -> None:
    """A next index >= the queue size ends the walk without reading it."""
    ring = RingBuilder(SIZE)
    ring.put_desc(ring.desc, 3, 0x9000, 100, VIRTQ_DESC_F_NEXT, nxt)
    walked = walk_chain(ring.memory(), ring.layout, 3)
    assert walked.error is ChainError.NEXT_OUT_OF_RANGE
    assert walked.detail == f"next {nxt} >= {SIZE} entries of the descriptor table"
    assert len(walked.buffers) == 1


def test_head_out_of_range_reads_nothing() -> None:
    """A head >= the queue size is reported without a read."""
    ring = RingBuilder(SIZE)
    memory = ring.memory()
    walked = walk_chain(memory, ring.layout, SIZE)
    assert walked.error is ChainError.HEAD_OUT_OF_RANGE and memory.reads == 0


@given(st.integers(1, 2**32 - 1).filter(lambda n: n % 16 != 0))
@settings(deadline=None)
def test_indirect_table_size_not_a_multiple_of_16(length: int) -> None:
    """An indirect table whose length is not a multiple of 16 is not followed."""
    ring = RingBuilder(SIZE)
    ring.put_desc(ring.desc, 0, 0x9000, length, VIRTQ_DESC_F_INDIRECT, 0)
    memory = ring.memory()
    walked = walk_chain(memory, ring.layout, 0)
    assert walked.error is ChainError.INDIRECT_BAD_SIZE and memory.reads == 1
    assert walked.buffers == ()


def test_zero_length_indirect_table() -> None:
    """An indirect table of 0 bytes is INDIRECT_BAD_SIZE."""
    ring = RingBuilder(SIZE)
    ring.put_desc(ring.desc, 0, 0x9000, 0, VIRTQ_DESC_F_INDIRECT, 0)
    assert walk_chain(ring.memory(), ring.layout, 0).error is ChainError.INDIRECT_BAD_SIZE


@given(st.integers(1 << 20, 2**64 - 1), st.integers(1, SIZE))
@settings(deadline=None)
def test_indirect_table_outside_guest_memory(addr: int, entries: int) -> None:
    """An indirect table beyond guest memory is INDIRECT_UNREADABLE, naming the address."""
    ring = RingBuilder(SIZE)
    ring.put_desc(ring.desc, 5, addr, 16 * entries, VIRTQ_DESC_F_INDIRECT, 0)
    walked = walk_chain(ring.memory(), ring.layout, 5)
    assert walked.error is ChainError.INDIRECT_UNREADABLE
    assert walked.detail is not None and f"indirect table at {addr:#x}" in walked.detail


def test_an_indirect_table_running_off_guest_memory() -> None:
    """An indirect table starting inside memory but whose later entries run
    past its end: the entries inside are walked, then INDIRECT_UNREADABLE."""
    ring = RingBuilder(SIZE)
    table = len(ring.mem) - 32
    ring.put_desc(table, 0, 0xA000, 8, VIRTQ_DESC_F_NEXT, 1)
    ring.put_desc(table, 1, 0xB000, 8, VIRTQ_DESC_F_NEXT, 2)
    ring.put_desc(ring.desc, 0, table, 16 * 4, VIRTQ_DESC_F_INDIRECT, 0)
    walked = walk_chain(ring.memory(), ring.layout, 0)
    assert walked.error is ChainError.INDIRECT_UNREADABLE
    assert [d.addr for d in walked.buffers] == [0xA000, 0xB000]


def test_nested_indirect() -> None:
    """An indirect descriptor inside an indirect table is NESTED_INDIRECT."""
    ring = RingBuilder(SIZE)
    inner = ring.alloc(32)
    outer = ring.alloc(32)
    ring.put_desc(outer, 0, 0xA000, 8, VIRTQ_DESC_F_NEXT, 1)
    ring.put_desc(outer, 1, inner, 32, VIRTQ_DESC_F_INDIRECT, 0)
    ring.put_desc(ring.desc, 0, outer, 32, VIRTQ_DESC_F_INDIRECT, 0)
    walked = walk_chain(ring.memory(), ring.layout, 0)
    assert walked.error is ChainError.NESTED_INDIRECT
    assert len(walked.buffers) == 1


def test_indirect_without_the_feature_and_with_next() -> None:
    """INDIRECT without VIRTIO_F_INDIRECT_DESC is not followed; INDIRECT with
    NEXT is followed (the table is decoded) and reported as such."""
    ring = RingBuilder(SIZE)
    ring.indirect_chain([Buffer(0xA000, 8), Buffer(0xB000, 1, True)], 0, [0, 1])
    walked = walk_chain(ring.memory(), ring.layout, 0, indirect_ok=False)
    assert walked.error is ChainError.INDIRECT_NOT_NEGOTIATED and walked.buffers == ()
    table = walk_chain(ring.memory(), ring.layout, 0).indirect[0].addr
    ring.put_desc(ring.desc, 0, table, 32, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1)
    walked = walk_chain(ring.memory(), ring.layout, 0)
    assert walked.error is ChainError.INDIRECT_WITH_NEXT and len(walked.buffers) == 2


def test_an_indirect_table_longer_than_the_queue() -> None:
    """size + 1 well-chained entries in an indirect table: TOO_LONG after
    exactly size buffers (and size + 1 reads with the indirect descriptor)."""
    ring = RingBuilder(SIZE)
    buffers = [Buffer(0x100 * i, 1) for i in range(SIZE + 1)]
    ring.indirect_chain(buffers, 7, list(range(SIZE + 1)))
    memory = ring.memory()
    walked = walk_chain(memory, ring.layout, 7)
    assert walked.error is ChainError.TOO_LONG
    assert len(walked.buffers) == SIZE and memory.reads == SIZE + 1
    ok = RingBuilder(SIZE)
    ok.indirect_chain(buffers[:SIZE], 7, list(range(SIZE)))
    assert walk_chain(ok.memory(), ok.layout, 7).ok


@pytest.mark.parametrize("cap", [0, 4095, 4096 * 3 - 1])
def test_huge_lengths_stop_at_the_cap(cap: int) -> None:
    """Buffers adding up past max_bytes end the walk with TOO_MANY_BYTES at
    the buffer that crossed it; exactly at the cap is fine."""
    ring = RingBuilder(SIZE)
    head = ring.chain([Buffer(0, 4096), Buffer(0, 4096), Buffer(0, 4096)], [0, 1, 2])
    walked = walk_chain(ring.memory(), ring.layout, head, max_bytes=cap)
    assert walked.error is ChainError.TOO_MANY_BYTES
    assert len(walked.buffers) == cap // 4096 + 1
    assert walk_chain(ring.memory(), ring.layout, head, max_bytes=3 * 4096).ok
    huge = RingBuilder(SIZE)
    huge.chain([Buffer(0, 2**32 - 1)] * 3, [0, 1, 2])
    assert walk_chain(huge.memory(), huge.layout, 0).error is ChainError.TOO_MANY_BYTES


def test_descriptor_table_outside_memory_and_bad_sizes() -> None:
    """A descriptor table past guest memory is DESC_UNREADABLE; a queue size
    of 0 is NOT_DECODED without a read."""
    ring = RingBuilder(SIZE)
    layout = replace(ring.layout, desc=USER_BASE + len(ring.mem) - 8)
    walked = walk_chain(ring.memory(), layout, 0)
    assert walked.error is ChainError.DESC_UNREADABLE
    assert walked.detail is not None and walked.detail.startswith(
        "descriptor 0 of the descriptor table: "
    )
    memory = ring.memory()
    assert walk_chain(memory, replace(ring.layout, size=0), 0).error is ChainError.NOT_DECODED
    assert memory.reads == 0


def test_to_json_names_flags_and_the_outcome() -> None:
    """A chain's JSON lists each descriptor's flags by name and the error kind."""
    ring = RingBuilder(SIZE)
    ring.chain([Buffer(0x10, 16), Buffer(0x20, 1, True)], [4, 9])
    ring.put_desc(ring.desc, 9, 0x20, 1, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT | 0x40, 4)
    doc = walk_chain(ring.memory(), ring.layout, 4).to_json()
    assert [d["flags"] for d in doc["descriptors"]] == ["NEXT", "NEXT|WRITE|0x40"]
    assert doc["error"] == "loop" and doc["head"] == 4
