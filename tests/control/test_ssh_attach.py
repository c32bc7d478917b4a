"""Remote consoles over SSH, with real parts on loopback: a real OpenSSH sshd
(tests.support.sshd, a key made by the test), the system's ssh client started
by svqtui, and real ``python -m svqtui --headless`` processes (demo source,
real engine) whose control sockets sshd forwards. Nothing is mocked.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.config import load_config
from svqtui.console.app import SvqtuiApp
from svqtui.control.attach import RemoteRuntime
from svqtui.control.multi import MultiRemoteRuntime, host_key
from svqtui.control.ssh import SSH_OPTS_ENV, SshTarget, resolve_remote_path
from svqtui.model import SourceKind
from tests.support.console import until
from tests.support.headless import HeadlessProcess, svqtui
from tests.support.markers import SSH, needs
from tests.support.sshd import Sshd
from tests.support.wait import wait_until

BLK = "demo:db01/blk0"
NET = "demo:web01/net0"
SIZE = (160, 40)


@pytest.fixture
@needs(SSH)
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sshd]:
    """A real sshd on 127.0.0.1; svqtui's ssh (in this process) uses its key."""
    with Sshd(tmp_path / "sshd") as server:
        monkeypatch.setenv(SSH_OPTS_ENV, server.client_env()[SSH_OPTS_ENV])
        yield server


@pytest.fixture
@needs(SSH)
def second_sshd(tmp_path: Path, sshd: Sshd) -> Iterator[Sshd]:
    """Another sshd (another "host"), accepting the same client key."""
    with Sshd(tmp_path / "sshd2", client_key=sshd.client_key) as server:
        yield server


