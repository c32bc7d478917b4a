"""Finding QEMU processes on this host and the QMP sockets on their command lines.

This module owns discovery only: which processes are QEMU system emulators,
what their ``-name`` is, which unix sockets carry a QMP (control-mode) monitor,
and which unix sockets their socket chardevs use (the vhost-user join falls
back on those). Parsing is pure (``parse_cmdline`` works on an argv list and
is tested on command lines); ``scan`` is the one function that reads the
process table (psutil). The QMP source calls ``scan`` in a worker thread every
few seconds, never from ``collect()``.

QEMU option syntax handled here: ``-opt value`` and ``--opt value``; option
values as ``key=value`` lists split at single commas (",," is a literal comma)
with an implied first key (``-name foo``, ``-mon X``, ``-qmp unix:PATH``);
JSON values for ``-netdev``. Monitors: ``-qmp``/``-qmp-pretty``
``unix:PATH,server=on,wait=off`` (or the old ``server,nowait``), and ``-mon
chardev=X,mode=control`` on ``-chardev socket,id=X,path=PATH,server=on``.
A monitor passed as an inherited fd (libvirt) has no path to find.

QEMU serves one client per QMP socket, and svqtui keeps its connection open
(events must be read as they come): a QEMU watched by svqtui should have a
QMP socket of its own (``preferred_qmp_socket`` picks one named *svqtui*).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import psutil

_QEMU_BINARY = re.compile(r"^(qemu-system-[A-Za-z0-9_.-]+|qemu-kvm)$")
_TRUE = frozenset({"on", "yes", "true", "y"})
# Options whose value is the next argv element (only those we read, plus the
# common ones whose values could look like options we read).
_WITH_VALUE = frozenset(
    {
        "name",
        "qmp",
        "qmp-pretty",
        "mon",
        "chardev",
        "netdev",
        "monitor",
        "serial",
        "device",
        "drive",
        "blockdev",
        "object",
        "machine",
        "M",
        "m",
        "smp",
        "cpu",
        "kernel",
        "initrd",
        "append",
        "incoming",
        "accel",
        "display",
        "vga",
        "global",
        "boot",
        "pidfile",
        "D",
        "d",
        "L",
        "bios",
        "uuid",
        "rtc",
        "msg",
        "sandbox",
        "overcommit",
        "runas",
        "chroot",
        "fsdev",
        "virtfs",
        "numa",
        "add-fd",
        "loadvm",
        "trace",
        "plugin",
        "audiodev",
        "k",
        "smbios",
        "fw_cfg",
        "net",
        "hda",
        "hdb",
        "cdrom",
        "parallel",
        "debugcon",
        "icount",
        "watchdog-action",
        "action",
        "compat",
        "iscsi",
        "spice",
        "vnc",
        "usbdevice",
        "tpmdev",
        "semihosting-config",
        "mem-path",
    }
)


@dataclass(frozen=True, slots=True)
class QemuCommandLine:
    """What svqtui reads from one QEMU command line."""

    name: str | None = None
    qmp_sockets: tuple[str, ...] = ()  # unix paths of QMP servers, in order
    chardev_paths: Mapping[str, str] = field(default_factory=dict)  # id -> unix path
    netdev_chardevs: Mapping[str, str] = field(default_factory=dict)  # netdev id -> chardev id
    fd_monitors: int = 0  # QMP monitors on inherited fds (no path to connect to)


@dataclass(frozen=True, slots=True)
class DiscoveredVM:
    """A QEMU process found on the host."""

    pid: int
    exe: str
    cmdline: QemuCommandLine

    @property
    def name(self) -> str | None:
        return self.cmdline.name

    @property
    def qmp_sockets(self) -> tuple[str, ...]:
        return self.cmdline.qmp_sockets


def split_opts(value: str) -> list[str]:
    """Split a QEMU option value at single commas; ",," is a literal comma."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == ",":
            if value.startswith(",,", i):
                current.append(",")
                i += 2
                continue
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def parse_opts(value: str, implied: str | None = None) -> dict[str, str]:
    """A QEMU ``key=value,...`` string as a dict.

    A first element without "=" is the ``implied`` key's value; a later bare
    flag ``x`` means ``x=on`` and ``nox`` means ``x=off`` (the old syntax of
    ``server,nowait``).
    """
    return _opts_of(split_opts(value), implied)


def _opts_of(parts: Sequence[str], implied: str | None) -> dict[str, str]:
    opts: dict[str, str] = {}
    for i, part in enumerate(parts):
        if not part:
            continue
        key, eq, val = part.partition("=")
        if eq:
            opts[key] = val
        elif i == 0 and implied is not None:
            opts[implied] = part
        elif part.startswith("no") and len(part) > 2:
            opts[part[2:]] = "off"
        else:
            opts[part] = "on"
    return opts


