"""The ``devices:`` config section (vhost-user devices to interpose on) and the
vhost-user source's plug-in declaration."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from svqtui.config_nodes import ConfigReader
from svqtui.sources.plugin import SourcePlugin

if TYPE_CHECKING:
    from svqtui.config import Config
    from svqtui.sources.base import Source


@dataclass(frozen=True, slots=True)
class DeviceLimits:
    """What one front-end connection may make svqtui hold (docs/design.md#limits).

    A front-end over a limit is disconnected alone, with one log line naming
    the limit; the other devices go on. The defaults fit any QEMU device
    (a 32-queue-pair virtio-net has 65 rings; QEMU uses a handful of memory
    regions, up to the back-end's GET_MAX_MEM_SLOTS with memory hotplug).
    """

    rings: int = 64  # ring indices the front-end may name (the protocol allows 256)
    regions: int = 64  # memory regions held at once (SET_MEM_TABLE has at most 8; ADD_MEM_REG)
    fds: int = 512  # fds svqtui holds for the connection (4 per shadowed ring, 1 per region)


MAX_LIMIT_RINGS = 256  # an 8-bit ring index
MAX_LIMIT_REGIONS = 509  # VHOST_USER_MAX_RAM_SLOTS
MAX_LIMIT_FDS = 1 << 20


@dataclass(frozen=True, slots=True)
class VhostUserDevice:
    name: str
    listen: str  # the socket QEMU's -chardev socket,path= connects to
    backend: str  # the real back-end's socket
    shadow: bool = False  # shadow mode from connect
    line: int | None = None
    limits: DeviceLimits = DeviceLimits()


def parse_limits(r: ConfigReader, node: yaml.Node, key: str) -> DeviceLimits:
    found = r.mapping(node, key, ("rings", "regions", "fds"))
    default = DeviceLimits()

    def bounded(maximum: int) -> Callable[[yaml.Node, str], int]:
        return lambda n, k: r.integer(n, k, 1, maximum)

    return DeviceLimits(
        rings=r.optional(found, "rings", key, bounded(MAX_LIMIT_RINGS), default.rings),
        regions=r.optional(found, "regions", key, bounded(MAX_LIMIT_REGIONS), default.regions),
        fds=r.optional(found, "fds", key, bounded(MAX_LIMIT_FDS), default.fds),
    )


def parse(r: ConfigReader, node: yaml.Node, key: str) -> tuple[VhostUserDevice, ...]:
    devices: list[VhostUserDevice] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(r.sequence(node, key)):
        at = f"{key}[{i}]"
        found = r.mapping(item, at, ("name", "listen", "backend", "shadow", "limits"))
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
            limits=r.optional(
                found, "limits", at, lambda n, k: parse_limits(r, n, k), DeviceLimits()
            ),
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
#    limits: {rings: 64, regions: 64, fds: 512}   # per connection; over it, disconnected
""",
)
