"""Split ring state: flags, indices and event indices read at the right
offsets with and without EVENT_IDX, and rings that are not decoded say so."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.virtio.split_ring import (
    F_ACCESS_PLATFORM,
    F_EVENT_IDX,
    F_INDIRECT_DESC,
    F_RING_PACKED,
    F_VERSION_1,
    IOMMU_NOT_DECODED,
    PACKED_NOT_DECODED,
    RingFeatures,
    RingState,
    need_event,
    read_ring_state,
)
from tests.support.virtio_ring import USER_BASE, RingBuilder

EVENT_IDX = RingFeatures.from_bits(1 << F_EVENT_IDX | 1 << F_VERSION_1)
PLAIN = RingFeatures.from_bits(1 << F_VERSION_1)


def test_features_are_decoded_from_the_negotiated_bits() -> None:
    """Bits 28, 29, 33, 34 map to indirect_desc, event_idx, access_platform, packed."""
    f = RingFeatures.from_bits(1 << F_INDIRECT_DESC | 1 << F_EVENT_IDX)
    assert (f.indirect_desc, f.event_idx, f.packed, f.access_platform) == (True, True, False, False)
    assert RingFeatures.from_bits(1 << F_RING_PACKED).not_decoded == PACKED_NOT_DECODED
    assert RingFeatures.from_bits(1 << F_ACCESS_PLATFORM).not_decoded == IOMMU_NOT_DECODED
    assert f.not_decoded is None


def test_suppression_state_without_event_idx() -> None:
    """avail.flags NO_INTERRUPT and used.flags NO_NOTIFY are read; the event
    indices are None (not applicable) even though memory holds values there."""
    ring = RingBuilder(size=64)
    ring.set_avail(1, 812)
    ring.set_used(1, 805)
    ring.set_used_event(700)
    ring.set_avail_event(701)
    state = read_ring_state(ring.memory(), ring.layout, PLAIN)
    assert state == RingState(
        size=64,
        event_idx=False,
        indirect_desc=False,
        packed=False,
        avail_flags=1,
        avail_idx=812,
        used_flags=1,
        used_idx=805,
    )
    assert state.no_interrupt is True and state.no_notify is True and state.in_flight == 7


def test_event_indices_follow_the_rings_with_event_idx() -> None:
    """With EVENT_IDX used_event is read after avail.ring[size] and
    avail_event after used.ring[size], for several queue sizes."""
    for size in (1, 2, 128, 256, 1024):
        ring = RingBuilder(size=size)
        ring.set_avail(0, 5)
        ring.set_used(0, 3)
        ring.set_used_event(size + 11)
        ring.set_avail_event(size + 22)
        ring.set_avail_entry(size - 1, 0xAAAA)  # neighbours of the event fields
        ring.set_used_entry(size - 1, 0xBBBB, 0xCCCC)
        state = read_ring_state(ring.memory(), ring.layout, EVENT_IDX)
        assert (state.used_event, state.avail_event) == (size + 11, size + 22)
        assert state.event_idx and state.no_interrupt is False and state.error is None


def test_packed_and_iommu_rings_are_not_decoded() -> None:
    """A packed ring is not misread as split: every field None and the error
    says "packed ring: not decoded"; IOVA ring addresses likewise."""
    ring = RingBuilder(size=64)
    ring.set_avail(1, 9)
    memory = ring.memory()
    packed = read_ring_state(memory, ring.layout, RingFeatures.from_bits(1 << F_RING_PACKED))
    assert packed.error == PACKED_NOT_DECODED and packed.packed
    assert packed.avail_idx is None and packed.avail_flags is None and packed.used_idx is None
    iommu = read_ring_state(memory, ring.layout, RingFeatures.from_bits(1 << F_ACCESS_PLATFORM))
    assert iommu.error == IOMMU_NOT_DECODED and iommu.avail_idx is None
    assert memory.reads == 0


def test_unreadable_parts_are_none_with_the_first_reason() -> None:
    """A used ring outside guest memory: the avail fields are read, the used
    fields and avail_event are None, and the error names the used ring."""
    ring = RingBuilder(size=64)
    ring.set_avail(0, 4)
    layout = replace(ring.layout, used=USER_BASE + len(ring.mem) - 2)
    state = read_ring_state(ring.memory(), layout, EVENT_IDX)
    assert state.avail_idx == 4 and state.used_event == 0
    assert state.used_idx is None and state.used_flags is None and state.avail_event is None
    assert state.error is not None and state.error.startswith("used ring: ")
    assert "outside every memory region" in state.error


def test_bad_queue_sizes_are_not_read() -> None:
    """Queue size 0 or above 32768 is an error, without reading memory."""
    ring = RingBuilder(size=64)
    for size in (0, 32769, 1 << 20):
        memory = ring.memory()
        state = read_ring_state(memory, replace(ring.layout, size=size), PLAIN)
        assert state.error is not None and "queue size" in state.error
        assert memory.reads == 0


@given(
    size_log=st.integers(0, 15),
    fields=st.tuples(*[st.integers(0, 0xFFFF)] * 6),
    event_idx=st.booleans(),
)
@settings(deadline=None, max_examples=200)
def test_any_written_state_reads_back(
    size_log: int, fields: tuple[int, int, int, int, int, int], event_idx: bool
) -> None:
    """Whatever the guest and device wrote in the six fields reads back
    exactly, the event fields only with EVENT_IDX."""
    size = 1 << size_log
    ring = RingBuilder(size=size, mem_size=(1 << 20) if size <= 4096 else (3 << 20))
    af, ai, uf, ui, ue, ae = fields
    ring.set_avail(af, ai)
    ring.set_used(uf, ui)
    ring.set_used_event(ue)
    ring.set_avail_event(ae)
    features = EVENT_IDX if event_idx else PLAIN
    state = read_ring_state(ring.memory(), ring.layout, features)
    assert (state.avail_flags, state.avail_idx, state.used_flags, state.used_idx) == (
        af,
        ai,
        uf,
        ui,
    )
    assert (state.used_event, state.avail_event) == ((ue, ae) if event_idx else (None, None))
    assert state.to_json()["used_event"] == state.used_event


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.integers(0, 0xFFFF))
@settings(deadline=None)
def test_need_event_matches_the_definition(event: int, new: int, old: int) -> None:
    """need_event is true exactly when ``event`` is among the indices
    old .. new - 1 passed over (mod 2^16), as vring_need_event defines it."""
    passed = {(old + k) & 0xFFFF for k in range((new - old) & 0xFFFF)}
    assert need_event(event, new, old) == (event in passed)
