"""Reloading a running ``svqtui --headless`` (SIGHUP and ``svqtui ctl reload``)
with real qemu-storage-daemon back-ends and the scripted QEMU-like front-end:
devices added listen, removed ones are drained (shadow off) and closed
cleanly, untouched ones keep forwarding on the same connection, and an
invalid file is refused with one line while everything keeps running."""

from __future__ import annotations

import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.headless import HeadlessProcess, svqtui
from tests.support.markers import QEMU, needs
from tests.support.qsd import StorageDaemon, vhost_user_blk_daemon
from tests.support.vhost_user_frontend import VhostUserFrontend, pattern
from tests.support.vhost_user_headless import listen_path, write_vhost_config
from tests.support.wait import wait_until


@pytest.fixture
@needs(QEMU)
def qsd(sock_dir: Path) -> Iterator[StorageDaemon]:
    """qemu-storage-daemon with two vhost-user-blk exports (qsd0.sock, qsd1.sock)."""
    daemon = vhost_user_blk_daemon(sock_dir, exports=2)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.stop()


def _io(fe: VhostUserFrontend, generation: int, blocks: int = 8) -> None:
    """Writes on queue 0 read back on queue 1 (verified)."""
    for block in range(blocks):
        fe.write_block(0, block, pattern(block, generation))
    for block in range(blocks):
        assert fe.read_block(1, block) == pattern(block, generation)


def _error_lines(proc: HeadlessProcess) -> list[str]:
    """The log lines at level error (format: time, level, text)."""
    return [line for line in proc.stderr.splitlines() if line.split()[1:2] == ["error"]]


def test_sighup_adds_a_device_and_leaves_the_others_alone(
    sock_dir: Path, qsd: StorageDaemon
) -> None:
    """A device added to the file and SIGHUP: it listens and forwards verified
    I/O; the device already connected (shadowed) keeps its connection, its
    shadow mode and its counters, and its I/O goes on during and after."""
    cfg = write_vhost_config(sock_dir, [("blk0", 0, True)])
    with HeadlessProcess(sock_dir, config=cfg) as proc:
        assert not listen_path(sock_dir, 1).exists()
        with VhostUserFrontend(listen_path(sock_dir, 0)) as fe0:
            fe0.connect().init().start()
            _io(fe0, 1)
            kicks_before = wait_until(lambda: _kicks(proc, "vu:blk0"), 5, what="counted kicks")
            write_vhost_config(sock_dir, [("blk0", 0, True), ("blk1", 1, False)])
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGHUP)
            wait_until(lambda: "blk1: added, listening on" in proc.stderr, 10, what="the reload")
            assert listen_path(sock_dir, 1).exists()
            with VhostUserFrontend(listen_path(sock_dir, 1)) as fe1:
                fe1.connect().init().start()
                _io(fe1, 2)
            _io(fe0, 3)  # the same connection, never re-initialised
            with proc.client() as c:
                dev = c.snapshot().devices["vu:blk0"]
            assert dev.connected and dev.shadow
            wait_until(
                lambda: _kicks(proc, "vu:blk0") >= kicks_before + 16, 5, what="counters go on"
            )
        assert _error_lines(proc) == []
        assert proc.stderr.count("QEMU connected") == 2  # blk0 once, blk1 once


def _kicks(proc: HeadlessProcess, key: str) -> int:
    with proc.client() as c:
        snap = c.snapshot()
    return sum(q.kicks or 0 for q in snap.devices[key].queues)


def test_ctl_reload_drains_and_closes_a_removed_device(sock_dir: Path, qsd: StorageDaemon) -> None:
    """A device removed from the file and `svqtui ctl reload`: its shadowed
    connection is handed back (shadow off) before it is closed, its front-end
    sees an orderly end of stream (no reset), its socket file is gone, and
    the device that stays forwards verified I/O; the reply lists the change."""
    cfg = write_vhost_config(sock_dir, [("blk0", 0, False), ("blk1", 1, True)])
    with (
        HeadlessProcess(sock_dir, config=cfg) as proc,
        VhostUserFrontend(listen_path(sock_dir, 0)) as fe0,
        VhostUserFrontend(listen_path(sock_dir, 1)) as fe1,
    ):
        fe0.connect().init().start()
        fe1.connect().init().start()
        _io(fe0, 1)
        _io(fe1, 1)
        write_vhost_config(sock_dir, [("blk0", 0, False)])
        with proc.client() as c:
            report = c.reload()
        assert report["changes"] == ["devices: blk1: removed (drained and closed)"]
        assert report["restart"] == []
        fe1.sock.settimeout(5)
        assert fe1.sock.recv(1) == b""  # EOF: a close, not a reset
        assert not listen_path(sock_dir, 1).exists()
        log = proc.stderr
        off = log.index("[vu:blk1] blk1: shadow mode off")
        closed = log.index("blk1: disconnected: removed from the configuration")
        assert off < closed
        _io(fe0, 2)
        with pytest.raises(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(listen_path(sock_dir, 1)))  # nothing listens there any more
        assert _error_lines(proc) == []


def test_an_invalid_config_is_refused_with_one_line(sock_dir: Path, qsd: StorageDaemon) -> None:
    """A broken file: SIGHUP logs exactly one error line (file, line, key) and
    `svqtui ctl reload` exits 2 with one line; the running devices keep
    forwarding verified I/O on the same connection and nothing was changed."""
    cfg = write_vhost_config(sock_dir, [("blk0", 0, True)])
    with (
        HeadlessProcess(sock_dir, config=cfg) as proc,
        VhostUserFrontend(listen_path(sock_dir, 0)) as fe0,
    ):
        fe0.connect().init().start()
        _io(fe0, 1)
        good = cfg.read_text()
        cfg.write_text(good + "refresh_typo: 3\n")
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: "reload refused" in proc.stderr, 10, what="the refusal")
        errors = _error_lines(proc)
        assert len(errors) == 1, errors
        assert str(cfg) in errors[0] and "refresh_typo" in errors[0]
        assert "running configuration is kept" in errors[0]
        result = svqtui("ctl", "--socket", proc.socket_path, "reload", home=sock_dir)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "reload refused" in result.stderr and "refresh_typo" in result.stderr
        _io(fe0, 2)
        with proc.client() as c:
            snap = c.snapshot()
        assert snap.devices["vu:blk0"].connected and snap.devices["vu:blk0"].shadow
        assert snap.interval_s == pytest.approx(0.2)
        assert proc.stderr.count("QEMU connected") == 1
