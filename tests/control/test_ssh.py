"""svqtui.control.ssh without a network: ssh:// URLs, the ssh command line
svqtui runs, and $SVQTUI_SSH_OPTS. (The transport itself runs against a real
sshd in test_ssh_attach.py.)"""

from __future__ import annotations

import pytest

from svqtui.control.errors import AttachTargetInvalid
from svqtui.control.ssh import SSH_OPTS_ENV, SshTarget, ssh_argv, user_options


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("ssh://hv1", SshTarget("hv1")),
        ("ssh://hv1/", SshTarget("hv1")),
        ("ssh://root@hv1:2222/run/svqtui/control.sock",
         SshTarget("hv1", "root", 2222, "/run/svqtui/control.sock")),
        ("ssh://ops@[::1]:22/tmp/c.sock", SshTarget("::1", "ops", 22, "/tmp/c.sock")),
        ("ssh://hv1/tmp/with%20space.sock", SshTarget("hv1", path="/tmp/with space.sock")),
    ],
)  # fmt: skip
def test_ssh_urls_parse(url: str, target: SshTarget) -> None:
    """Each part of ssh://[user@]host[:port][/path] lands in its field; no path
    (or "/") means the remote default."""
    assert SshTarget.parse(url) == target


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("hv1:/x", "ssh://"),
        ("ssh://", "no host"),
        ("ssh://hv1:0/x", "port"),
        ("ssh://hv1:70000/x", "port"),
        ("ssh://hv1:ab/x", "port"),
        ("ssh://u:pw@hv1/x", "password"),
        ("ssh://hv1/x?y=1", "query"),
        ("ssh://-oProxyCommand=x/x", "'-'"),
        ("ssh://-u@hv1/x", "'-'"),
        ("ssh://hv1/a:b.sock", "':'"),
    ],
)
def test_bad_ssh_urls_say_why(url: str, why: str) -> None:
    """A malformed URL is AttachTargetInvalid naming the broken part; a host
    or user that ssh would read as an option is refused."""
    with pytest.raises(AttachTargetInvalid, match=why):
        SshTarget.parse(url)


def test_labels_and_round_trip() -> None:
    """The console's host label is [user@]host[:port]; str() is the URL again."""
    target = SshTarget.parse("ssh://root@[::1]:2222/run/c.sock")
    assert target.label == "root@[::1]:2222"
    assert target.destination == "root@::1"
    assert str(target) == "ssh://root@[::1]:2222/run/c.sock"
    assert SshTarget.parse(str(target)) == target
    assert SshTarget.parse("ssh://hv1").label == "hv1"


def test_user_options_come_first_and_the_destination_last() -> None:
    """ssh keeps the first value of an option, so the user's words precede
    svqtui's; BatchMode and a private session are svqtui's defaults; the
    destination follows "--" so it can never be read as an option."""
    target = SshTarget.parse("ssh://ops@hv1:2222/c.sock")
    argv = ssh_argv(target, ["-o", "BatchMode=no", "-i", "/k"], "-N")
    assert argv[:5] == ["ssh", "-o", "BatchMode=no", "-i", "/k"]
    assert argv.index("BatchMode=yes") > argv.index("BatchMode=no")
    assert "ControlMaster=no" in argv and "ControlPath=none" in argv
    assert argv[-4:] == ["2222", "-N", "--", "ops@hv1"]


def test_ssh_opts_env_is_shell_words() -> None:
    """$SVQTUI_SSH_OPTS is split like a shell would; bad quoting is a clear error."""
    env = {SSH_OPTS_ENV: "-i '/my keys/id' -o StrictHostKeyChecking=yes"}
    assert user_options(env) == ["-i", "/my keys/id", "-o", "StrictHostKeyChecking=yes"]
    assert user_options({}) == []
    with pytest.raises(AttachTargetInvalid, match=SSH_OPTS_ENV):
        user_options({SSH_OPTS_ENV: "-i 'unclosed"})
