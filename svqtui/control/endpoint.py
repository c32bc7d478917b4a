"""Where a headless svqtui's control socket is: ``Endpoint``.

An ``--attach`` or ``svqtui ctl --host`` target is a local socket path or an
``ssh://`` URL (svqtui.control.ssh). An endpoint hands out control clients
for it (all of one ssh:// endpoint share one SSH session) and closes what it
started. ``split_targets`` reads repeated and comma-separated targets.
"""

from __future__ import annotations

from collections.abc import Iterable

from svqtui.control.client import DEFAULT_TIMEOUT_S, ControlClient
from svqtui.control.errors import AttachTargetInvalid
from svqtui.control.ssh import SshControlClient, SshTarget, SshTunnel, is_ssh_url


class Endpoint:
    """A control socket here (a path) or on another host (ssh://)."""

    def __init__(self, target: str, options: list[str] | None = None) -> None:
        self.target = target
        self.ssh: SshTarget | None = SshTarget.parse(target) if is_ssh_url(target) else None
        self.tunnel: SshTunnel | None = (
            SshTunnel(self.ssh, options) if self.ssh is not None else None
        )

    @property
    def label(self) -> str:
        return label_of(self.target)

    def client(self, timeout: float = DEFAULT_TIMEOUT_S) -> ControlClient:
        """A new, not yet connected client (connects on its first request)."""
        if self.tunnel is not None:
            return SshControlClient(self.tunnel, timeout)
        return ControlClient(self.target, timeout)

    def close(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()

    def __str__(self) -> str:
        return str(self.ssh) if self.ssh is not None else self.target


def split_targets(values: Iterable[str]) -> list[str]:
    """``--attach A --attach B,C`` as ``[A, B, C]``; empty items are an error,
    and so is the same target twice."""
    targets: list[str] = []
    for value in values:
        for item in value.split(","):
            item = item.strip()
            if not item:
                raise AttachTargetInvalid(f"an empty target in {value!r}")
            if item in targets:
                raise AttachTargetInvalid(f"{item} is given twice")
            targets.append(item)
    return targets


def label_of(target: str) -> str:
    """The short name of a target's host in a console of several:
    ``[user@]host[:port]`` for ssh://, the socket path otherwise."""
    return SshTarget.parse(target).label if is_ssh_url(target) else target


def unique_labels(targets: list[str]) -> list[str]:
    """Each target's label, or the whole target where two labels are the same
    (two sockets behind one host)."""
    labels = [label_of(t) for t in targets]
    pairs = zip(targets, labels, strict=True)
    return [t if labels.count(label) > 1 else label for t, label in pairs]
