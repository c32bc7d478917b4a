"""Property tests for the vhost-user codec (framing, payload layouts, bounds)."""

from __future__ import annotations

import itertools
import os
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.errors import ProtocolError
from svqtui.sources.vhost_user import codec
from svqtui.sources.vhost_user.codec import (
    MAX_FDS,
    MAX_PAYLOAD,
    NEED_REPLY,
    REPLY,
    VERSION,
    Decoder,
    FrontendRequest,
    MemoryRegion,
    Message,
    VringAddr,
    VringState,
)
from svqtui.sources.vhost_user.errors import (
    BadHeader,
    BadPayload,
    MessageTooLarge,
    TooManyFds,
    TruncatedMessage,
)

u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
requests = st.integers(1, 2**32 - 1)
flags = st.sampled_from(
    [VERSION, VERSION | REPLY, VERSION | NEED_REPLY, VERSION | REPLY | NEED_REPLY]
)
payloads = st.binary(max_size=MAX_PAYLOAD)
regions = st.builds(MemoryRegion, u64, u64, u64, u64)


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(st.lists(st.tuples(requests, flags, payloads), max_size=5), st.lists(st.integers(0, 10**6)))
@settings(max_examples=150, deadline=None)
def test_messages_round_trip_through_any_chunking(
    messages: list[tuple[int, int, bytes]], cuts: list[int]
) -> None:
    """Encoding messages and decoding the byte stream, cut anywhere, gives
    back the same requests, flags and payloads in order."""
    stream = b"".join(Message(r, f, p).encode() for r, f, p in messages)
    decoder = Decoder()
    out: list[Message] = []
    for chunk in chunked(stream, cuts):
        out.extend(decoder.feed(chunk))
    assert [(m.request, m.flags, m.payload) for m in out] == messages
    assert not decoder.partial


def test_fds_belong_to_the_message_being_assembled() -> None:
    """Fds fed with a message's bytes come out with that message, and the
    next message starts without fds."""
    decoder = Decoder()
    a, b = os.eventfd(0), os.eventfd(0)
    first = Message(FrontendRequest.SET_VRING_KICK, VERSION, codec.pack_vring_file(1, False))
    second = Message(FrontendRequest.GET_FEATURES)
    data = first.encode()
    assert decoder.feed(data[:5], [a]) == []
    (m1,) = decoder.feed(data[5:], [])
    (m2,) = decoder.feed(second.encode(), [])
    assert m1.fds == [a] and m2.fds == []
    m1.close()
    with pytest.raises(OSError):
        os.fstat(a)
    os.close(b)


@given(u32, u32, st.integers(MAX_PAYLOAD + 1, 2**32 - 1))
def test_oversized_payloads_are_rejected_from_the_header(request: int, _: int, size: int) -> None:
    """A header announcing more than MAX_PAYLOAD bytes is rejected before any
    payload is read."""
    with pytest.raises(MessageTooLarge):
        Decoder().feed(struct.pack("=III", max(request, 1), VERSION, size))


@given(st.integers(0, 2**32 - 1).filter(lambda f: f & 3 != VERSION or f & ~0xF))
def test_bad_versions_and_unknown_flags_are_rejected(flag_word: int) -> None:
    """Any version other than 1, or any flag bit beyond reply/need_reply, is a bad header."""
    with pytest.raises(BadHeader):
        codec.parse_header(struct.pack("=III", 1, flag_word, 0))


def test_request_zero_is_rejected() -> None:
    """VHOST_USER_NONE (0) is not a request."""
    with pytest.raises(BadHeader):
        codec.parse_header(struct.pack("=III", 0, VERSION, 0))


def test_more_than_eight_fds_for_one_message_is_rejected_and_closed() -> None:
    """A ninth fd for one message raises TooManyFds and every fd is closed."""
    fds = [os.eventfd(0) for _ in range(MAX_FDS + 1)]
    with pytest.raises(TooManyFds):
        Decoder().feed(Message(FrontendRequest.SET_MEM_TABLE).encode()[:4], fds)
    for fd in fds:
        with pytest.raises(OSError):
            os.fstat(fd)


def test_eof_inside_a_message_is_a_truncated_message() -> None:
    """End of stream after part of a message raises TruncatedMessage; at a
    message boundary it does not."""
    decoder = Decoder()
    decoder.feed(Message(FrontendRequest.SET_FEATURES, VERSION, codec.pack_u64(1)).encode()[:15])
    with pytest.raises(TruncatedMessage):
        decoder.eof()
    Decoder().eof()


