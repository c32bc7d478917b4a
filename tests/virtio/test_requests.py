"""Request decoding: virtio-blk headers (type, sector, data bytes) in any
descriptor layout, virtio-net TX/RX/CTRL, raw chains for everything else,
and malformed requests decoded as raw with the reason."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.virtio.chain import VIRTQ_DESC_F_NEXT, walk_chain
from svqtui.virtio.requests import (
    BlkRequest,
    DeviceKind,
    NetRequest,
    RawRequest,
    Request,
    decode_request,
    read_chain,
)
from svqtui.virtio.split_ring import F_VERSION_1
from tests.support.virtio_ring import Buffer, RingBuilder

SIZE = 64


def blk_chain(
    ring: RingBuilder, kind: int, sector: int, data: list[int], head: int = 0, write: bool = True
) -> int:
    """A Linux-style virtio-blk chain: 16-byte header, data buffers, 1-byte status."""
    header = ring.alloc(16)
    ring.write(header, struct.pack("<IIQ", kind, 0, sector))
    buffers = [Buffer(header, 16)]
    buffers += [Buffer(ring.alloc(n), n, write) for n in data]
    buffers.append(Buffer(ring.alloc(1), 1, True))
    return ring.chain(buffers, list(range(head, head + len(buffers))))


def decode(ring: RingBuilder, head: int, device: DeviceKind, features: int = 0) -> Request:
    memory = ring.memory()
    return decode_request(memory, walk_chain(memory, ring.layout, head), device, features)


@given(st.sampled_from([(0, "READ", True), (1, "WRITE", False)]), st.integers(0, 2**64 - 1))
@settings(deadline=None)
def test_blk_read_and_write(op: tuple[int, str, bool], sector: int) -> None:
    """IN/OUT: kind READ/WRITE, the header's sector, bytes = the data buffers."""
    kind, name, write = op
    ring = RingBuilder(SIZE)
    head = blk_chain(ring, kind, sector, [4096, 512], head=5, write=write)
    req = decode(ring, head, DeviceKind.BLK)
    assert req == BlkRequest(5, kind, sector, 4608)
    assert req.describe() == f"{name} sector {sector}, 4608 bytes"
    assert req.to_json() | {"segments": None} == {
        "head": 5,
        "kind": name,
        "sector": sector,
        "bytes": 4608,
        "device": "blk",
        "type": kind,
        "segments": None,
    }


def test_blk_the_example_line() -> None:
    """The brief's example: a 4 KiB read at sector 2048."""
    ring = RingBuilder(SIZE)
    req = decode(ring, blk_chain(ring, 0, 2048, [4096]), DeviceKind.BLK)
    assert req.describe() == "READ sector 2048, 4096 bytes"


def test_blk_header_and_data_in_one_descriptor() -> None:
    """Any layout: header and data in one readable buffer, status alone."""
    ring = RingBuilder(SIZE)
    buf = ring.alloc(16 + 1024)
    ring.write(buf, struct.pack("<IIQ", 1, 0, 77))
    ring.chain([Buffer(buf, 16 + 1024), Buffer(ring.alloc(1), 1, True)], [0, 1])
    assert decode(ring, 0, DeviceKind.BLK) == BlkRequest(0, 1, 77, 1024)


def test_blk_header_split_across_descriptors() -> None:
    """A header split over two buffers is read across them (read_chain)."""
    ring = RingBuilder(SIZE)
    a, b = ring.alloc(16), ring.alloc(16)
    raw = struct.pack("<IIQ", 0, 0, 0x1122334455)
    ring.write(a, raw[:5])
    ring.write(b, raw[5:])
    ring.chain([Buffer(a, 5), Buffer(b, 11), Buffer(ring.alloc(8), 8, True)], [2, 3, 4])
    assert decode(ring, 2, DeviceKind.BLK) == BlkRequest(2, 0, 0x1122334455, 7)


@pytest.mark.parametrize(
    ("kind", "name", "data", "line"),
    [
        (4, "FLUSH", [], "FLUSH 0 bytes"),
        (8, "GET_ID", [20], "GET_ID 20 bytes"),
        (99, "TYPE_99", [8], "TYPE_99 8 bytes"),
        (0x8000_0001, "WRITE", [512], "WRITE sector 9, 512 bytes (barrier)"),
    ],
)
def test_blk_other_types(kind: int, name: str, data: list[int], line: str) -> None:
    """Types without a sector show none; unknown types by number; the legacy
    barrier flag is stripped from the type and shown."""
    ring = RingBuilder(SIZE)
    req = decode(ring, blk_chain(ring, kind, 9, data), DeviceKind.BLK)
    assert isinstance(req, BlkRequest) and req.kind == name and req.describe() == line


def test_blk_discard_segments() -> None:
    """DISCARD: the first segment's sector and the bytes of all segments."""
    ring = RingBuilder(SIZE)
    header = ring.alloc(16 + 32)
    ring.write(header, struct.pack("<IIQ", 11, 0, 0))
    ring.write(header + 16, struct.pack("<QII", 4096, 8, 0) + struct.pack("<QII", 8192, 16, 0))
    ring.chain(
        [Buffer(header, 16), Buffer(header + 16, 32), Buffer(ring.alloc(1), 1, True)], [0, 1, 2]
    )
    req = decode(ring, 0, DeviceKind.BLK)
    assert req == BlkRequest(0, 11, 4096, 24 * 512, 2)
    assert req.describe() == "DISCARD sector 4096, 12288 bytes in 2 segments"


