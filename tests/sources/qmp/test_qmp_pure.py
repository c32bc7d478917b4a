"""Pure parts of the QMP source: reading QMP replies, choosing queue commands,
shadow availability, and migration replies and events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.model import ShadowVia
from svqtui.sources.qmp.devices import (
    CMD_ELEMENT,
    CMD_STATUS,
    CMD_VHOST,
    DETAIL_EVERY,
    QMP_RING_NOTE,
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
    queue_from_element,
    queue_views,
    shadow_capability,
    socket_path_from_addr,
    socket_path_from_filename,
)
from svqtui.sources.qmp.migration import event_line, is_running, migration_view

KINDS = ["virtio-blk", "virtio-net", "vhost-user-blk", "vhost-user-fs", "vhost-vsock", "virtio-rng"]


def _dev(
    path: str, kind: str, queues: int, vhost: bool, failed: tuple[int, ...] = ()
) -> DeviceState:
    state = DeviceState(
        DeviceInfo(path=path, virtio_name=kind, ident=device_ident(path), kind=kind)
    )
    state.status = {"num-vqs": queues, "vhost-started": vhost}
    state.ring_failed_round = {q: 0 for q in failed if q < queues}
    return state


devices_strategy = st.lists(
    st.tuples(
        st.sampled_from(KINDS), st.integers(0, 40), st.booleans(), st.lists(st.integers(0, 40))
    ),
    max_size=6,
).map(
    lambda specs: [
        _dev(f"/machine/peripheral/d{i}/virtio-backend", kind, n, vhost, tuple(failed))
        for i, (kind, n, vhost, failed) in enumerate(specs)
    ]
)


@settings(max_examples=100, deadline=None)
@given(devices=devices_strategy, round_no=st.integers(1, 1000), budget=st.integers(1, 50))
def test_plan_respects_the_budget_and_never_asks_vhost_devices_for_queue_status(
    devices: list[DeviceState], round_no: int, budget: int
) -> None:
    """Whatever the devices, a round sends at most ``budget`` queue commands, and
    x-query-virtio-queue-status never goes to a device vhost runs or may run."""
    served: dict[QueueCmd, int] = {}
    by_path = {d.info.path: d for d in devices}
    for r in range(round_no, round_no + DETAIL_EVERY * 2):
        plan = plan_queue_commands(devices, r, budget, served)
        assert len(plan) <= budget
        for cmd in plan:
            dev = by_path[cmd.path]
            assert cmd.queue < dev.num_queues
            if cmd.command == CMD_STATUS:
                assert not dev.vhost_capable
            if cmd.command == CMD_VHOST:
                assert dev.vhost_started


@settings(max_examples=100, deadline=None)
@given(devices=devices_strategy, budget=st.integers(1, 20))
def test_every_due_ring_read_is_sent_within_a_bounded_number_of_rounds(
    devices: list[DeviceState], budget: int
) -> None:
    """Least-recently-sent first: every ring read that is due every round goes
    out within ceil(due / budget) rounds, however commands mix across rounds."""
    served: dict[QueueCmd, int] = {}
    every_round = {c for c in due_queue_commands(devices, 2) if c.command == CMD_ELEMENT}
    total_due = max(len(due_queue_commands(devices, 1)), 1)
    rounds = -(-total_due // budget) + DETAIL_EVERY
    sent: set[QueueCmd] = set()
    for r in range(1, rounds + 1):
        sent.update(plan_queue_commands(devices, r, budget, served))
    assert every_round <= sent


def test_plain_virtio_queues_are_polled_on_detail_rounds_only() -> None:
    """Plain virtio queue status is a detail (the first round after a connect,
    then every DETAIL_EVERY-th); ring
    reads of vhost-capable devices are every round, except rings that could not
    be read, which wait for a detail round."""
    blk = _dev("/machine/peripheral/blk0/virtio-backend", "virtio-blk", 2, False)
    vub = _dev("/machine/peripheral/vub0/virtio-backend", "vhost-user-blk", 2, True, failed=(1,))
    normal = due_queue_commands([blk, vub], 2)
    assert normal == [QueueCmd(vub.info.path, 0, CMD_ELEMENT)]
    assert due_queue_commands([blk, vub], 1 + DETAIL_EVERY) == due_queue_commands([blk, vub], 1)
    detail = due_queue_commands([blk, vub], 1)
    assert QueueCmd(blk.info.path, 1, CMD_STATUS) in detail
    assert QueueCmd(vub.info.path, 1, CMD_ELEMENT) in detail
    assert QueueCmd(vub.info.path, 0, CMD_VHOST) in detail


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
    """A queue shows the ring read when it has one, else an error saying why."""
    dev = _dev("/machine/peripheral/vub0/virtio-backend", "vhost-user-blk", 2, True)
    dev.rings[0] = {"avail": {"idx": 9}, "used": {"idx": 7}}
    dev.queue_errors[(1, CMD_ELEMENT)] = "ring not readable: Region caches not initialized"
    dev.queue_status[1] = {"shadow-avail-idx": 3, "used-idx": 3}  # must not be used: vhost
    q0, q1 = queue_views(dev)
    assert (q0.avail_idx, q0.used_idx, q0.in_flight, q0.error) == (9, 7, 2, None)
    assert (q1.avail_idx, q1.ring_source) == (None, None)
    assert q1.error == "ring not readable: Region caches not initialized"


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


def test_queue_element_gives_the_ring_flags_without_event_indices() -> None:
    """x-query-virtio-queue-element's avail/used flags become the queue's ring
    state (NO_INTERRUPT here), with EVENT_IDX from the guest's features and
    the event indices unknown, said in the state's note."""
    reply = {"avail": {"idx": 9, "flags": 1, "ring": 0}, "used": {"idx": 7, "flags": 0}}
    q = queue_from_element(2, reply, ["VIRTIO_RING_F_EVENT_IDX", "VIRTIO_F_VERSION_1"])
    assert q.ring is not None
    assert (q.ring.avail_flags, q.ring.used_flags, q.ring.no_interrupt) == (1, 0, True)
    assert (q.ring.avail_idx, q.ring.used_idx, q.ring.in_flight) == (9, 7, 2)
    assert q.ring.event_idx and not q.ring.indirect_desc
    assert q.ring.used_event is None and q.ring.error == QMP_RING_NOTE
    plain = queue_from_element(0, {"avail": {"idx": 1}, "used": {}})
    assert plain.ring is not None and not plain.ring.event_idx
    assert plain.ring.avail_flags is None and plain.ring.used_idx is None
