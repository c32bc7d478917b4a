"""A hostile front-end ends only its own connection (docs/design.md#limits).

Device blk0 gets a scripted front-end that misbehaves (no real QEMU sends
oversized or malformed headers, 253 fds, or more rings, regions or fds than a
device has); device blk1, shadowed, has a well-behaved front-end doing
verified I/O through a real qemu-storage-daemon the whole time. Each attack
must cost blk0 its connection with exactly one error line naming the cause,
and blk1 must lose nothing: no failed I/O, still connected and shadowed.
"""

from __future__ import annotations

import contextlib
import os
import resource
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from svqtui.sources.vhost_user.codec import (
    VERSION,
    FrontendRequest,
    MemoryRegion,
    Message,
    ProtocolFeature,
    pack_mem_reg,
    pack_vring_file,
)
from svqtui.sources.vhost_user.settings import DeviceLimits
from tests.support.qsd import StorageDaemon
from tests.support.vhost_user_frontend import WANTED_PROTOCOL, VhostUserFrontend, pattern
from tests.support.vhost_user_rig import Context, InterposerRig
from tests.support.wait import wait_until

R = FrontendRequest
# rings: qemu-storage-daemon's 2 queues, so the refused ring is never one
# the back-end itself would reject first.
LIMITS = DeviceLimits(rings=2, regions=3, fds=8)
TOGGLE_LIMIT_S = 0.5  # generous on a shared machine; it took 998 ms under fd exhaustion
MEM_SLOTS = WANTED_PROTOCOL | 1 << ProtocolFeature.CONFIGURE_MEM_SLOTS


class Guest(threading.Thread):
    """Verified writes and reads on blk1 until stopped; records any failure."""

    def __init__(self, fe: VhostUserFrontend) -> None:
        super().__init__(daemon=True)
        self.fe = fe
        self.ios = 0
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def run(self) -> None:
        try:
            while not self.halt.is_set():
                block = self.ios % 16
                self.fe.write_block(0, block, pattern(block, self.ios))
                assert self.fe.read_block(0, block) == pattern(block, self.ios)
                self.ios += 1
        except BaseException as err:
            self.errors.append(err)


@pytest.fixture
def hostile_rig(context: Context, qsd: StorageDaemon, sock_dir: Path) -> Iterator[InterposerRig]:
    """blk0 (pass mode, small limits) and blk1 (shadowed, default limits)."""
    r = InterposerRig(
        context, sock_dir, qsd.sockets, shadow=[False, True], limits=[LIMITS, DeviceLimits()]
    )
    try:
        yield r
    finally:
        r.close()


def _eventfd() -> int:
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)


def too_many_rings(fe: VhostUserFrontend) -> None:
    for index in range(LIMITS.rings + 1):
        fd = _eventfd()
        fe.send(Message(R.SET_VRING_CALL, VERSION, pack_vring_file(index, False)), [fd])
        os.close(fd)


def too_many_regions(fe: VhostUserFrontend) -> None:
    for i in range(LIMITS.regions + 1):
        fd = os.memfd_create("hostile", os.MFD_CLOEXEC)
        os.ftruncate(fd, 1 << 20)
        region = MemoryRegion((64 + i) << 20, 1 << 20, (0x7E00 << 32) + (i << 20), 0)
        fe.send(Message(R.ADD_MEM_REG, VERSION, pack_mem_reg(region)), [fd])
        os.close(fd)


def too_many_fds(fe: VhostUserFrontend) -> None:
    # Within the ring limit: 2 sockets + 2 rings x (kick, call) = 6 fds;
    # the regions (1 fd each) then take it over 8 before the region limit.
    for index in range(LIMITS.rings):
        for request in (R.SET_VRING_KICK, R.SET_VRING_CALL):
            fd = _eventfd()
            fe.send(Message(request, VERSION, pack_vring_file(index, False)), [fd])
            os.close(fd)
    too_many_regions(fe)


def oversized(fe: VhostUserFrontend) -> None:
    fe.send_raw(struct.pack("=III", R.SET_CONFIG, VERSION, 1 << 30))


def bad_version(fe: VhostUserFrontend) -> None:
    fe.send_raw(struct.pack("=III", R.GET_FEATURES, 0x2, 0))


def fds_253(fe: VhostUserFrontend) -> None:
    fds = [_eventfd() for _ in range(253)]
    try:
        fe.send_raw(struct.pack("=III", R.SET_VRING_CALL, VERSION, 8) + bytes(8), fds)
    finally:
        for fd in fds:
            os.close(fd)


def garbage(fe: VhostUserFrontend) -> None:
    fe.send_raw(os.urandom(4096))


