"""svqtui.control.multi: several attached hosts as one console target.

The prefixing and merging are checked on model data; routing and losing a
host on two real in-process runtimes serving real control sockets (local
paths: the SSH transport under it is test_ssh_attach.py's).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from svqtui.config import Config
from svqtui.control.multi import MultiRemoteRuntime, host_key, host_snapshot, merge
from svqtui.engine import Link
from svqtui.model import HOST_SEP, MaskState, SourceKind, SourceStatus
from svqtui.sources.errors import UnknownDevice
from tests.support.console import synthetic_snapshot
from tests.support.control import demo_runtime, make_config, serve

BLK = "demo:db01/blk0"


def test_host_snapshot_prefixes_every_key_consistently() -> None:
    """Every VM, device and row key gets the host; a row's key is still its
    device key + queue, and VM names carry the host."""
    snap = host_snapshot(synthetic_snapshot(4, 3), "hv1")
    assert all(k.startswith(f"hv1{HOST_SEP}") for k in snap.rows)
    assert all(k == row.key for k, row in snap.rows.items())
    assert {row.device_key for row in snap.rows.values()} == set(snap.devices)
    assert {d.key for vm in snap.vms for d in vm.devices} == set(snap.devices)
    assert all(vm.name.startswith("hv1/") and vm.key.startswith("hv1|") for vm in snap.vms)
    assert all(row.vm_name.startswith("hv1/") for row in snap.rows.values())


def test_merge_keeps_hosts_apart_and_in_order() -> None:
    """The same device keys on two hosts stay two devices; VMs are grouped by
    host in the given order; queue counts add up."""
    a = host_snapshot(synthetic_snapshot(2, 4), "a")
    b = host_snapshot(synthetic_snapshot(2, 4), "b")
    merged = merge([a, b], 1.0)
    assert len(merged.rows) == 16 and len(merged.devices) == 4
    assert [vm.name.split("/")[0] for vm in merged.vms] == ["a", "b"]
    assert merged.engine.alive


def test_a_lost_host_does_not_make_the_engine_look_dead() -> None:
    """A host whose attach source is down counts as lost, not as a dead engine;
    a reachable host with a dead engine does make the engine line dead."""
    live = host_snapshot(synthetic_snapshot(2, 1), "a")
    lost_src = SourceStatus("attach x", SourceKind.REMOTE, False, "lost")
    lost = dataclasses.replace(
        host_snapshot(synthetic_snapshot(2, 1), "b"),
        engine=dataclasses.replace(live.engine, alive=False),
        sources=(lost_src,),
    )
    assert merge([live, lost], 1.0).engine.alive
    dead = dataclasses.replace(lost, sources=live.sources)
    assert not merge([live, dead], 1.0).engine.alive
    assert not merge([lost], 1.0).engine.alive


def _config(tmp_path: Path) -> Config:
    return make_config(tmp_path / "console.sock")


def test_actions_go_to_their_host(tmp_path: Path) -> None:
    """An action on HOST|key reaches that host's engine as key, and only it;
    reset without a device resets every host; an unknown host is UnknownDevice."""
    with (
        serve(demo_runtime(tmp_path / "a.sock")) as a,
        serve(demo_runtime(tmp_path / "b.sock")) as b,
    ):
        multi = MultiRemoteRuntime(_config(tmp_path), [a.path, b.path])
        try:
            multi.check()
            snap = multi.monitor.refresh_soon()
            assert snap is not None
            key_b = host_key(b.path, BLK)
            assert key_b in snap.devices and host_key(a.path, BLK) in snap.devices
            multi.set_shadow(key_b, False)
            with a.client() as ca, b.client() as cb:
                assert ca.snapshot().devices[BLK].shadow
                assert not cb.snapshot().devices[BLK].shadow
            multi.set_shadow(key_b, True)
            multi.inject(key_b, 0, Link.KICK)
            multi.set_masked(key_b, 0, True)
            with b.client() as cb:
                assert cb.snapshot().devices[BLK].queues[0].mask is not MaskState.UNMASKED
            multi.reset()
            with pytest.raises(UnknownDevice):
                multi.set_shadow(host_key("elsewhere", BLK), True)
        finally:
            multi.close()


def test_a_lost_host_is_one_line_and_a_stale_view(tmp_path: Path) -> None:
    """One host going away: its VMs stay, shown disconnected, the other host's
    are live, and the loss is one error line naming the host, however many
    refreshes fail."""
    with serve(demo_runtime(tmp_path / "a.sock")) as a:
        b_cm = serve(demo_runtime(tmp_path / "b.sock"))
        b = b_cm.__enter__()
        multi = MultiRemoteRuntime(_config(tmp_path), [a.path, b.path])
        try:
            multi.check()
            assert multi.monitor.refresh_soon() is not None
            b_cm.__exit__(None, None, None)
            for _ in range(3):
                snap = multi.monitor.refresh_soon()
            assert snap is not None
            by_host = {vm.name.rsplit("/", 1)[0]: vm.connected for vm in snap.vms}
            assert by_host == {a.path: True, b.path: False}
            errors = [e.text for e in multi.log.since(0)[1] if e.level == "error"]
            assert len(errors) == 1 and errors[0].startswith(f"{b.path}: attach:"), errors
        finally:
            multi.close()


def test_events_of_each_host_are_copied_with_their_host(tmp_path: Path) -> None:
    """Each host's log events reach the console's log, text and device key
    carrying the host."""
    with (
        serve(demo_runtime(tmp_path / "a.sock")) as a,
        serve(demo_runtime(tmp_path / "b.sock")) as b,
    ):
        multi = MultiRemoteRuntime(_config(tmp_path), [a.path, b.path])
        try:
            b.runtime.log.info("only on b", BLK)
            multi.monitor.refresh_soon()
            events = [e for e in multi.log.since(0)[1] if "only on b" in e.text]
            assert [(e.text, e.device_key) for e in events] == [
                (f"{b.path}: only on b", host_key(b.path, BLK))
            ]
        finally:
            multi.close()


def test_one_target_is_not_a_multi(tmp_path: Path) -> None:
    """MultiRemoteRuntime is for two targets or more (one is RemoteRuntime)."""
    with pytest.raises(ValueError):
        MultiRemoteRuntime(_config(tmp_path), ["/one.sock"])
