"""svqtui.control.endpoint: reading --attach targets, naming hosts, and
which client a target gets."""

from __future__ import annotations

import pytest

from svqtui.control.client import ControlClient
from svqtui.control.endpoint import Endpoint, split_targets, unique_labels
from svqtui.control.errors import AttachTargetInvalid
from svqtui.control.ssh import SshControlClient


def test_repeated_and_comma_targets_are_one_list() -> None:
    """--attach A --attach B,C is [A, B, C], in that order."""
    assert split_targets(["/a.sock", "ssh://h1, ssh://h2:22/x"]) == [
        "/a.sock",
        "ssh://h1",
        "ssh://h2:22/x",
    ]


@pytest.mark.parametrize("values", [["ssh://h1,"], ["ssh://h1", "ssh://h1"]])
def test_empty_or_repeated_targets_are_refused(values: list[str]) -> None:
    """An empty item or the same target twice is a usage error."""
    with pytest.raises(AttachTargetInvalid):
        split_targets(values)


def test_labels_are_short_unless_two_collide() -> None:
    """Two sockets behind one host are named by their whole URL; otherwise by host."""
    assert unique_labels(["ssh://a/x", "ssh://b:2/x"]) == ["a", "b:2"]
    assert unique_labels(["ssh://a/x", "ssh://a/y"]) == ["ssh://a/x", "ssh://a/y"]


def test_a_path_gets_a_plain_client_and_a_url_an_ssh_one() -> None:
    """A socket path needs no ssh; an ssh:// URL's clients share one tunnel;
    creating an endpoint starts nothing."""
    local = Endpoint("/run/c.sock")
    assert type(local.client()) is ControlClient and local.tunnel is None
    remote = Endpoint("ssh://hv1/run/c.sock")
    one, two = remote.client(), remote.client()
    assert isinstance(one, SshControlClient) and isinstance(two, SshControlClient)
    assert one.tunnel is two.tunnel is remote.tunnel
    assert remote.tunnel is not None and not remote.tunnel.alive
    assert one.label == "ssh://hv1/run/c.sock"
    remote.close()
