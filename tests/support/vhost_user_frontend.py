"""A test vhost-user front-end that speaks to a back-end the way QEMU does.

It owns guest memory (a memfd mapped shared), builds split virtqueues in it,
and drives a vhost-user-blk back-end (qemu-storage-daemon) through the
project's codec (svqtui.sources.vhost_user.codec), never a second
implementation of the wire format:

* ``init()`` is QEMU's connect sequence (vhost_user_backend_init +
  vhost_dev_init): features, protocol features (with REPLY_ACK), SET_OWNER,
  and each ring's call fd set to a *masked notifier* (vhost_virtqueue_init).
* ``start()`` is a device start: each ring's call fd set to a fresh *guest
  notifier*, SET_FEATURES, SET_MEM_TABLE, then per ring NUM/BASE/ADDR/KICK and
  SET_VRING_ENABLE.
* ``stop()`` sends GET_VRING_BASE for every ring.

Block I/O: 4 KiB virtio-blk requests (virtio_blk_outhdr, data, status byte)
as 3-descriptor chains; completions are waited for on the guest notifier
(the call eventfd) only, so a lost call shows up as a timeout. The front-end
counts kicks sent and calls received per queue (eventfd sums).

The control socket may be used by one thread at a time; I/O on different
queues may run in different threads.
"""

from __future__ import annotations

import array
import mmap
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from svqtui.sources.vhost_user.codec import (
    ALWAYS_REPLIED,
    F_PROTOCOL_FEATURES,
    F_VERSION_1,
    NEED_REPLY,
    VERSION,
    Decoder,
    FrontendRequest,
    MemoryRegion,
    Message,
    ProtocolFeature,
    VringAddr,
    VringState,
    close_fds,
    pack_mem_reg,
    pack_memory_table,
    pack_u64,
    pack_vring_file,
    unpack_u64,
)

R = FrontendRequest
SECTOR = 512
BLOCK = 4096
VIRTIO_BLK_T_IN = 0
VIRTIO_BLK_T_OUT = 1
VIRTIO_BLK_S_OK = 0
DESC_F_NEXT = 1
DESC_F_WRITE = 2
F_EVENT_IDX = 29  # VIRTIO_RING_F_EVENT_IDX
UADDR_BASE = 0x7F00_0000_0000  # the front-end's "user addresses" (any value works)
QUEUE_AREA = 64 * 1024  # per queue: desc table, avail ring, used ring, headers
DATA_BASE = 1 << 20
DATA_AREA = 512 * 1024  # per queue: one 4 KiB block per request slot
WANTED_PROTOCOL = (
    1 << ProtocolFeature.MQ | 1 << ProtocolFeature.REPLY_ACK | 1 << ProtocolFeature.CONFIG
)
_DESC = struct.Struct("<QIHH")
_OUTHDR = struct.Struct("<IIQ")
_USED_ELEM = struct.Struct("<II")


class FrontendError(Exception):
    """The back-end (or the interposer) did not behave as a vhost-user back-end."""


class IOTimeout(FrontendError):
    """No call arrived in time: a lost notification or a stalled back-end."""


@dataclass(slots=True)
class Request:
    slot: int
    op: int
    sector: int
    data: bytes | None  # what was written (OUT)


@dataclass(slots=True)
class Queue:
    """One split virtqueue in guest memory and its notifiers."""

    index: int
    size: int
    base: int  # guest physical address of the queue area
    data_base: int
    kick: int
    call: int  # guest notifier (set at start)
    masked: int  # QEMU's masked notifier (set at init)
    next_avail: int = 0
    last_used: int = 0
    kicks_sent: int = 0
    kicked_idx: int = 0  # avail idx at the last kick decision (EVENT_IDX)
    armed_used_event: int = 0  # the used_event last written (EVENT_IDX)
    calls_received: int = 0
    free: list[int] = field(default_factory=list)
    inflight: dict[int, Request] = field(default_factory=dict)

    @property
    def desc(self) -> int:
        return self.base

    @property
    def avail(self) -> int:
        return self.base + 16 * self.size

    @property
    def used(self) -> int:
        return self.base + 16 * self.size + 4096

    @property
    def headers(self) -> int:
        return self.base + 32 * 1024

    @property
    def slots(self) -> int:
        return self.size // 3


