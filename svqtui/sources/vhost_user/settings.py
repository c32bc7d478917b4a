"""The ``devices:`` config section (vhost-user devices to interpose on) and the
vhost-user source's plug-in declaration."""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from svqtui.config_nodes import ConfigReader
from svqtui.sources.plugin import SocketUse, SourcePlugin

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
    mode: int = 0o600  # the listen socket's mode, whatever the umask
    uid: int = -1  # the listen socket's owner (-1: svqtui's user)
    gid: int = -1  # the listen socket's group (-1: svqtui's group)
    # the request format of its rings ("blk", "net", "other"); None: guessed from the names
    kind: str | None = None

    limits: DeviceLimits = DeviceLimits()


def file_mode(r: ConfigReader, node: yaml.Node, key: str) -> int:
    """An octal mode as written (0660, "0660", 660 and 0o660 all mean rw-rw----)."""
    r.scalar(node, key)  # a single value, else that error
    text = str(node.value).strip()
    digits = text.removeprefix("0o")
    if not digits or any(c not in "01234567" for c in digits) or int(digits, 8) > 0o777:
        raise r.fail(node, key, f"expected an octal mode such as 0600 or 0660, got {text!r}")
    return int(digits, 8)


def user_id(r: ConfigReader, node: yaml.Node, key: str) -> int:
    """A user name or uid that exists on this host."""
    value = r.scalar(node, key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32 - 1:
        return value
    try:
        return pwd.getpwnam(str(value)).pw_uid
    except KeyError:
        raise r.fail(node, key, f"no user {value!r} on this host (see getent passwd)") from None


def group_id(r: ConfigReader, node: yaml.Node, key: str) -> int:
    """A group name or gid that exists on this host."""
    value = r.scalar(node, key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**32 - 1:
        return value
    try:
        return grp.getgrnam(str(value)).gr_gid
    except KeyError:
        raise r.fail(node, key, f"no group {value!r} on this host (see getent group)") from None


DEVICE_KINDS = ("blk", "net", "other")


def device_kind(r: ConfigReader, node: yaml.Node, key: str) -> str:
    """What the device's rings carry: blk, net or other (raw chains)."""
    value = r.text(node, key)
    if value not in DEVICE_KINDS:
        raise r.fail(node, key, f"expected one of {', '.join(DEVICE_KINDS)}, got {value!r}")
    return value


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
        found = r.mapping(
            item,
            at,
            ("name", "listen", "backend", "kind", "shadow", "owner", "group", "mode", "limits"),
        )
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
            kind=r.optional(found, "kind", at, lambda n, k: device_kind(r, n, k), None),
            shadow=r.optional(found, "shadow", at, r.boolean, False),
            line=item.start_mark.line + 1,
            mode=r.optional(found, "mode", at, lambda n, k: file_mode(r, n, k), 0o600),
            uid=r.optional(found, "owner", at, lambda n, k: user_id(r, n, k), -1),
            gid=r.optional(found, "group", at, lambda n, k: group_id(r, n, k), -1),
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


def sockets(devices: tuple[VhostUserDevice, ...]) -> tuple[SocketUse, ...]:
    """Each device's listen socket (svqtui binds it) and back-end (it connects)."""
    uses: list[SocketUse] = []
    for i, d in enumerate(devices):
        uses.append(SocketUse(d.listen, True, f"devices[{i}].listen", d.line))
        uses.append(SocketUse(d.backend, False, f"devices[{i}].backend", d.line))
    return tuple(uses)


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
    sockets=sockets,
    shipped="""\
# vhost-user devices svqtui interposes on: QEMU connects to `listen`
# (-chardev socket,path=LISTEN), svqtui connects on to the real back-end at
# `backend` (qemu-storage-daemon, DPDK, virtiofsd...). shadow: on relays the
# device's notifications through the engine from the moment QEMU connects.
# The listen socket is created with `mode` (default 0600, whatever the umask),
# owned by `owner`/`group` (default: svqtui's user; on libvirt hosts QEMU runs
# as libvirt-qemu: owner: libvirt-qemu, or group: kvm with mode: 0660).
# Relative paths are relative to this file's directory.
devices: []
#  - name: blk0
#    listen: /run/svqtui/blk0.sock
#    backend: /run/qsd/blk0.sock
#    kind: blk        # its rings' requests: blk, net or other (default: guessed from the names)
#    shadow: off
#    owner: libvirt-qemu
#    mode: 0600
#    limits: {rings: 64, regions: 64, fds: 512}   # per connection; over it, disconnected
""",
)
