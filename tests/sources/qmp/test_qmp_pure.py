"""Pure parts of the QMP source: reading QMP replies, choosing queue commands,
shadow availability, and migration replies and events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.model import ShadowVia
from svqtui.sources.qmp.devices import (
    CMD_STATUS,
    CMD_VHOST,
    DETAIL_EVERY,
    NEVER_TO_VHOST,
    SHADOW_NOTE_KERNEL,
    SHADOW_NOTE_PLAIN,
    SHADOW_NOTE_VHOST_USER,
    DeviceInfo,
    DeviceState,
    QueueCmd,
    device_ident,
    device_kind,
    due_queue_commands,
    feature_names,
    plan_queue_commands,
    queue_views,
    shadow_capability,
    socket_path_from_addr,
    socket_path_from_filename,
)
from svqtui.sources.qmp.migration import event_line, is_running, migration_view

KINDS = ["virtio-blk", "virtio-net", "vhost-user-blk", "vhost-user-fs", "vhost-vsock", "virtio-rng"]


def _dev(path: str, kind: str, queues: int, vhost: bool) -> DeviceState:
    state = DeviceState(
        DeviceInfo(path=path, virtio_name=kind, ident=device_ident(path), kind=kind)
    )
    state.status = {"num-vqs": queues, "vhost-started": vhost}
    return state


devices_strategy = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 40), st.booleans()),
    max_size=6,
).map(
    lambda specs: [
        _dev(f"/machine/peripheral/d{i}/virtio-backend", kind, n, vhost)
        for i, (kind, n, vhost) in enumerate(specs)
    ]
)


@settings(max_examples=100, deadline=None)
@given(devices=devices_strategy, round_no=st.integers(1, 1000), budget=st.integers(1, 50))
def test_plan_respects_the_budget_and_never_sends_a_ring_command_to_vhost_devices(
    devices: list[DeviceState], round_no: int, budget: int
) -> None:
    """Whatever the devices, a round sends at most ``budget`` queue commands;
    neither x-query-virtio-queue-status (stops a vhost ring) nor
    x-query-virtio-queue-element (walks a freed chain and can mark the device
    broken) ever goes to a device vhost runs or may run."""
    served: dict[QueueCmd, int] = {}
    by_path = {d.info.path: d for d in devices}
    for r in range(round_no, round_no + DETAIL_EVERY * 2):
        plan = plan_queue_commands(devices, r, budget, served)
        assert len(plan) <= budget
        for cmd in plan:
            dev = by_path[cmd.path]
            assert cmd.queue < dev.num_queues
            if dev.vhost_capable:
                assert cmd.command not in NEVER_TO_VHOST, cmd
            if cmd.command == CMD_VHOST:
                assert dev.vhost_started


@settings(max_examples=100, deadline=None)
@given(devices=devices_strategy, budget=st.integers(1, 20))
def test_every_due_ring_read_is_sent_within_a_bounded_number_of_rounds(
    devices: list[DeviceState], budget: int
) -> None:
    """Least-recently-sent first: every command due on detail rounds goes out
    within ceil(due / budget) detail rounds, however commands mix."""
    served: dict[QueueCmd, int] = {}
    detail_due = set(due_queue_commands(devices, 1))
    rounds = -(-max(len(detail_due), 1) // budget) * DETAIL_EVERY
    sent: set[QueueCmd] = set()
    for r in range(1, rounds + 1):
        sent.update(plan_queue_commands(devices, r, budget, served))
    assert detail_due <= sent


def test_queue_commands_go_out_on_detail_rounds_only() -> None:
    """Plain virtio queue status and vhost ring checks are details (the first
    round after a connect, then every DETAIL_EVERY-th); other rounds send no
    queue command, and a vhost device gets only the vhost ring check."""
    blk = _dev("/machine/peripheral/blk0/virtio-backend", "virtio-blk", 2, False)
    vub = _dev("/machine/peripheral/vub0/virtio-backend", "vhost-user-blk", 2, True)
    assert due_queue_commands([blk, vub], 2) == []
    assert due_queue_commands([blk, vub], 1 + DETAIL_EVERY) == due_queue_commands([blk, vub], 1)
    assert due_queue_commands([blk, vub], 1) == [
        QueueCmd(blk.info.path, 0, CMD_STATUS),
        QueueCmd(blk.info.path, 1, CMD_STATUS),
        QueueCmd(vub.info.path, 0, CMD_VHOST),
        QueueCmd(vub.info.path, 1, CMD_VHOST),
    ]


@pytest.mark.parametrize(
    ("path", "ident"),
    [
        ("/machine/peripheral/vub0/virtio-backend", "vub0"),
        ("/machine/peripheral-anon/device[3]/virtio-backend", "device[3]"),
        ("/machine/unattached/device[12]", "device[12]"),
    ],
)
def test_device_ident_is_the_operators_id(path: str, ident: str) -> None:
    """The device name is the -device id, or QEMU's anonymous device name."""
    assert device_ident(path) == ident