class VhostUserFrontend:
    """A QEMU-like vhost-user front-end for a vhost-user-blk back-end."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        queues: int = 2,
        queue_size: int = 256,
        mem_size: int = 4 << 20,
        timeout: float = 5.0,
        need_reply: Iterable[int] = (R.SET_MEM_TABLE, R.SET_VRING_CALL),
        protocol: int = WANTED_PROTOCOL,
        event_idx: bool = False,
    ) -> None:
        assert queues * QUEUE_AREA <= DATA_BASE and DATA_BASE + queues * DATA_AREA <= mem_size
        self.path = os.fspath(path)
        self.timeout = timeout
        self.need_reply = set(need_reply)
        self.wanted_protocol = protocol
        self.want_event_idx = event_idx
        self._fence = threading.Lock()  # a locked instruction: a full barrier on x86
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.settimeout(timeout)
        self.mem_fd = os.memfd_create("svqtui-test-guest", os.MFD_CLOEXEC)
        os.ftruncate(self.mem_fd, mem_size)
        self.mem = mmap.mmap(self.mem_fd, mem_size, flags=mmap.MAP_SHARED)
        self.mem_size = mem_size
        self.queues: list[Queue] = []
        for i in range(queues):
            q = Queue(
                index=i,
                size=queue_size,
                base=i * QUEUE_AREA,
                data_base=DATA_BASE + i * DATA_AREA,
                kick=os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC),
                call=os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC),
                masked=os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC),
            )
            q.free = list(range(min(q.slots, DATA_AREA // BLOCK)))
            self.queues.append(q)
        self.features = 0
        self.protocol_features = 0
        self.offered_protocol_features = 0
        self._decoder = Decoder()
        self._retired: list[int] = []
        self.closed = False

    # -- the socket --------------------------------------------------------------

    def connect(self, timeout: float | None = None) -> VhostUserFrontend:
        """Connect, retrying while the socket is not there yet."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            try:
                self.sock.connect(self.path)
                return self
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def send(self, msg: Message, fds: Sequence[int] = ()) -> None:
        data = msg.encode()
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        self.sock.sendmsg([data], anc if fds else [])

    def send_raw(self, data: bytes, fds: Sequence[int] = ()) -> None:
        """Send arbitrary bytes (for malformed-message tests)."""
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())]
        self.sock.sendmsg([data], anc if fds else [])

    def recv(self) -> Message:
        """The next message from the back-end (blocking, with the timeout)."""
        while True:
            data, ancdata, _, _ = self.sock.recvmsg(self._decoder.need, socket.CMSG_SPACE(8 * 4))
            fds: list[int] = []
            for level, kind, raw in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    arr = array.array("i")
                    arr.frombytes(raw[: len(raw) - len(raw) % 4])
                    fds.extend(arr)
            if not data:
                close_fds(fds)
                raise ConnectionResetError("the back-end closed the connection")
            messages = self._decoder.feed(data, fds)
            if messages:
                assert len(messages) == 1
                return messages[0]

    def request(
        self,
        request: int,
        payload: bytes = b"",
        fds: Sequence[int] = (),
        need_reply: bool | None = None,
    ) -> Message | None:
        """Send a request; return its reply when one is due (checked)."""
        if need_reply is None:
            need_reply = request in self.need_reply
        ack = need_reply and bool(self.protocol_features >> ProtocolFeature.REPLY_ACK & 1)
        msg = Message(request, VERSION | (NEED_REPLY if ack else 0), payload)
        self.send(msg, fds)
        if request not in ALWAYS_REPLIED and not ack:
            return None
        reply = self.recv()
        if reply.request != request or not reply.is_reply:
            raise FrontendError(f"expected a {R(request).name} reply, got {reply.name()}")
        if ack and request not in ALWAYS_REPLIED and unpack_u64(reply.payload) != 0:
            raise FrontendError(f"the back-end refused {R(request).name}")
        return reply

    def sync(self) -> VhostUserFrontend:
        """A GET_FEATURES round trip: everything sent before has been handled."""
        self.get_u64(R.GET_FEATURES)
        return self

    def get_u64(self, request: int) -> int:
        reply = self.request(request)
        assert reply is not None
        return unpack_u64(reply.payload)

    # -- QEMU's sequences -----------------------------------------------------------

    def init(self) -> VhostUserFrontend:
        """Connect-time negotiation and each ring's masked notifier."""
        offered = self.get_u64(R.GET_FEATURES)
        if not offered >> F_PROTOCOL_FEATURES & 1:
            raise FrontendError("the back-end does not offer protocol features")
        self.offered_protocol_features = self.get_u64(R.GET_PROTOCOL_FEATURES)
        self.protocol_features = self.offered_protocol_features & self.wanted_protocol
        self.request(R.SET_PROTOCOL_FEATURES, pack_u64(self.protocol_features))
        if self.protocol_features >> ProtocolFeature.MQ & 1:
            count = self.get_u64(R.GET_QUEUE_NUM)
            if count < len(self.queues):
                raise FrontendError(f"the back-end has {count} queues, {len(self.queues)} needed")
        self.request(R.SET_OWNER)
        wanted = 1 << F_VERSION_1 | 1 << F_PROTOCOL_FEATURES
        if self.want_event_idx:
            wanted |= 1 << F_EVENT_IDX
        self.features = offered & wanted
        for q in self.queues:
            self.request(R.SET_VRING_CALL, pack_vring_file(q.index, False), [q.masked])
        return self

    def start(self) -> VhostUserFrontend:
        """A device start, ordered like QEMU's vhost-user-blk start."""
        for q in self.queues:
            self.request(R.SET_VRING_CALL, pack_vring_file(q.index, False), [q.call])
        self.request(R.SET_FEATURES, pack_u64(self.features))
        region = MemoryRegion(0, self.mem_size, UADDR_BASE, 0)
        if self.protocol_features >> ProtocolFeature.CONFIGURE_MEM_SLOTS & 1:
            if self.get_u64(R.GET_MAX_MEM_SLOTS) < 1:
                raise FrontendError("the back-end offers no memory slot")
            self.request(R.ADD_MEM_REG, pack_mem_reg(region), [self.mem_fd], need_reply=True)
        else:
            self.request(R.SET_MEM_TABLE, pack_memory_table([region]), [self.mem_fd])
        for q in self.queues:
            self._reset_ring(q)
            self.request(R.SET_VRING_NUM, VringState(q.index, q.size).pack())
            self.request(R.SET_VRING_BASE, VringState(q.index, 0).pack())
            addr = VringAddr(
                q.index, 0, UADDR_BASE + q.desc, UADDR_BASE + q.used, UADDR_BASE + q.avail, 0
            )
            self.request(R.SET_VRING_ADDR, addr.pack())
            self.request(R.SET_VRING_KICK, pack_vring_file(q.index, False), [q.kick])
        for q in self.queues:
            self.request(R.SET_VRING_ENABLE, VringState(q.index, 1).pack())
        return self

    def stop(self) -> list[int]:
        """GET_VRING_BASE for every ring; returns the bases."""
        bases = []
        for q in self.queues:
            reply = self.request(R.GET_VRING_BASE, VringState(q.index, 0).pack())
            assert reply is not None
            bases.append(VringState.unpack(reply.payload).num)
        return bases

    def remove_memory(self) -> None:
        """REM_MEM_REG of the one region (CONFIGURE_MEM_SLOTS front-ends)."""
        region = MemoryRegion(0, self.mem_size, UADDR_BASE, 0)
        self.request(R.REM_MEM_REG, pack_mem_reg(region), need_reply=True)

    def renew_notifiers(self) -> None:
        """Fresh kick and guest-notifier eventfds for every queue (as QEMU
        makes at each start); the old ones stay open until close()."""
        for q in self.queues:
            self._retired += [q.kick, q.call]
            q.kick = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
            q.call = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def _reset_ring(self, q: Queue) -> None:
        self.mem[q.base : q.base + QUEUE_AREA] = bytes(QUEUE_AREA)
        q.next_avail = q.last_used = q.kicked_idx = 0
        q.inflight.clear()
        q.free = list(range(min(q.slots, DATA_AREA // BLOCK)))

    # -- the data path ---------------------------------------------------------------

    def avail_idx(self, q: Queue) -> int:
        return int.from_bytes(self.mem[q.avail + 2 : q.avail + 4], "little")

    def used_idx(self, q: Queue) -> int:
        return int.from_bytes(self.mem[q.used + 2 : q.used + 4], "little")

    def submit(self, qi: int, op: int, sector: int, data: bytes | None = None) -> Request:
        """Put one 4 KiB request on the avail ring (no kick)."""
        q = self.queues[qi]
        slot = q.free.pop()
        head = 3 * slot
        hdr = q.headers + 32 * slot
        status = hdr + 16
        buf = q.data_base + BLOCK * slot
        _OUTHDR.pack_into(self.mem, hdr, op, 0, sector)
        self.mem[status] = 0xFF
        if op == VIRTIO_BLK_T_OUT:
            assert data is not None and len(data) == BLOCK
            self.mem[buf : buf + BLOCK] = data
            data_flags = DESC_F_NEXT
        else:
            data_flags = DESC_F_NEXT | DESC_F_WRITE
        _DESC.pack_into(self.mem, q.desc + 16 * head, hdr, 16, DESC_F_NEXT, head + 1)
        _DESC.pack_into(self.mem, q.desc + 16 * (head + 1), buf, BLOCK, data_flags, head + 2)
        _DESC.pack_into(self.mem, q.desc + 16 * (head + 2), status, 1, DESC_F_WRITE, 0)
        ring = q.avail + 4 + 2 * (q.next_avail % q.size)
        self.mem[ring : ring + 2] = head.to_bytes(2, "little")
        q.next_avail = (q.next_avail + 1) & 0xFFFF
        self.mem[q.avail + 2 : q.avail + 4] = q.next_avail.to_bytes(2, "little")
        req = Request(slot, op, sector, data)
        q.inflight[slot] = req
        return req

    @property
    def event_idx(self) -> bool:
        return bool(self.features >> F_EVENT_IDX & 1)

    def kick(self, qi: int) -> None:
        """Notify the device (with EVENT_IDX only when it asked for it)."""
        q = self.queues[qi]
        if self.event_idx:
            with self._fence:  # avail.idx store before the avail_event load
                pass
            off = q.used + 4 + 8 * q.size
            event = int.from_bytes(self.mem[off : off + 2], "little")
            new, old = q.next_avail, q.kicked_idx
            q.kicked_idx = new
            if (new - event - 1) & 0xFFFF >= (new - old) & 0xFFFF:
                return
        os.eventfd_write(q.kick, 1)
        q.kicks_sent += 1

    def arm_call(self, qi: int) -> bool:
        """With EVENT_IDX, ask for a call at the next used entry; False when
        entries arrived meanwhile (reap them instead of waiting)."""
        if not self.event_idx:
            return True
        q = self.queues[qi]
        off = q.avail + 4 + 2 * q.size
        self.mem[off : off + 2] = q.last_used.to_bytes(2, "little")
        q.armed_used_event = q.last_used
        with self._fence:  # used_event store before the used.idx load
            pass
        return self.used_idx(q) == q.last_used

    def wait_call(self, qi: int, timeout: float | None = None) -> int:
        """Wait for the guest notifier; return the eventfd value read."""
        q = self.queues[qi]
        poller = select.poll()
        poller.register(q.call, select.POLLIN)
        if not poller.poll(1000 * (timeout if timeout is not None else self.timeout)):
            raise IOTimeout(
                f"queue {qi}: no call within {timeout or self.timeout:.1f} s "
                f"({len(q.inflight)} request(s) in flight, avail idx {q.next_avail}, "
                f"used idx {self.used_idx(q)}, last used {q.last_used})"
            )
        value = os.eventfd_read(q.call)
        q.calls_received += value
        return value

    def drain_call(self, qi: int) -> int:
        """Read the guest notifier without waiting (0 when not signalled)."""
        q = self.queues[qi]
        try:
            value = os.eventfd_read(q.call)
        except BlockingIOError:
            return 0
        q.calls_received += value
        return value

    def reap(self, qi: int) -> list[tuple[Request, bytes | None]]:
        """Completed requests since the last reap: (request, data read or None)."""
        q = self.queues[qi]
        done = []
        used = self.used_idx(q)
        while q.last_used != used:
            off = q.used + 4 + 8 * (q.last_used % q.size)
            head, _ = _USED_ELEM.unpack_from(self.mem, off)
            slot = head // 3
            req = q.inflight.pop(slot)
            status = self.mem[q.headers + 32 * slot + 16]
            if status != VIRTIO_BLK_S_OK:
                raise FrontendError(f"queue {qi}: request at sector {req.sector}: status {status}")
            data = None
            if req.op == VIRTIO_BLK_T_IN:
                buf = q.data_base + BLOCK * slot
                data = bytes(self.mem[buf : buf + BLOCK])
            q.free.append(slot)
            done.append((req, data))
            q.last_used = (q.last_used + 1) & 0xFFFF
        return done

    def complete(self, qi: int, count: int) -> list[tuple[Request, bytes | None]]:
        """Wait (on calls only) until ``count`` requests completed."""
        done: list[tuple[Request, bytes | None]] = []
        while len(done) < count:
            done.extend(self.reap(qi))
            if len(done) >= count:
                break
            if self.arm_call(qi):
                self.wait_call(qi)
        return done

    def write_block(self, qi: int, block: int, data: bytes) -> None:
        self.submit(qi, VIRTIO_BLK_T_OUT, block * (BLOCK // SECTOR), data)
        self.kick(qi)
        self.complete(qi, 1)

    def read_block(self, qi: int, block: int) -> bytes:
        self.submit(qi, VIRTIO_BLK_T_IN, block * (BLOCK // SECTOR))
        self.kick(qi)
        ((_, data),) = self.complete(qi, 1)
        assert data is not None
        return data

    # -- teardown --------------------------------------------------------------

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.sock.close()
        self._decoder.close()
        self.mem.close()
        close_fds([self.mem_fd])
        for q in self.queues:
            close_fds([q.kick, q.call, q.masked])
        close_fds(self._retired)

    def __enter__(self) -> VhostUserFrontend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pattern(block: int, generation: int) -> bytes:
    """A 4 KiB block whose content names its block number and generation."""
    head = struct.pack("<QQ", block, generation)
    return (head * (BLOCK // len(head)))[:BLOCK]
