"""The vhost-running path and the RFC shadow toggle, against a scripted QEMU.

Mocked on purpose: vhost only starts with a booted guest driver (the booted
guest tests come from the lab), and x-vhost-enable-shadow-vq was never merged
into QEMU, so no real QEMU here offers it. The scripted replies follow QEMU
7.2's QAPI schema (qapi/virtio.json).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from svqtui.eventlog import EventLog
from svqtui.model import ShadowVia, VMView
from svqtui.sources.errors import ActionUnsupported
from svqtui.sources.qmp import Timing
from svqtui.sources.qmp.devices import (
    CMD_ELEMENT,
    CMD_STATUS,
    CMD_VHOST,
    NOTE_RING_VHOST,
    SHADOW_COMMAND,
    SOURCE_STATUS,
)
from tests.support.fake_qmp import BASE_COMMANDS, FakeQMP
from tests.support.qmp import TEST_TIMING, WatchFn, device, log_lines, vm
from tests.support.wait import wait_until

VIRTIO_COMMANDS = (
    "x-query-virtio",
    "x-query-virtio-status",
    CMD_STATUS,
    CMD_ELEMENT,
    CMD_VHOST,
    "qom-get",
    "query-chardev",
)


def _backend(ident: str) -> str:
    return f"/machine/peripheral/{ident}/virtio-backend"


class ScriptedQemu:
    """Devices: ident -> (virtio name, QOM type, queues, vhost started)."""

    def __init__(self, devices: Mapping[str, tuple[str, str, int, bool]]) -> None:
        self.devices = dict(devices)

    def _ident(self, path: str) -> str:
        return path.split("/")[3] if path.startswith("/machine/peripheral/") else ""

    def replies(self) -> dict[str, Any]:
        return {
            "x-query-virtio": [
                {"path": _backend(i), "name": d[0]} for i, d in self.devices.items()
            ],
            "qom-get": self.qom_get,
            "query-chardev": [],
            "x-query-virtio-status": self.status,
            CMD_ELEMENT: lambda a: {
                "index": 0,
                "name": "x",
                "descs": [],
                "avail": {"idx": 700 + a["queue"], "flags": 0, "ring": 0},
                "used": {"idx": 500, "flags": 0},
            },
            CMD_STATUS: lambda a: {
                "queue-index": a["queue"],
                "last-avail-idx": 3,
                "shadow-avail-idx": 4,
                "used-idx": 3,
                "inuse": 1,
            },
            CMD_VHOST: lambda a: {"num": 128, "kick": 0, "call": 0, "desc-phys": 4096},
            SHADOW_COMMAND: {},
        }

    def qom_get(self, args: Mapping[str, Any]) -> Any:
        path, prop = args["path"], args["property"]
        if path.startswith("/chardevs/") and prop == "addr":
            return {"type": "unix", "path": f"/run/{path.split('/')[-1]}.sock"}
        ident = self._ident(path)
        if prop == "type":
            return self.devices[ident][1]
        if prop == "chardev":
            return f"{ident}-chr"
        return None

    def status(self, args: Mapping[str, Any]) -> dict[str, Any]:
        vname, _, queues, vhost = self.devices[self._ident(args["path"])]
        reply: dict[str, Any] = {
            "name": vname,
            "num-vqs": queues,
            "started": True,
            "vhost-started": vhost,
            "broken": False,
            "guest-features": {"transports": ["VIRTIO_F_VERSION_1: v1"], "dev-features": []},
        }
        if vhost:
            reply["vhost-dev"] = {
                "nvqs": queues,
                "vq-index": 0,
                "features": {"transports": [], "dev-features": []},
                "acked-features": {
                    "transports": ["VIRTIO_F_VERSION_1: Device compliant for v1 spec"],
                    "dev-features": ["VIRTIO_BLK_F_MQ: Multiqueue supported"],
                },
                "protocol-features": {"protocols": ["VHOST_USER_PROTOCOL_F_MQ: Multiqueue"]},
                "log-enabled": True,
                "max-queues": queues,
            }
        return reply


@pytest.fixture
def fakes() -> list[FakeQMP]:
    servers: list[FakeQMP] = []
    yield servers  # type: ignore[misc]
    for server in servers:
        server.close()


def _start(
    tmp_path: Path,
    fakes: list[FakeQMP],
    devices: Mapping[str, tuple[str, str, int, bool]],
    shadow: bool,
) -> FakeQMP:
    commands = BASE_COMMANDS + VIRTIO_COMMANDS + ((SHADOW_COMMAND,) if shadow else ())
    fake = FakeQMP(
        tmp_path / "fake.qmp",
        "qemu",
        version=(7, 2, 0),
        commands=commands,
        replies=ScriptedQemu(devices).replies(),
    )
    fakes.append(fake)
    return fake


def _polled(source: Any, idents: set[str]) -> VMView | None:
    row = vm(source, "fake")
    if row is None or not row.connected or {d.name for d in row.devices} != idents:
        return None
    plain = [d for d in row.devices if not d.kind.startswith("vhost-")]
    if any(q.ring_source is None for d in plain for q in d.queues):
        return None
    return row


def test_running_vhost_device_shows_vhost_dev_and_is_never_sent_a_ring_command(
    tmp_path: Path, qmp_watch: WatchFn, fakes: list[FakeQMP]
) -> None:
    """A device whose vhost runs shows the vhost-dev features, protocol
    features and dirty-log state, no ring indices (a note says why and where
    to get them), and never receives x-query-virtio-queue-status (in QEMU 7.2
    it sends GET_VRING_BASE, stopping a vhost-user ring) nor
    x-query-virtio-queue-element (it walks a long-freed chain and can mark the
    device broken), though this QEMU offers both; a plain device shows QEMU's
    own indices from x-query-virtio-queue-status."""
    fake = _start(
        tmp_path,
        fakes,
        {
            "vub0": ("virtio-blk", "vhost-user-blk", 2, True),
            "rng0": ("virtio-rng", "virtio-rng-device", 1, False),
        },
        shadow=False,
    )
    source = qmp_watch(fake.path)
    row = wait_until(lambda: _polled(source, {"vub0", "rng0"}), what="both devices polled")
    vub, rng = device(row, "vub0"), device(row, "rng0")
    assert [(q.avail_idx, q.used_idx, q.ring_source) for q in vub.queues] == [
        (None, None, None)
    ] * 2
    assert NOTE_RING_VHOST in vub.notes
    assert vub.vhost_started is True and vub.log_enabled is True
    assert vub.features == "VIRTIO_F_VERSION_1 VIRTIO_BLK_F_MQ"
    assert vub.protocol_features == "VHOST_USER_PROTOCOL_F_MQ"
    assert vub.socket_path == "/run/vub0-chr.sock" and vub.status == "vhost started"
    assert [(q.avail_idx, q.used_idx, q.ring_source) for q in rng.queues] == [(4, 3, SOURCE_STATUS)]
    assert rng.vhost_started is False and rng.log_enabled is None
    wait_until(lambda: fake.commands_received(CMD_VHOST), what="a vhost ring check")
    to_vub = [m for m in fake.commands_received(CMD_STATUS) if "vub0" in m["arguments"]["path"]]
    assert to_vub == []
    assert fake.commands_received(CMD_ELEMENT) == []
    assert all("vub0" in m["arguments"]["path"] for m in fake.commands_received(CMD_VHOST))


def test_shadow_through_qmp_where_qemu_offers_the_rfc_command(
    tmp_path: Path, qmp_watch: WatchFn, fakes: list[FakeQMP], event_log: EventLog
) -> None:
    """With x-vhost-enable-shadow-vq in query-commands, a vhost device's shadow
    toggle goes through it (virtio name and enable), the row shows shadow on,
    and a plain virtio device refuses with "not a vhost device"."""
    fake = _start(
        tmp_path,
        fakes,
        {
            "vub0": ("virtio-blk", "vhost-user-blk", 1, True),
            "rng0": ("virtio-rng", "virtio-rng-device", 1, False),
        },
        shadow=True,
    )
    source = qmp_watch(fake.path)
    row = wait_until(lambda: _polled(source, {"vub0", "rng0"}), what="both devices polled")
    vub = device(row, "vub0")
    assert vub.shadow_via is ShadowVia.QMP and SHADOW_COMMAND in vub.shadow_note
    assert not vub.shadow

    source.set_shadow(vub.key, True)
    assert fake.commands_received(SHADOW_COMMAND)[-1]["arguments"] == {
        "name": "virtio-blk",
        "enable": True,
    }
    assert device(vm(source, "fake"), "vub0").shadow  # type: ignore[arg-type]
    source.set_shadow(vub.key, False)
    assert fake.commands_received(SHADOW_COMMAND)[-1]["arguments"]["enable"] is False
    assert any("shadow on for vub0" in line for line in log_lines(event_log))

    rng = device(row, "rng0")
    assert rng.shadow_via is ShadowVia.NONE
    with pytest.raises(ActionUnsupported, match="not a vhost device"):
        source.set_shadow(rng.key, True)
    assert len(fake.commands_received(SHADOW_COMMAND)) == 2


def test_rfc_shadow_command_refused_when_the_virtio_name_is_ambiguous(
    tmp_path: Path, qmp_watch: WatchFn, fakes: list[FakeQMP]
) -> None:
    """x-vhost-enable-shadow-vq picks a device by virtio name; with two vhost
    devices sharing it, svqtui refuses rather than toggle the wrong one."""
    fake = _start(
        tmp_path,
        fakes,
        {
            "vub0": ("virtio-blk", "vhost-user-blk", 1, True),
            "vub1": ("virtio-blk", "vhost-user-blk", 1, True),
        },
        shadow=True,
    )
    source = qmp_watch(fake.path)
    row = wait_until(lambda: _polled(source, {"vub0", "vub1"}), what="both devices polled")
    vub1 = device(row, "vub1")
    assert vub1.shadow_via is ShadowVia.NONE and "share" in vub1.shadow_note
    with pytest.raises(ActionUnsupported, match="virtio name 'virtio-blk'"):
        source.set_shadow(vub1.key, True)
    assert fake.commands_received(SHADOW_COMMAND) == []


CAP = 50.0


def test_many_devices_and_queues_stay_within_the_command_budget(
    tmp_path: Path, qmp_watch: WatchFn, fakes: list[FakeQMP]
) -> None:
    """Ten eight-queue devices polled every 50 ms would need about 360 commands
    a second: the VM is sent no more than its cap (Timing.max_commands_per_s),
    and still every queue's status gets read (the rotation reaches all)."""
    devices = {f"blk{i}": ("virtio-blk", "virtio-blk-device", 8, False) for i in range(10)}
    fake = _start(tmp_path, fakes, devices, shadow=False)
    timing = Timing(
        poll_s=0.05,
        connect_timeout_s=TEST_TIMING.connect_timeout_s,
        command_timeout_s=TEST_TIMING.command_timeout_s,
        max_commands_per_s=CAP,
    )
    source = qmp_watch(fake.path, timing=timing)
    wait_until(lambda: _polled(source, set(devices)), what="every queue's ring read", timeout=60)
    start_count, start = len(fake.received), time.monotonic()
    time.sleep(1.5)
    rate = (len(fake.received) - start_count) / (time.monotonic() - start)
    # An upper bound: a slow machine only lowers the rate.
    assert rate <= CAP * 1.25, rate