def test_device_kind_comes_from_the_qom_type() -> None:
    """The QOM type names the kind (vhost-user-blk vs virtio-blk share a virtio name)."""
    assert device_kind("vhost-user-blk", "virtio-blk") == "vhost-user-blk"
    assert device_kind("virtio-net-device", "virtio-net") == "virtio-net"
    assert device_kind(None, "virtio-blk") == "virtio-blk"


@pytest.mark.parametrize(
    ("filename", "path"),
    [
        ("unix:/run/vub.sock,server=on", "/run/vub.sock"),
        ("disconnected:unix:/run/vub.sock,server=on", "/run/vub.sock"),
        ("unix:/run/a.sock", "/run/a.sock"),
        ("unix:", None),  # a connected client socket: QEMU prints only the local end
        ("tcp:127.0.0.1:4444,server=on", None),
        ("pty:/dev/pts/3", None),
    ],
)
def test_socket_path_from_query_chardev_filename(filename: str, path: str | None) -> None:
    """query-chardev's filename gives the unix path in its server and disconnected forms."""
    assert socket_path_from_filename(filename) == path


def test_socket_path_from_qom_addr() -> None:
    """The chardev's QOM addr (SocketAddress) gives the path, flat or nested."""
    assert socket_path_from_addr({"type": "unix", "path": "/a", "abstract": False}) == "/a"
    assert socket_path_from_addr({"type": "unix", "data": {"path": "/b"}}) == "/b"
    assert socket_path_from_addr({"type": "inet", "host": "h", "port": "1"}) is None
    assert socket_path_from_addr(None) is None


def test_feature_names_are_short() -> None:
    """Feature lists keep the names QEMU decoded, plus unknown bits in hex."""
    features = {
        "transports": ["VIRTIO_F_VERSION_1: Device compliant for v1 spec (legacy)"],
        "dev-features": ["VIRTIO_BLK_F_MQ: Multiqueue supported"],
        "unknown-dev-features": 1 << 40,
    }
    assert feature_names(features) == [
        "VIRTIO_F_VERSION_1",
        "VIRTIO_BLK_F_MQ",
        "unknown:0x10000000000",
    ]
    assert feature_names({"protocols": ["VHOST_USER_PROTOCOL_F_MQ: Multiqueue"]}) == [
        "VHOST_USER_PROTOCOL_F_MQ"
    ]