ATTACKS: dict[str, tuple[Callable[[VhostUserFrontend], None], str]] = {
    "too many rings": (too_many_rings, "over the limit of 2 rings (devices: limits: rings)"),
    "too many regions": (
        too_many_regions,
        "over the limit of 3 (devices: limits: regions)",
    ),
    "too many fds": (too_many_fds, "fds for it, over the limit of 8 (devices: limits: fds)"),
    "oversized header": (oversized, "malformed message from QEMU"),
    "bad version": (bad_version, "malformed message from QEMU"),
    "253 fds": (fds_253, "malformed message from QEMU"),
    "garbage": (garbage, "malformed message from QEMU"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_hostile_frontend_ends_only_its_own_connection(
    hostile_rig: InterposerRig, context: Context, attack: str
) -> None:
    """The attack closes blk0 with one error line naming the cause; blk1's
    verified I/O goes on without a single failure, its shadow toggles stay
    under 0.5 s, it is still connected and shadowed; blk0 takes a
    well-behaved front-end again afterwards."""
    rig = hostile_rig
    guest_fe = rig.ready_frontend(1).start()
    wait_until(lambda: rig.device(1).shadow, what="blk1 shadowed")
    guest = Guest(guest_fe)
    guest.start()
    hostile = rig.ready_frontend(0, protocol=MEM_SLOTS)
    wait_until(lambda: guest.ios > 5, what="blk1 I/O running")
    before = len(context.events(rig.key(0), "error"))
    run, expected = ATTACKS[attack]
    with contextlib.suppress(OSError):  # the interposer may close while we still send
        run(hostile)
    rig.wait_connected(0, False)
    time.sleep(0.3)
    errors = [e.text for e in context.events(rig.key(0), "error")[before:]]
    assert len(errors) == 1, "\n".join(f"{e.level}: {e.text}" for e in context.events(rig.key(0)))
    assert expected in errors[0], errors[0]
    ios = guest.ios
    wait_until(lambda: guest.ios > ios + 20, what="blk1 I/O continuing")
    for on in (False, True):  # the healthy device's toggles stay fast
        started = time.perf_counter()
        rig.source.set_shadow(rig.key(1), on)
        took = time.perf_counter() - started
        assert took < TOGGLE_LIMIT_S, f"shadow {on} of blk1 took {took * 1000:.0f} ms"
    guest.halt.set()
    guest.join(10)
    assert not guest.errors, guest.errors
    assert rig.device(1).connected and rig.device(1).shadow
    hostile.close()
    again = rig.ready_frontend(0).start()
    again.write_block(0, 3, pattern(3, 99))
    assert again.read_block(0, 3) == pattern(3, 99)


def test_accept_out_of_fds_does_not_spin_or_spew(
    hostile_rig: InterposerRig, context: Context
) -> None:
    """With the open-file limit reached, a connecting front-end cannot be
    accepted: the interposer logs one line (rate-limited), backs off instead
    of spinning on the readable listen socket (under 0.3 s of CPU in 2 s),
    and accepts the front-end once fds are free again."""
    rig = hostile_rig
    fe = VhostUserFrontend(rig.devices[0].listen)  # its fds exist before the limit
    rig.frontends.append(fe)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    pads: list[int] = []
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
        while True:
            try:
                pads.append(os.open(os.devnull, os.O_RDONLY))
            except OSError:
                break
        fe.sock.setblocking(True)
        fe.sock.connect(fe.path)  # lands in the listen backlog
        cpu_before = sum(os.times()[:2])  # (psutil would need an fd)
        time.sleep(2.0)
        cpu = sum(os.times()[:2]) - cpu_before
        lines = [e.text for e in context.events(rig.key(0)) if "cannot accept" in e.text]
        assert 1 <= len(lines) <= 5, lines
        assert "out of file descriptors" in lines[0]
        assert cpu < 0.3, f"{cpu:.2f} s of CPU in 2 s: the accept loop spins"
    finally:
        for fd in pads:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fe.sock.settimeout(5)
    fe.init().start()
    fe.write_block(0, 1, pattern(1, 1))
    assert fe.read_block(0, 1) == pattern(1, 1)


def test_limits_are_configurable_and_default(tmp_path: Path) -> None:
    """`limits:` in a device entry sets each limit; omitted ones keep the
    defaults; a limit out of range is one config error naming the key."""
    from svqtui.config import load_config
    from svqtui.errors import ConfigError
    from svqtui.sources.vhost_user.settings import PLUGIN

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "devices:\n  - {name: a, listen: /tmp/a.sock, backend: /tmp/b.sock,"
        " limits: {rings: 8, fds: 100}}\n"
    )
    (device,) = load_config(str(cfg)).section(PLUGIN)
    assert device.limits == DeviceLimits(rings=8, regions=DeviceLimits().regions, fds=100)
    cfg.write_text(
        "devices:\n  - {name: a, listen: /tmp/a.sock, backend: /tmp/b.sock, limits: {rings: 300}}\n"
    )
    with pytest.raises(ConfigError, match=r"devices\[0\]\.limits\.rings"):
        load_config(str(cfg))


def test_kind_names_the_request_format_or_is_guessed(tmp_path: Path) -> None:
    """`kind:` in a device entry decides how its rings' requests are decoded
    (a device named "lab-a" with kind blk decodes virtio-blk requests); left out,
    the kind is guessed from the names; an unknown kind is a config error naming
    the key."""
    from svqtui.config import load_config
    from svqtui.errors import ConfigError
    from svqtui.sources.vhost_user.device import request_format
    from svqtui.sources.vhost_user.settings import PLUGIN
    from svqtui.virtio.requests import DeviceKind

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "devices:\n  - {name: a, listen: /tmp/a.sock, backend: /tmp/b.sock, kind: blk}\n"
        "  - {name: net0, listen: /tmp/c.sock, backend: /tmp/d.sock}\n"
    )
    explicit, guessed = load_config(str(cfg)).section(PLUGIN)
    assert (explicit.kind, guessed.kind) == ("blk", None)
    assert request_format(explicit) is DeviceKind.BLK
    assert request_format(guessed) is DeviceKind.NET
    cfg.write_text(
        "devices:\n  - {name: a, listen: /tmp/a.sock, backend: /tmp/b.sock, kind: scsi}\n"
    )
    with pytest.raises(ConfigError, match=r"devices\[0\]\.kind: expected one of blk, net, other"):
        load_config(str(cfg))
