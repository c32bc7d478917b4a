"""Listen sockets get the configured mode and owner before they listen,
whatever the umask: another user cannot connect to a device's socket unless
the config says so."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from pathlib import Path

import pytest

from svqtui.config import parse_config
from svqtui.errors import ConfigError
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.sources.vhost_user.settings import PLUGIN, VhostUserDevice
from tests.support.vhost_user_rig import Context


def listen_stat(context: Context, device: VhostUserDevice) -> os.stat_result:
    """Start a source with ``device`` under umask 000 and stat its listen socket."""
    source = VhostUserSource([device])
    old = os.umask(0)
    try:
        source.start(context.ctx)
    finally:
        os.umask(old)
    try:
        return os.lstat(device.listen)
    finally:
        source.stop()


def test_umask_000_still_gives_0600(context: Context, sock_dir: Path) -> None:
    """With no mode configured, the listen socket is 0600 even under umask 000."""
    dev = VhostUserDevice("d", str(sock_dir / "l.sock"), str(sock_dir / "b.sock"))
    st = listen_stat(context, dev)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


def test_a_configured_mode_is_exact(context: Context, sock_dir: Path) -> None:
    """mode: 0660 gives exactly rw-rw---- (the umask neither widens nor narrows it)."""
    dev = VhostUserDevice("d", str(sock_dir / "l.sock"), str(sock_dir / "b.sock"), mode=0o660)
    assert stat.S_IMODE(listen_stat(context, dev).st_mode) == 0o660


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a socket to another user")
def test_owner_and_group_are_applied(context: Context, sock_dir: Path) -> None:
    """owner: nobody, group: nogroup (as parsed from a config) end up on the socket."""
    cfg = parse_config(
        "devices:\n"
        f"  - {{name: d, listen: {sock_dir}/l.sock, backend: {sock_dir}/b.sock,\n"
        "      owner: nobody, group: nogroup, mode: '0640'}\n",
        str(sock_dir / "config.yaml"),
    )
    (dev,) = cfg.section(PLUGIN)
    st = listen_stat(context, dev)
    assert st.st_uid == pwd.getpwnam("nobody").pw_uid
    assert st.st_gid == grp.getgrnam("nogroup").gr_gid
    assert stat.S_IMODE(st.st_mode) == 0o640


@pytest.mark.parametrize(
    ("value", "mode"), [("0660", 0o660), ("'0660'", 0o660), ("660", 0o660), ("0o600", 0o600)]
)
def test_modes_are_read_as_octal(value: str, mode: int) -> None:
    """0660, '0660', 660 and 0o600 are all octal modes."""
    cfg = parse_config(
        f"devices:\n  - {{name: d, listen: /a.sock, backend: /b.sock, mode: {value}}}\n"
    )
    assert cfg.section(PLUGIN)[0].mode == mode


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("owner: no-such-user-svq", "devices[0].owner: no user 'no-such-user-svq'"),
        ("group: no-such-group-svq", "devices[0].group: no group 'no-such-group-svq'"),
        ("mode: 0999", "devices[0].mode: expected an octal mode"),
        ("mode: 01777", "devices[0].mode: expected an octal mode"),
    ],
)
def test_unknown_users_groups_and_bad_modes_are_config_errors(entry: str, message: str) -> None:
    """An unknown user or group, or a mode that is not octal rwx bits, is a
    ConfigError naming the file, the line and the key."""
    text = f"devices:\n  - name: d\n    listen: /a.sock\n    backend: /b.sock\n    {entry}\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "c.yaml")
    assert f"c.yaml:5: {message}" in str(info.value)