def test_queue_views_keep_errors_and_sources_apart() -> None:
    """A plain device's queue shows QEMU's indices when read, else the error
    saying why; a vhost device's queue shows no indices (QEMU's state is not
    the ring's while vhost runs it) and its vhost ring check's error."""
    blk = _dev("/machine/peripheral/blk0/virtio-backend", "virtio-blk", 2, False)
    blk.queue_status[0] = {"shadow-avail-idx": 9, "used-idx": 7}
    blk.queue_errors[(1, CMD_STATUS)] = "queue status: Invalid virtqueue number 1"
    q0, q1 = queue_views(blk)
    assert (q0.avail_idx, q0.used_idx, q0.in_flight, q0.error) == (9, 7, 2, None)
    assert (q1.avail_idx, q1.ring_source) == (None, None)
    assert q1.error == "queue status: Invalid virtqueue number 1"
    vub = _dev("/machine/peripheral/vub0/virtio-backend", "vhost-user-blk", 1, True)
    vub.queue_status[0] = {"shadow-avail-idx": 3, "used-idx": 3}  # must not be used: vhost
    vub.queue_errors[(0, CMD_VHOST)] = "vhost ring: not set up"
    (v0,) = queue_views(vub)
    assert (v0.avail_idx, v0.ring_source, v0.error) == (None, None, "vhost ring: not set up")


@pytest.mark.parametrize(
    ("kind", "socket", "vhost", "offered", "via", "note"),
    [
        ("vhost-user-blk", "/s", False, False, ShadowVia.NONE, SHADOW_NOTE_VHOST_USER),
        ("virtio-net", "/s", True, False, ShadowVia.NONE, SHADOW_NOTE_VHOST_USER),
        ("vhost-vsock", None, True, False, ShadowVia.NONE, SHADOW_NOTE_KERNEL),
        ("virtio-net", None, True, False, ShadowVia.NONE, SHADOW_NOTE_KERNEL),
        ("virtio-blk", None, False, True, ShadowVia.NONE, SHADOW_NOTE_PLAIN),
        ("vhost-user-blk", "/s", True, True, ShadowVia.QMP, "QEMU offers x-vhost-enable-shadow-vq"),
    ],
)
def test_shadow_capability_says_which_path_applies(
    kind: str, socket: str | None, vhost: bool, offered: bool, via: ShadowVia, note: str
) -> None:
    """Shadow via QMP only where QEMU offers the RFC command on a vhost device;
    otherwise the note says why not and what to do."""
    dev = DeviceState(DeviceInfo("/p", "virtio-x", "d", kind, socket_path=socket))
    dev.status = {"vhost-started": vhost, "num-vqs": 1}
    assert shadow_capability(dev, offered, name_shared=False) == (via, note)


def test_migration_view_reads_query_migrate() -> None:
    """query-migrate becomes status, passes, bytes and downtime; no migration is None."""
    active = migration_view(
        {
            "status": "active",
            "expected-downtime": 300,
            "total-time": 1200,
            "ram": {"transferred": 1000, "remaining": 500, "total": 4000, "dirty-sync-count": 2},
        }
    )
    assert active is not None and is_running(active)
    assert (active.passes, active.transferred, active.remaining, active.total) == (
        2,
        1000,
        500,
        4000,
    )
    assert active.downtime_ms == 300 and active.total_time_ms == 1200
    done = migration_view({"status": "completed", "downtime": 14, "ram": {}}, passes=3)
    assert done is not None and not is_running(done)
    assert (done.downtime_ms, done.passes) == (14, 3)
    assert migration_view({}) is None and migration_view({"status": "none"}) is None
    assert migration_view("garbage") is None


def test_event_lines() -> None:
    """Each subscribed event becomes one log line; a failed migration is an error."""
    assert event_line({"event": "MIGRATION", "data": {"status": "failed"}}) == (
        "error",
        "migration failed",
    )
    assert event_line({"event": "MIGRATION_PASS", "data": {"pass": 3}}) == (
        "info",
        "migration pass 3",
    )
    assert event_line({"event": "DEVICE_DELETED", "data": {"device": "vub0", "path": "/x"}}) == (
        "info",
        "device vub0 deleted",
    )
    assert event_line({"event": "SHUTDOWN", "data": {"reason": "host-qmp-quit"}}) == (
        "warning",
        "QEMU is shutting down (host-qmp-quit)",
    )
    assert event_line({"event": "RTC_CHANGE", "data": {}}) is None
