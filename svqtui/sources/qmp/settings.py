"""The ``qmp:`` config section and the QMP source's plug-in declaration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from svqtui.config_nodes import ConfigReader
from svqtui.sources.plugin import SocketUse, SourcePlugin

if TYPE_CHECKING:
    from svqtui.config import Config
    from svqtui.sources.base import Source


@dataclass(frozen=True, slots=True)
class QMPSocket:
    path: str
    name: str | None = None
    line: int | None = None


@dataclass(frozen=True, slots=True)
class QMPConfig:
    sockets: tuple[QMPSocket, ...] = ()
    discover: bool = True
    poll_s: float = 1.0


def parse(r: ConfigReader, node: yaml.Node, key: str) -> QMPConfig:
    found = r.mapping(node, key, ("sockets", "discover", "poll"))
    sockets: list[QMPSocket] = []
    if "sockets" in found:
        for i, item in enumerate(r.sequence(found["sockets"][1], f"{key}.sockets")):
            at = f"{key}.sockets[{i}]"
            if isinstance(item, yaml.ScalarNode):
                sockets.append(QMPSocket(r.path_text(item, at), line=item.start_mark.line + 1))
                continue
            entry = r.mapping(item, at, ("path", "name"))
            if "path" not in entry:
                raise r.fail(item, f"{at}.path", "missing (the QMP unix socket path)")
            sockets.append(
                QMPSocket(
                    path=r.path_text(entry["path"][1], f"{at}.path"),
                    name=r.optional(entry, "name", at, r.text, None),
                    line=item.start_mark.line + 1,
                )
            )
    return QMPConfig(
        sockets=tuple(sockets),
        discover=r.optional(found, "discover", key, r.boolean, True),
        poll_s=r.optional(found, "poll", key, lambda n, k: r.number(n, k, 0.05, 60), 1.0),
    )


def sockets(settings: QMPConfig) -> tuple[SocketUse, ...]:
    """The QMP sockets svqtui connects to."""
    return tuple(
        SocketUse(s.path, False, f"qmp.sockets[{i}]", s.line)
        for i, s in enumerate(settings.sockets)
    )


def build(settings: QMPConfig, config: Config) -> list[Source]:
    if not (settings.sockets or settings.discover):
        return []
    from svqtui.sources.qmp.source import QMPSource

    return [QMPSource(settings)]


PLUGIN: SourcePlugin[QMPConfig] = SourcePlugin(
    section="qmp",
    summary="QEMU VMs through their QMP monitors: devices, vhost state, migration",
    default=QMPConfig(),
    parse=parse,
    build=build,
    names_targets=lambda settings: bool(settings.sockets),
    sockets=sockets,
    shipped="""\
# QMP: sockets to watch, and discovery of qemu-system-* processes on this host
# (their -qmp unix:PATH and -chardev socket + -mon mode=control sockets).
qmp:
  sockets: []
#    - /run/qemu/vm1.qmp
#    - {path: /run/qemu/vm2.qmp, name: vm2}
  discover: true
  poll: 1.0                  # seconds between QMP polls of each VM
""",
)
