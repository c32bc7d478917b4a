"""The ``devices:`` config section (vhost-user devices to interpose on) and the
vhost-user source's plug-in declaration."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from svqtui.config_nodes import ConfigReader
from svqtui.sources.plugin import SourcePlugin

if TYPE_CHECKING:
    from svqtui.config import Config
    from svqtui.sources.base import Source


@dataclass(frozen=True, slots=True)
class VhostUserDevice:
    name: str
    listen: str  # the socket QEMU's -chardev socket,path= connects to
    backend: str  # the real back-end's socket
    shadow: bool = False  # shadow mode from connect
    line: int | None = None


def parse(r: ConfigReader, node: yaml.Node, key: str) -> tuple[VhostUserDevice, ...]:
    devices: list[VhostUserDevice] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(r.sequence(node, key)):
        at = f"{key}[{i}]"
        found = r.mapping(item, at, ("name", "listen", "backend", "shadow"))
        for required in ("name", "listen", "backend"):
            if required not in found:
                raise r.fail(
                    item,
                    f"{at}.{required}",
                    "missing (every device needs name, listen and backend)",
                )
        device = VhostUserDevice(
            name=r.text(found["name"][1], f"{at}.name"),
            listen=r.path_text(found["listen"][1], f"{at}.listen"),
            backend=r.path_text(found["backend"][1], f"{at}.backend"),
            shadow=r.optional(found, "shadow", at, r.boolean, False),
            line=item.start_mark.line + 1,
        )
        if device.listen == device.backend:
            raise r.fail(item, f"{at}.listen", "listen and backend must be different sockets")
        for what, value in (("name", device.name), ("listen", device.listen)):
            if (what, value) in seen:
                raise r.fail(found[what][1], f"{at}.{what}", f"{value!r} is used by another device")
            seen.add((what, value))
        devices.append(device)
    return tuple(devices)


def build(devices: tuple[VhostUserDevice, ...], config: Config) -> list[Source]:
    if not devices:
        return []
    from svqtui.sources.vhost_user.source import VhostUserSource

    return [VhostUserSource(devices)]


PLUGIN: SourcePlugin[tuple[VhostUserDevice, ...]] = SourcePlugin(
    section="devices",
    summary="vhost-user devices svqtui interposes on (counts, shadow mode, masking)",
    default=(),
    parse=parse,
    build=build,
    names_targets=bool,
    shipped="""\
# vhost-user devices svqtui interposes on: QEMU connects to `listen`
# (-chardev socket,path=LISTEN), svqtui connects on to the real back-end at
# `backend` (qemu-storage-daemon, DPDK, virtiofsd...). shadow: on relays the
# device's notifications through the engine from the moment QEMU connects.
devices: []
#  - name: blk0
#    listen: /run/svqtui/blk0.sock
#    backend: /run/qsd/blk0.sock
#    shadow: off
""",
)
