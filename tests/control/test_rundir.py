"""Runtime paths nobody else can swap: the control socket's directory and lock
file are refused (one line, nothing written) when another user could replace
them, and created with exact modes otherwise."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.config import default_control_socket
from svqtui.control.errors import UnsafeRuntimePath
from svqtui.control.rundir import open_private_dir
from svqtui.control.sockfile import SocketFile

NOBODY = 65534


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory outside pytest's private 0700 tree (whose parents are all
    root's and not writable by others), so another user's files can be put in it."""
    base = Path(tempfile.mkdtemp(prefix="svq-rundir-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def refused(path: Path, match: str) -> str:
    """Claim ``path`` expecting UnsafeRuntimePath matching ``match``; its message."""
    f = SocketFile(str(path))
    with pytest.raises(UnsafeRuntimePath, match=match) as info:
        f.claim()
    f.release()
    message = str(info.value)
    assert "\n" not in message
    return message


def test_created_directories_are_0700_whatever_the_umask(tmp_path: Path) -> None:
    """Missing directories are created with exactly the mode asked for, even
    under umask 000, and the descriptor returned is the last one."""
    old = os.umask(0)
    try:
        fd = open_private_dir(str(tmp_path / "a" / "b"), 0o700)
    finally:
        os.umask(old)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "a" / "b"))
        for d in (tmp_path / "a", tmp_path / "a" / "b"):
            assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    finally:
        os.close(fd)


def test_a_symlinked_directory_on_the_way_is_resolved_once(tmp_path: Path) -> None:
    """A symlink in the configured path (like /var/run -> /run) is resolved
    before the walk; the socket ends up in the real directory."""
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    f = SocketFile(str(tmp_path / "link" / "c.sock"))
    sock = f.claim()
    try:
        assert stat.S_ISSOCK(os.lstat(tmp_path / "real" / "c.sock").st_mode)
    finally:
        sock.close()
        f.release()


def test_a_group_writable_directory_is_refused(shared_tmp: Path) -> None:
    """A directory others may write into without the sticky bit is refused,
    and nothing is created in it."""
    d = shared_tmp / "gw"
    d.mkdir()
    os.chmod(d, 0o770)
    message = refused(d / "c.sock", "writable by group")
    assert str(d) in message and "control.socket" in message
    assert os.listdir(d) == []


def test_a_hard_link_at_the_lock_path_is_refused(tmp_path: Path) -> None:
    """A hard link to another file of ours at the lock path (what a planted
    link to a root file looks like to root): refused, the file not truncated."""
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    precious = tmp_path / "precious"
    precious.write_text("keep me\n")
    os.link(precious, d / "c.sock.lock")
    refused(d / "c.sock", "has 2 hard links")
    assert precious.read_text() == "keep me\n"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files of another user")
def test_a_directory_owned_by_another_user_is_refused(shared_tmp: Path) -> None:
    """The control socket's directory owned by nobody (what /tmp/svqtui-0
    becomes when another user creates it first): root's svqtui refuses with
    one line naming the owner, and neither a lock file nor a socket appears."""
    d = shared_tmp / "svqtui-0"
    d.mkdir(mode=0o755)
    os.chown(d, NOBODY, NOBODY)
    message = refused(d / "control.sock", "owned by uid 65534")
    assert str(d) in message
    assert os.listdir(d) == []


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files of another user")
def test_a_symlink_at_the_lock_path_is_not_followed(shared_tmp: Path) -> None:
    """In a sticky shared directory (like /tmp), another user's symlink at
    control.sock.lock pointing at a root-owned file: root's svqtui refuses,
    and the target keeps its content and mode."""
    d = shared_tmp / "sticky"
    d.mkdir()
    os.chmod(d, 0o1777)
    target = shared_tmp / "precious"
    target.write_text("root's data\n")
    os.chmod(target, 0o644)
    lock = d / "control.sock.lock"
    lock.symlink_to(target)
    os.lchown(lock, NOBODY, NOBODY)
    refused(d / "control.sock", "is a symlink")
    assert target.read_text() == "root's data\n"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o644
    assert sorted(os.listdir(d)) == ["control.sock.lock"]


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files of another user")
def test_a_lock_file_of_another_user_is_refused(shared_tmp: Path) -> None:
    """A regular file another user put at the lock path of a sticky directory
    is neither truncated nor written."""
    d = shared_tmp / "sticky"
    d.mkdir()
    os.chmod(d, 0o1777)
    lock = d / "control.sock.lock"
    lock.write_text("theirs\n")
    os.chown(lock, NOBODY, NOBODY)
    refused(d / "control.sock", "owned by uid 65534")
    assert lock.read_text() == "theirs\n"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files of another user")
def test_a_directory_symlink_planted_by_another_user_is_refused(shared_tmp: Path) -> None:
    """A symlink another user planted as a path component (in a sticky dir)
    leads into their directory: refused by its owner, nothing created there."""
    d = shared_tmp / "sticky"
    d.mkdir()
    os.chmod(d, 0o1777)
    theirs = shared_tmp / "theirs"
    theirs.mkdir()
    os.chown(theirs, NOBODY, NOBODY)
    (d / "svqtui").symlink_to(theirs)
    refused(d / "svqtui" / "control.sock", "owned by uid 65534")
    assert os.listdir(theirs) == []


def test_default_control_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """Root's default is /run/svqtui; another user's is under XDG_RUNTIME_DIR,
    else a per-uid directory in /tmp."""
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert default_control_socket() == "/run/svqtui/control.sock"
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "/run/user/1000")
    assert default_control_socket() == "/run/user/1000/svqtui/control.sock"
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert default_control_socket() == "/tmp/svqtui-1000/control.sock"


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to make files of another user")
def test_headless_refuses_a_foreign_directory_in_one_line(shared_tmp: Path) -> None:
    """`svqtui --headless` with its control socket in a directory owned by
    nobody: exit 1, one line on stderr naming the directory and the fix,
    nothing created there."""
    d = shared_tmp / "svqtui-0"
    d.mkdir(mode=0o755)
    os.chown(d, NOBODY, NOBODY)
    cfg = shared_tmp / "config.yaml"
    cfg.write_text(
        f"demo: {{enabled: true}}\nqmp: {{discover: false}}\ncontrol: {{socket: {d}/c.sock}}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "svqtui", "-c", str(cfg), "--headless"],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(d) in lines[0] and "control.socket" in lines[0], result.stderr
    assert os.listdir(d) == []