def test_malformed_blk_requests_are_raw_with_the_reason() -> None:
    """A header outside guest memory, a chain shorter than a header, and a
    looping chain each decode as RawRequest saying why."""
    ring = RingBuilder(SIZE)
    ring.chain([Buffer(2**40, 16), Buffer(ring.alloc(1), 1, True)], [0, 1])
    req = decode(ring, 0, DeviceKind.BLK)
    assert isinstance(req, RawRequest)
    assert req.error is not None and req.error.startswith("blk request not decoded: ")
    assert "outside every memory region" in req.error
    ring.chain([Buffer(ring.alloc(8), 8), Buffer(ring.alloc(1), 1, True)], [2, 3])
    short = decode(ring, 2, DeviceKind.BLK)
    assert isinstance(short, RawRequest) and short.error is not None and "short" in short.error
    ring.put_desc(ring.desc, 10, 0x9000, 16, VIRTQ_DESC_F_NEXT, 10)
    loop = decode(ring, 10, DeviceKind.BLK)
    assert isinstance(loop, RawRequest) and loop.error is not None
    assert loop.error.startswith("loop: descriptor 10 of the descriptor table visited twice")
    assert loop.to_json()["chain"]["error"] == "loop"


def test_net_tx_header_and_length() -> None:
    """TX with VERSION_1: the 12-byte header's fields and the packet length
    after it, GSO and checksum shown."""
    ring = RingBuilder(SIZE)
    hdr = ring.alloc(12)
    ring.write(hdr, struct.pack("<BBHHHHH", 1, 1, 54, 1448, 34, 16, 0))
    ring.chain([Buffer(hdr, 12), Buffer(ring.alloc(9000), 9000)], [0, 1])
    req = decode(ring, 0, DeviceKind.NET, 1 << F_VERSION_1)
    assert isinstance(req, NetRequest) and req.kind == "TX" and req.nbytes == 9000
    assert req.header is not None and req.header.num_buffers == 0
    assert req.describe() == "TX 9000 bytes (gso TCPV4 size 1448, csum at 34+16)"
    assert req.to_json()["header"]["gso_type"] == "TCPV4"


def test_net_legacy_header_is_ten_bytes() -> None:
    """Without VERSION_1 or MRG_RXBUF the header is 10 bytes and has no num_buffers."""
    ring = RingBuilder(SIZE)
    buf = ring.alloc(10 + 60)
    ring.write(buf, struct.pack("<BBHHHH", 0, 0, 0, 0, 0, 0))
    ring.chain([Buffer(buf, 70)], [0])
    req = decode(ring, 0, DeviceKind.NET)
    assert isinstance(req, NetRequest) and req.nbytes == 60 and req.header is not None
    assert req.header.num_buffers is None and req.describe() == "TX 60 bytes"


def test_net_rx_and_ctrl() -> None:
    """An all-writable chain is an RX buffer; readable then writable is a
    control command with its class and command."""
    ring = RingBuilder(SIZE)
    ring.chain([Buffer(ring.alloc(1526), 1526, True)], [0])
    rx = decode(ring, 0, DeviceKind.NET)
    assert isinstance(rx, NetRequest) and rx.describe() == "RX 1526 bytes"
    cmd = ring.alloc(8)
    ring.write(cmd, bytes([4, 0]))  # VIRTIO_NET_CTRL_MQ, VQ_PAIRS_SET
    ring.chain([Buffer(cmd, 2), Buffer(cmd + 2, 2), Buffer(ring.alloc(1), 1, True)], [1, 2, 3])
    ctrl = decode(ring, 1, DeviceKind.NET)
    assert ctrl == NetRequest(1, "CTRL", 2, ctrl=(4, 0))
    assert ctrl.describe() == "CTRL class 4 command 0, 2 bytes"


def test_other_devices_get_the_raw_chain() -> None:
    """Any other device: the descriptors with addresses, lengths and flags."""
    ring = RingBuilder(SIZE)
    ring.chain([Buffer(0x1000, 64), Buffer(0x2000, 4096, True)], [7, 8])
    req = decode(ring, 7, DeviceKind.OTHER)
    assert isinstance(req, RawRequest) and req.error is None
    assert (
        req.describe()
        == "raw chain of 2 descriptors, 4160 bytes: 0x1000+64 NEXT, 0x2000+4096 WRITE"
    )
    doc = req.to_json()
    assert (doc["head"], doc["kind"], doc["sector"], doc["bytes"]) == (7, "raw", None, 4160)
    assert [d["addr"] for d in doc["chain"]["descriptors"]] == [0x1000, 0x2000]


def test_device_kind_from_names() -> None:
    """Device names and QEMU types map to blk, net or other."""
    assert DeviceKind.from_name("vhost-user-blk") is DeviceKind.BLK
    assert DeviceKind.from_name("virtio-net-pci") is DeviceKind.NET
    assert DeviceKind.from_name("vhost-user-fs") is DeviceKind.OTHER


@given(st.lists(st.integers(0, 64), min_size=1, max_size=6), st.data())
@settings(deadline=None)
def test_read_chain_reads_the_concatenation(lengths: list[int], data: st.DataObject) -> None:
    """read_chain returns bytes offset..offset+size of the buffers laid end to end."""
    ring = RingBuilder(SIZE)
    whole = b""
    buffers = []
    for n in lengths:
        addr = ring.alloc(n)
        content = data.draw(st.binary(min_size=n, max_size=n))
        ring.write(addr, content)
        whole += content
        buffers.append(Buffer(addr, n))
    ring.chain(buffers, list(range(len(buffers))))
    chain = walk_chain(ring.memory(), ring.layout, 0)
    offset = data.draw(st.integers(0, len(whole)))
    size = data.draw(st.integers(0, len(whole) - offset))
    assert read_chain(ring.memory(), chain.buffers, offset, size) == whole[offset : offset + size]
    with pytest.raises(ValueError, match="short"):
        read_chain(ring.memory(), chain.buffers, offset, len(whole) - offset + 1)