@given(st.binary(max_size=600), st.lists(st.integers(0, 600)))
@settings(max_examples=300, deadline=None)
def test_arbitrary_bytes_raise_only_protocol_errors(data: bytes, cuts: list[int]) -> None:
    """Whatever bytes arrive, in whatever chunks, the decoder returns messages
    or raises a ProtocolError subclass, never anything else."""
    decoder = Decoder()
    try:
        for chunk in chunked(data, cuts):
            for m in decoder.feed(chunk):
                assert m.size <= MAX_PAYLOAD
        decoder.eof()
    except ProtocolError:
        pass


@given(st.integers(0, 255), st.booleans())
def test_vring_file_packing(index: int, nofd: bool) -> None:
    """SET_VRING_KICK/CALL payloads carry the index in bits 0-7 and NOFD in bit 8."""
    payload = codec.pack_vring_file(index, nofd)
    value = struct.unpack("=Q", payload)[0]
    assert value & 0xFF == index and bool(value & 0x100) == nofd and value >> 9 == 0
    assert codec.unpack_vring_file(payload) == (index, nofd)


@given(st.integers(256, 2**32))
def test_vring_file_index_must_fit_eight_bits(index: int) -> None:
    """An index above 255 cannot be encoded in a vring file payload."""
    with pytest.raises(BadPayload):
        codec.pack_vring_file(index, False)


@given(st.lists(regions, max_size=8), st.integers(0, 8))
def test_memory_table_round_trip(table: list[MemoryRegion], spare: int) -> None:
    """A SET_MEM_TABLE payload parses back to its regions, also when QEMU
    sends the full 8-slot structure with unused slots after the count."""
    payload = codec.pack_memory_table(table)
    assert codec.unpack_memory_table(payload) == table
    padded = payload + bytes(32 * spare)
    assert codec.unpack_memory_table(padded) == table


@given(st.integers(9, 2**32 - 1))
def test_memory_table_with_too_many_regions_is_rejected(count: int) -> None:
    """More than 8 regions is a bad payload."""
    with pytest.raises(BadPayload):
        codec.unpack_memory_table(struct.pack("=II", count, 0) + bytes(32 * 8))


@given(st.integers(1, 8), st.integers(0, 31))
def test_memory_table_shorter_than_its_count_is_rejected(count: int, short: int) -> None:
    """A count whose regions do not fit the payload is a bad payload."""
    payload = struct.pack("=II", count, 0) + bytes(32 * count - 1 - short)
    with pytest.raises(BadPayload):
        codec.unpack_memory_table(payload)


@given(regions)
def test_single_region_round_trip(region: MemoryRegion) -> None:
    """ADD_MEM_REG/REM_MEM_REG payloads: 8 bytes of padding, then the region."""
    assert codec.unpack_mem_reg(codec.pack_mem_reg(region)) == region


@given(u32, u32, u64, u64, u64, u64)
def test_vring_state_and_address_round_trip(
    index: int, num: int, desc: int, used: int, avail: int, log: int
) -> None:
    """vhost_vring_state and vhost_vring_addr pack and parse symmetrically."""
    assert VringState.unpack(VringState(index, num).pack()) == VringState(index, num)
    addr = VringAddr(index, num, desc, used, avail, log)
    assert VringAddr.unpack(addr.pack()) == addr


@given(st.binary(max_size=64).filter(lambda b: len(b) != 8))
def test_wrong_sized_u64_payloads_are_rejected(payload: bytes) -> None:
    """A u64 payload of any size but 8 is a bad payload."""
    with pytest.raises(BadPayload):
        codec.unpack_u64(payload)


def test_every_request_has_a_name_and_unknown_ones_say_so() -> None:
    """Logs name every request of both channels, and unknown numbers as UNKNOWN(n)."""
    assert codec.request_name(12) == "SET_VRING_KICK"
    assert codec.request_name(21) == "SET_BACKEND_REQ_FD"
    assert codec.request_name(43) == "CHECK_DEVICE_STATE"
    assert codec.request_name(3, backend_channel=True) == "VRING_HOST_NOTIFIER_MSG"
    assert codec.request_name(99) == "UNKNOWN(99)"
    assert all(r.name != "UNKNOWN" for r in FrontendRequest)


def test_the_payload_bound_covers_the_largest_message_of_the_spec() -> None:
    """MAX_PAYLOAD is at least the spec's largest payload (a crypto session)."""
    assert codec.LARGEST_SPEC_PAYLOAD == codec.CRYPTO_SESSION_SIZE == 1072
    assert codec.LARGEST_SPEC_PAYLOAD <= MAX_PAYLOAD
    Message(FrontendRequest.CREATE_CRYPTO_SESSION, VERSION, bytes(1072)).encode()
