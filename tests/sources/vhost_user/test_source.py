"""The VhostUserSource behind the Source interface: views, status lines,
listen failures, shadow at connect, action marshalling, stop, Runtime routing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from svqtui.config import Config
from svqtui.io_loop import IOLoopReentry
from svqtui.model import ShadowVia, SourceKind
from svqtui.runtime import Runtime
from svqtui.sources.errors import UnknownDevice
from svqtui.sources.qmp.settings import QMPConfig
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.sources.vhost_user.settings import VhostUserDevice
from tests.support.qsd import StorageDaemon
from tests.support.vhost_user_frontend import pattern
from tests.support.vhost_user_rig import Context, InterposerRig, open_fds, wait_fds
from tests.support.wait import wait_until


def test_devices_waiting_for_qemu_are_listed_with_their_socket(rig: InterposerRig) -> None:
    """Before QEMU connects, each device is one VM (label vhost-user) with one
    device keyed vu:NAME, waiting on its listen path, shadow via the engine."""
    vms = rig.source.collect(rig.context.engine.snapshot())
    assert [vm.key for vm in vms] == ["vu:blk0", "vu:blk1"]
    vm = vms[0]
    assert vm.label == "vhost-user" and vm.source is SourceKind.VHOST_USER and vm.connected
    (dev,) = vm.devices
    assert dev.key == "vu:blk0" and dev.name == "blk0" and not dev.connected
    assert dev.status == f"waiting for QEMU on {rig.devices[0].listen}"
    assert dev.socket_path == rig.devices[0].listen
    assert dev.shadow_via is ShadowVia.ENGINE and dev.real and dev.queues == ()
    assert "guest vector masking happens inside QEMU for vhost-user" in dev.notes
    status = rig.source.status()
    assert status.connected and status.message == "0 of 2 device(s) connected"
    rig.ready_frontend()
    wait_until(lambda: rig.source.status().message == "1 of 2 device(s) connected", what="status")


def test_a_device_that_cannot_listen_is_shown_and_the_others_work(
    context: Context, qsd: StorageDaemon, sock_dir: Path
) -> None:
    """A listen path in a missing directory gives that device a one-line
    status and an error event; the other device is served normally."""
    missing = str(sock_dir / "nowhere" / "vu.sock")
    good = str(sock_dir / "good.sock")
    source = VhostUserSource(
        [
            VhostUserDevice("bad", missing, str(qsd.sockets[0])),
            VhostUserDevice("good", good, str(qsd.sockets[1])),
        ]
    )
    source.start(context.ctx)
    rig = InterposerRig.around(source, context)
    try:
        bad = source.collect(context.engine.snapshot())[0].devices[0]
        assert bad.status == f"cannot listen on {missing}: No such file or directory"
        (error,) = context.events("vu:bad", "error")
        assert missing in error.text
        fe = rig.ready_frontend(1).start()
        fe.write_block(0, 1, pattern(1, 1))
        assert fe.read_block(1, 1) == pattern(1, 1)
    finally:
        rig.close()


def test_shadow_chosen_while_disconnected_applies_from_the_next_connect(
    rig: InterposerRig,
) -> None:
    """set_shadow with no QEMU connected is remembered: the next connection
    is shadowed from its first SET_VRING_CALL, and counts start at connect."""
    rig.source.set_shadow(rig.key(), True)
    assert "shadow on when QEMU connects" in rig.device().shadow_note
    fe = rig.ready_frontend().start()
    fe.write_block(0, 0, pattern(0, 1))
    dev = rig.device()
    assert dev.shadow and all(q.shadow for q in dev.queues)
    wait_until(lambda: rig.queue(0).kicks == fe.queues[0].kicks_sent, what="exact kick count")


def test_actions_are_refused_on_the_io_loop_and_for_unknown_devices(
    rig: InterposerRig,
) -> None:
    """Calling an action from the I/O loop itself (which would deadlock)
    and naming a device the source does not have are clear errors."""

    async def from_the_loop() -> None:
        rig.source.set_shadow(rig.key(), True)

    with pytest.raises(IOLoopReentry, match="from the I/O loop thread itself"):
        rig.context.loop.call(from_the_loop())
    with pytest.raises(UnknownDevice, match="no interposed device 'vu:nope'"):
        rig.source.set_shadow("vu:nope", True)
    assert rig.source.owns("vu:blk0") and not rig.source.owns("demo:x")


def test_events_name_the_device_and_queue(rig: InterposerRig) -> None:
    """Connect, call fd changes, shadow switches and disconnect are logged
    with the device key, and per-queue events with the queue index."""
    fe = rig.ready_frontend().start()
    rig.source.set_shadow(rig.key(), True)
    fe.close()
    rig.wait_connected(connected=False)
    texts = [(e.text, e.queue_index) for e in rig.context.events(rig.key())]
    assert any("QEMU connected" in t for t, _ in texts)
    assert {q for t, q in texts if "call fd ->" in t} == {0, 1}
    assert any("shadow mode on" in t for t, _ in texts)
    assert any("disconnected: QEMU (front-end) closed the connection" in t for t, _ in texts)


def test_stop_closes_everything_and_removes_the_socket_files(
    context: Context, qsd: StorageDaemon, sock_dir: Path
) -> None:
    """Stopping the source (svqtui exits) closes QEMU's connection, frees
    every fd and engine queue, and removes the listen sockets it created."""
    baseline = open_fds()
    rig = InterposerRig(context, sock_dir, qsd.sockets)
    fe = rig.ready_frontend().start()
    rig.source.set_shadow(rig.key(), True)
    rig.source.stop()
    assert fe.sock.recv(1) == b""
    assert not any(os.path.exists(d.listen) for d in rig.devices)
    assert context.engine.queue_count == 0
    rig.close()
    wait_fds(baseline, "every fd of the source to be closed")


def test_runtime_routes_actions_to_the_interposer(qsd: StorageDaemon, sock_dir: Path) -> None:
    """A Runtime built from a config with a vhost-user device builds this
    source, its snapshot shows the device, and shadow mode switched through
    the Runtime reaches the interposed connection."""
    listen = str(sock_dir / "rt.sock")
    config = Config(
        sections={
            "devices": (VhostUserDevice("rt", listen, str(qsd.sockets[0])),),
            "qmp": QMPConfig(discover=False),
        },
    )
    with Runtime(config) as runtime:
        assert [s.name for s in runtime.sources] == ["vhost-user"]
        source = runtime.sources[0]
        assert isinstance(source, VhostUserSource)
        rig = InterposerRig.around(source)
        try:
            fe = rig.ready_frontend().start()
            runtime.set_shadow("vu:rt", True)
            fe.write_block(0, 2, pattern(2, 3))
            snap = runtime.monitor.refresh()
            assert snap.devices["vu:rt"].shadow
            assert snap.rows["vu:rt#0"].view.kicks == fe.queues[0].kicks_sent
        finally:
            for fe in rig.frontends:
                fe.close()