def is_qemu_system(argv0: str, exe: str = "") -> bool:
    """True for a QEMU system emulator (qemu-system-*, or RHEL's qemu-kvm)."""
    return any(_QEMU_BINARY.match(os.path.basename(p)) for p in (argv0, exe) if p)


def _options(argv: Sequence[str]) -> list[tuple[str, str | None]]:
    """(option, value) pairs in order; value None for a flag."""
    out: list[tuple[str, str | None]] = []
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-") and len(arg) > 1:
            opt = arg.lstrip("-")
            if opt in _WITH_VALUE and i + 1 < len(argv):
                out.append((opt, argv[i + 1]))
                i += 2
                continue
            out.append((opt, None))
        i += 1
    return out


def _unix_path(spec: str) -> tuple[str | None, dict[str, str]]:
    """The path of a ``unix:PATH,opts`` chardev spec (-qmp/-serial style)."""
    if not spec.startswith("unix:"):
        return None, {}
    parts = split_opts(spec[len("unix:") :])
    return (parts[0] or None), _opts_of(parts[1:], None)


def _is_server(opts: Mapping[str, str]) -> bool:
    return opts.get("server", "off").lower() in _TRUE


def _netdev(value: str) -> dict[str, str]:
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except ValueError:
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | bool)}
    return parse_opts(value, implied="type")


def parse_cmdline(argv: Sequence[str], cwd: str | None = None) -> QemuCommandLine:
    """Read -name, QMP monitors, socket chardevs and vhost-user netdevs.

    Relative socket paths are made absolute against ``cwd`` when given (QEMU
    resolves them against its own working directory).
    """

    def absolute(path: str) -> str:
        if cwd and not os.path.isabs(path):
            return os.path.normpath(os.path.join(cwd, path))
        return path

    name: str | None = None
    qmp: list[str] = []
    chardevs: dict[str, dict[str, str]] = {}
    control_chardevs: list[str] = []
    netdevs: dict[str, str] = {}
    fd_monitors = 0
    for opt, value in _options(argv):
        if value is None:
            continue
        if opt == "name":
            name = parse_opts(value, implied="guest").get("guest") or name
        elif opt in ("qmp", "qmp-pretty"):
            path, opts = _unix_path(value)
            if path is not None and _is_server(opts):
                qmp.append(absolute(path))
        elif opt == "chardev":
            opts = parse_opts(value, implied="backend")
            if opts.get("backend") == "socket" and "id" in opts:
                chardevs[opts["id"]] = opts
        elif opt == "mon":
            opts = parse_opts(value, implied="chardev")
            if opts.get("mode") == "control" and "chardev" in opts:
                control_chardevs.append(opts["chardev"])
        elif opt == "netdev":
            opts = _netdev(value)
            if opts.get("type") == "vhost-user" and "id" in opts and "chardev" in opts:
                netdevs[opts["id"]] = opts["chardev"]
    paths = {cid: absolute(o["path"]) for cid, o in chardevs.items() if o.get("path")}
    for cid in control_chardevs:
        opts = chardevs.get(cid, {})
        if cid in paths and _is_server(opts):
            qmp.append(paths[cid])
        elif "fd" in opts:
            fd_monitors += 1
    return QemuCommandLine(
        name=name,
        qmp_sockets=tuple(dict.fromkeys(qmp)),
        chardev_paths=paths,
        netdev_chardevs=netdevs,
        fd_monitors=fd_monitors,
    )


def preferred_qmp_socket(sockets: Sequence[str]) -> str | None:
    """The QMP socket svqtui should take when a QEMU has several.

    QEMU serves one client per monitor socket, and svqtui holds the one it
    uses; a socket named for svqtui (e.g. ``-qmp unix:/run/vm1-svqtui.qmp,...``)
    is taken first, so an operator can keep the others for their own tools.
    Otherwise the first.
    """
    for path in sockets:
        if "svqtui" in os.path.basename(path):
            return path
    return sockets[0] if sockets else None


def scan(exclude_pid: int | None = None) -> list[DiscoveredVM]:
    """Every QEMU system emulator this user can see, with its command line read.

    Processes that vanish or deny access while being read are skipped.
    Blocking (reads /proc): call it from a worker thread.
    """
    found: list[DiscoveredVM] = []
    for proc in psutil.process_iter(["pid", "exe", "cmdline"]):
        try:
            info = proc.info
            argv: list[str] = info.get("cmdline") or []
            exe: str = info.get("exe") or ""
            if not argv or not is_qemu_system(argv[0], exe):
                continue
            if info["pid"] == exclude_pid:
                continue
            try:
                cwd: str | None = proc.cwd()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cwd = None
            found.append(DiscoveredVM(info["pid"], exe or argv[0], parse_cmdline(argv, cwd)))
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