def _headless(directory: Path, seed: int = 7) -> HeadlessProcess:
    """A headless svqtui (not yet started) with its files in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    return HeadlessProcess(directory, seed=seed, refresh=0.2)


@pytest.fixture
def headless(tmp_path: Path) -> Iterator[HeadlessProcess]:
    with _headless(tmp_path / "a") as proc:
        yield proc


def _shadow(proc: HeadlessProcess, key: str) -> bool:
    with proc.client() as client:
        return client.snapshot().devices[key].shadow


def _ctl(home: Path, *args: str) -> tuple[int, str, str]:
    """``python -m svqtui ctl ARGS`` (its ssh options: the sshd fixture's env)."""
    done = svqtui("ctl", *args, home=home)
    return done.returncode, done.stdout, done.stderr


def test_ctl_host_over_ssh_reads_and_acts(
    tmp_path: Path, sshd: Sshd, headless: HeadlessProcess
) -> None:
    """`svqtui ctl --host ssh://...` reads the remote status and its action
    reaches the remote engine (checked on the headless socket itself)."""
    url = sshd.url(headless.socket_path)
    assert _shadow(headless, NET)
    code, out, err = _ctl(tmp_path, "--host", url, "shadow", NET, "off")
    assert code == 0, err
    assert "done" in out
    assert not _shadow(headless, NET)
    code, out, err = _ctl(tmp_path, "status", "--json", "--host", url)
    assert code == 0, err
    doc = json.loads(out)
    assert {vm["name"] for vm in doc["vms"]} >= {"db01", "web01"}


def test_ctl_host_with_a_key_sshd_refuses_is_one_line_with_ssh_s_reason(
    tmp_path: Path, sshd: Sshd, headless: HeadlessProcess
) -> None:
    """A transport that cannot start (a user sshd does not let in) fails with
    exit 1 and one line that carries ssh's own last stderr line."""
    url = f"ssh://nobody@127.0.0.1:{sshd.port}{headless.socket_path}"
    code, _, err = _ctl(tmp_path, "--host", url, "status")
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "ssh transport is down" in lines[0] and "Permission denied" in lines[0], err


def test_ctl_host_with_a_bad_url_is_a_usage_error(tmp_path: Path) -> None:
    """A malformed ssh:// URL is exit 2, one line, before any ssh runs."""
    done = svqtui("ctl", "--host", "ssh://h:99999/x", "status", home=tmp_path)
    assert done.returncode == 2
    assert "port" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_the_remote_default_socket_is_the_remote_user_s(sshd: Sshd) -> None:
    """Without a path, the remote socket is found as svqtui finds its own
    default there (this sshd runs sessions without XDG_RUNTIME_DIR)."""
    target = SshTarget.parse(sshd.url())
    path = resolve_remote_path(target, sshd.client_options(), 15)
    assert path == f"/tmp/svqtui-{os.getuid()}/svqtui/control.sock"


async def test_attached_console_over_ssh_drives_the_headless_engine(
    sshd: Sshd, headless: HeadlessProcess
) -> None:
    """The console attached through ssh:// shows the remote devices live and
    its shadow key toggles the remote device; one SSH session carries both the
    refresh and the action connections."""
    remote = RemoteRuntime(load_config(str(headless.config)), sshd.url(headless.socket_path))
    app = SvqtuiApp(remote)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await until(
                pilot,
                lambda: app.snapshot is not None and BLK in app.snapshot.devices,
                "the remote devices",
            )
            assert _shadow(headless, NET)
            await pilot.press("s")  # the first row's device: web01/net0
            await until(
                pilot,
                lambda: app.snapshot is not None and not app.snapshot.devices[NET].shadow,
                "shadow off seen over ssh",
            )
            await pilot.press("q")
            await pilot.pause(0.2)
        assert not _shadow(headless, NET)
        assert remote.endpoint.tunnel is not None and remote.endpoint.tunnel.starts == 1
    finally:
        remote.close()


def test_a_dead_ssh_transport_is_one_line_and_retried(
    sshd: Sshd, headless: HeadlessProcess
) -> None:
    """Killing svqtui's ssh process: within two refreshes ssh is started again
    and the view is live; a refresh that found the transport dead showed a
    stale view and said so in one error line naming the dead transport (the
    client's own reconnect may also heal it before any refresh notices)."""
    remote = RemoteRuntime(load_config(str(headless.config)), sshd.url(headless.socket_path))
    try:
        assert remote.monitor.refresh().engine.alive
        tunnel = remote.endpoint.tunnel
        assert tunnel is not None and tunnel.pid is not None
        os.kill(tunnel.pid, signal.SIGKILL)
        wait_until(lambda: not tunnel.alive, what="ssh gone")
        views = [remote.monitor.refresh(), remote.monitor.refresh()]
        assert views[-1].engine.alive and all(vm.connected for vm in views[-1].vms)
        errors = [e.text for e in remote.log.since(0)[1] if e.level == "error"]
        if not views[0].engine.alive:  # the first refresh saw it dead: stale and one line
            assert all(not vm.connected for vm in views[0].vms)
            assert len(errors) == 1 and "ssh transport is down" in errors[0], errors
        else:
            assert len(errors) <= 1, errors
        assert tunnel.starts == 2
    finally:
        remote.close()


def test_the_tunnel_s_ssh_is_gone_after_close(sshd: Sshd, headless: HeadlessProcess) -> None:
    """Closing the runtime stops its ssh process and removes its private socket."""
    remote = RemoteRuntime(load_config(str(headless.config)), sshd.url(headless.socket_path))
    remote.check()
    tunnel = remote.endpoint.tunnel
    assert tunnel is not None and tunnel.alive
    local = Path(tunnel.local_path)
    assert local.exists() and (local.stat().st_mode & 0o077) == 0
    remote.close()
    assert not tunnel.alive and not local.exists()


async def test_two_hosts_in_one_console_one_lost_the_other_goes_on(
    tmp_path: Path, sshd: Sshd, second_sshd: Sshd
) -> None:
    """Two headless svqtui behind two sshd: one console shows both hosts' VMs
    under host-prefixed names and keys, an action goes to its own host only,
    and killing one host's svqtui is one log line and a stale (disconnected)
    view of it while the other host's snapshots go on."""
    with (
        _headless(tmp_path / "a", seed=7) as a,
        _headless(tmp_path / "b", seed=8) as b,
    ):
        url_a, url_b = sshd.url(a.socket_path), second_sshd.url(b.socket_path)
        host_a, host_b = SshTarget.parse(url_a).label, SshTarget.parse(url_b).label
        remote = MultiRemoteRuntime(load_config(str(a.config)), [url_a, url_b])
        app = SvqtuiApp(remote)
        try:
            async with app.run_test(size=SIZE) as pilot:
                both = {host_key(host_a, BLK), host_key(host_b, BLK)}
                await until(
                    pilot,
                    lambda: app.snapshot is not None and both <= app.snapshot.devices.keys(),
                    "both hosts' devices",
                )
                assert app.snapshot is not None
                names = [vm.name for vm in app.snapshot.vms]
                assert f"{host_a}/db01" in names and f"{host_b}/db01" in names
                hosts = [n.split("/")[0] for n in names]
                assert hosts == sorted(hosts, key=[host_a, host_b].index), "grouped by host"
                tree_labels = [str(n.label) for n in app.device_tree.root.children]
                assert tree_labels[0].startswith(f"{host_a}/")

                remote.set_shadow(host_key(host_b, NET), False)
                assert not _shadow(b, NET) and _shadow(a, NET), "the action went to B only"

                a.signal(signal.SIGKILL)

                def a_stale_b_live() -> bool:
                    snap = app.snapshot
                    if snap is None:
                        return False
                    vms = {vm.name: vm for vm in snap.vms}
                    return not vms[f"{host_a}/db01"].connected and vms[f"{host_b}/db01"].connected

                await until(pilot, a_stale_b_live, "host A stale, host B live")
                assert app.snapshot is not None
                seen = app.snapshot.taken_at
                await until(
                    pilot,
                    lambda: app.snapshot is not None and app.snapshot.taken_at > seen + 0.3,
                    "host B's snapshots go on",
                )
                await pilot.pause(1.0)  # a few more failed refreshes of A
                errors = [e.text for e in remote.log.since(0)[1] if e.level == "error"]
                assert len(errors) == 1 and errors[0].startswith(f"{host_a}: attach:"), errors
                down = [s for s in app.snapshot.sources if not s.connected]
                assert [s.kind for s in down] == [SourceKind.REMOTE]
                await pilot.press("q")
        finally:
            remote.close()


def test_round_trip_of_an_action_over_ssh(
    sshd: Sshd, headless: HeadlessProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """An action over SSH completes (and reports its round trip for the notes)."""
    remote = RemoteRuntime(load_config(str(headless.config)), sshd.url(headless.socket_path))
    try:
        remote.check()
        times = []
        for i in range(20):
            t0 = time.perf_counter()
            remote.set_shadow(BLK, i % 2 == 1)
            times.append(time.perf_counter() - t0)
        assert _shadow(headless, BLK)
        times.sort()
        with capsys.disabled():
            print(f"\naction round trip over ssh: median {times[10] * 1000:.1f} ms")
    finally:
        remote.close()
