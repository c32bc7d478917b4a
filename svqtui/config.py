"""Load and validate config.yaml into typed, immutable settings.

The file is parsed with PyYAML into nodes (not plain values) so that every
problem, an unknown key, a wrong type, a bad value, is reported as one
``ConfigError`` naming the file, the line and the dotted key.

Lookup order when no path is given: ./config.yaml, then the user's config
directory ($XDG_CONFIG_HOME/svqtui/config.yaml), then the shipped default.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from svqtui.errors import ConfigError

SHIPPED_DEFAULT = Path(__file__).resolve().parent / "default_config.yaml"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StuckConfig:
    after_s: float = 5.0
    in_flight: bool = True  # in-flight > 0 and the used index not moving
    kicks_without_calls: bool = True  # kicks rising while calls stay flat


@dataclass(frozen=True, slots=True)
class DemoConfig:
    enabled: bool | None = None  # None: "auto", on when no other source is configured
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class VhostUserDevice:
    name: str
    listen: str  # the socket QEMU's -chardev socket,path= connects to
    backend: str  # the real back-end's socket
    shadow: bool = False  # shadow mode from connect
    line: int | None = None


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


@dataclass(frozen=True, slots=True)
class Config:
    path: str = "<defaults>"
    refresh_s: float = 1.0
    history: int = 60
    stuck: StuckConfig = field(default_factory=StuckConfig)
    demo: DemoConfig = field(default_factory=DemoConfig)
    max_queues: int = 4096
    control_socket: str | None = None  # None: default_control_socket()
    devices: tuple[VhostUserDevice, ...] = ()
    qmp: QMPConfig = field(default_factory=QMPConfig)
    engine: EngineConfig = field(default_factory=lambda: EngineConfig())  # class: by _engine

    @property
    def demo_active(self) -> bool:
        if self.demo.enabled is not None:
            return self.demo.enabled
        return not self.devices and not self.qmp.sockets

    @property
    def control_path(self) -> str:
        return self.control_socket or default_control_socket()


def default_control_socket() -> str:
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) if runtime else Path(f"/tmp/svqtui-{os.getuid()}")
    return str(base / "svqtui" / "control.sock")


def user_config_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "svqtui" / "config.yaml"


def find_config(explicit: str | None) -> Path:
    """The config file to use: the explicit one, or the first that exists."""
    if explicit is not None:
        return Path(explicit)
    for candidate in (Path("config.yaml"), user_config_path()):
        if candidate.is_file():
            return candidate
    return SHIPPED_DEFAULT


def load_config(explicit: str | None = None) -> Config:
    """Find, read and validate the configuration; raise ConfigError."""
    path = find_config(explicit)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            str(path), None, None, "no such file (check the -c/--config path)"
        ) from None
    except OSError as err:
        raise ConfigError(str(path), None, None, f"cannot read: {err.strerror}") from None
    return parse_config(text, str(path))


# -- the validator -----------------------------------------------------------


class _Reader:
    """Walks YAML nodes, converting values and remembering where they were."""

    def __init__(self, path: str) -> None:
        self.path = path

    def fail(self, node: yaml.Node | None, key: str | None, message: str) -> ConfigError:
        line = node.start_mark.line + 1 if node is not None else None
        return ConfigError(self.path, line, key, message)

    def mapping(
        self, node: yaml.Node, key: str, known: tuple[str, ...]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return {}
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, key or None, f"expected a mapping of {', '.join(known)}")
        found: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            name = str(key_node.value)
            dotted = f"{key}.{name}" if key else name
            if name not in known:
                hint = difflib.get_close_matches(name, known, n=1)
                suggestion = f"did you mean '{hint[0]}'?" if hint else f"known: {', '.join(known)}"
                raise self.fail(key_node, dotted, f"unknown key ({suggestion})")
            if name in found:
                raise self.fail(key_node, dotted, "duplicate key")
            found[name] = (key_node, value_node)
        return found

    def scalar(self, node: yaml.Node, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, key, "expected a single value, not a list or mapping")
        return yaml.safe_load(yaml.serialize(node))

    def number(self, node: yaml.Node, key: str, minimum: float, maximum: float) -> float:
        value = self.scalar(node, key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(node, key, f"expected a number, got {value!r}")
        if not minimum <= value <= maximum:
            raise self.fail(node, key, f"must be between {minimum:g} and {maximum:g}, got {value}")
        return float(value)

    def integer(self, node: yaml.Node, key: str, minimum: int, maximum: int) -> int:
        value = self.scalar(node, key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(node, key, f"expected a whole number, got {value!r}")
        if not minimum <= value <= maximum:
            raise self.fail(node, key, f"must be between {minimum} and {maximum}, got {value}")
        return value

    def boolean(self, node: yaml.Node, key: str) -> bool:
        value = self.scalar(node, key)
        if isinstance(value, str) and value.lower() in ("on", "off"):
            return value.lower() == "on"
        if not isinstance(value, bool):
            raise self.fail(node, key, f"expected true/false (or on/off), got {value!r}")
        return value

    def text(self, node: yaml.Node, key: str) -> str:
        value = self.scalar(node, key)
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, key, f"expected a non-empty string, got {value!r}")
        return value

    def path_text(self, node: yaml.Node, key: str) -> str:
        value = self.text(node, key)
        if "\0" in value:
            raise self.fail(node, key, "a path cannot contain NUL")
        return os.path.expanduser(value)

    def sequence(self, node: yaml.Node, key: str) -> list[yaml.Node]:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return []
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, key, "expected a list")
        return list(node.value)

    def optional(
        self,
        found: dict[str, tuple[yaml.Node, yaml.Node]],
        name: str,
        key: str,
        convert: Callable[[yaml.Node, str], T],
        default: T,
    ) -> T:
        if name not in found:
            return default
        node = found[name][1]
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return default
        return convert(node, f"{key}.{name}" if key else name)


def parse_config(text: str, path: str = "config.yaml") -> Config:
    """Validate YAML text as an svqtui configuration."""
    r = _Reader(path)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(path, line, None, f"not valid YAML: {err.problem or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(path, None, None, f"not valid YAML: {err}") from None
    if root is None:
        return Config(path=path)
    top = r.mapping(
        root, "", ("refresh", "history", "stuck", "demo", "engine", "control", "devices", "qmp")
    )
    max_queues, engine = _engine(r, top)
    return Config(
        path=path,
        refresh_s=r.optional(top, "refresh", "", lambda n, k: r.number(n, k, 0.05, 60), 1.0),
        history=r.optional(top, "history", "", lambda n, k: r.integer(n, k, 2, 3600), 60),
        stuck=_stuck(r, top),
        demo=_demo(r, top),
        max_queues=max_queues,
        control_socket=_control(r, top),
        devices=_devices(r, top),
        qmp=_qmp(r, top),
        engine=engine,
    )


def _stuck(r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]) -> StuckConfig:
    if "stuck" not in top:
        return StuckConfig()
    found = r.mapping(top["stuck"][1], "stuck", ("after", "in_flight", "kicks_without_calls"))
    return StuckConfig(
        after_s=r.optional(found, "after", "stuck", lambda n, k: r.number(n, k, 0.1, 86400), 5.0),
        in_flight=r.optional(found, "in_flight", "stuck", r.boolean, True),
        kicks_without_calls=r.optional(found, "kicks_without_calls", "stuck", r.boolean, True),
    )


def _demo(r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]) -> DemoConfig:
    if "demo" not in top:
        return DemoConfig()
    found = r.mapping(top["demo"][1], "demo", ("enabled", "seed"))

    def enabled(node: yaml.Node, key: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and str(node.value).lower() == "auto":
            return None
        return r.boolean(node, key)

    return DemoConfig(
        enabled=r.optional(found, "enabled", "demo", enabled, None),
        seed=r.optional(found, "seed", "demo", lambda n, k: r.integer(n, k, 0, 2**32 - 1), None),
    )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the relay engine thread waits between notifications, and where it runs."""

    polling: str = "adaptive"  # one of POLLING_MODES
    poll_us: int = 200  # fixed: the spin window; adaptive: the longest one
    poll_cpu_budget: float = 0.2  # adaptive: fraction of a core spinning may use
    cpu: int | None = None  # pin the engine thread to this CPU; None: anywhere


POLLING_MODES = ("off", "adaptive", "fixed")


def _engine(r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]) -> tuple[int, EngineConfig]:
    if "engine" not in top:
        return 4096, EngineConfig()
    found = r.mapping(
        top["engine"][1], "engine", ("max_queues", "polling", "poll_us", "poll_cpu_budget", "cpu")
    )

    def polling(node: yaml.Node, key: str) -> str:
        r.scalar(node, key)  # one value, not a list or mapping
        word = str(node.value).lower()  # node text: YAML would read `off` as false
        if word not in POLLING_MODES:
            raise r.fail(node, key, f"expected off, adaptive or fixed, got {node.value!r}")
        return word

    def cpu(node: yaml.Node, key: str) -> int:
        value = r.integer(node, key, 0, 4095)
        allowed = sorted(os.sched_getaffinity(0))
        if value not in allowed:
            shown = ", ".join(map(str, allowed[:16])) + (", ..." if len(allowed) > 16 else "")
            raise r.fail(node, key, f"CPU {value} is not available to svqtui (allowed: {shown})")
        return value

    max_queues = r.optional(
        found, "max_queues", "engine", lambda n, k: r.integer(n, k, 1, 65536), 4096
    )
    return max_queues, EngineConfig(
        polling=r.optional(found, "polling", "engine", polling, "adaptive"),
        poll_us=r.optional(
            found, "poll_us", "engine", lambda n, k: r.integer(n, k, 1, 100_000), 200
        ),
        poll_cpu_budget=r.optional(
            found, "poll_cpu_budget", "engine", lambda n, k: r.number(n, k, 0, 1), 0.2
        ),
        cpu=r.optional(found, "cpu", "engine", cpu, None),
    )


def _control(r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]) -> str | None:
    if "control" not in top:
        return None
    found = r.mapping(top["control"][1], "control", ("socket",))

    def socket(node: yaml.Node, key: str) -> str | None:
        value = r.path_text(node, key)
        return None if value == "auto" else value

    return r.optional(found, "socket", "control", socket, None)


def _devices(
    r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]
) -> tuple[VhostUserDevice, ...]:
    if "devices" not in top:
        return ()
    devices: list[VhostUserDevice] = []
    seen: set[tuple[str, str]] = set()
    for i, node in enumerate(r.sequence(top["devices"][1], "devices")):
        key = f"devices[{i}]"
        found = r.mapping(node, key, ("name", "listen", "backend", "shadow"))
        for required in ("name", "listen", "backend"):
            if required not in found:
                raise r.fail(
                    node,
                    f"{key}.{required}",
                    "missing (every device needs name, listen and backend)",
                )
        device = VhostUserDevice(
            name=r.text(found["name"][1], f"{key}.name"),
            listen=r.path_text(found["listen"][1], f"{key}.listen"),
            backend=r.path_text(found["backend"][1], f"{key}.backend"),
            shadow=r.optional(found, "shadow", key, r.boolean, False),
            line=node.start_mark.line + 1,
        )
        if device.listen == device.backend:
            raise r.fail(node, f"{key}.listen", "listen and backend must be different sockets")
        for what, value in (("name", device.name), ("listen", device.listen)):
            if (what, value) in seen:
                raise r.fail(
                    found[what][1], f"{key}.{what}", f"{value!r} is used by another device"
                )
            seen.add((what, value))
        devices.append(device)
    return tuple(devices)


def _qmp(r: _Reader, top: dict[str, tuple[yaml.Node, yaml.Node]]) -> QMPConfig:
    if "qmp" not in top:
        return QMPConfig()
    found = r.mapping(top["qmp"][1], "qmp", ("sockets", "discover", "poll"))
    sockets: list[QMPSocket] = []
    if "sockets" in found:
        for i, node in enumerate(r.sequence(found["sockets"][1], "qmp.sockets")):
            key = f"qmp.sockets[{i}]"
            if isinstance(node, yaml.ScalarNode):
                sockets.append(QMPSocket(r.path_text(node, key), line=node.start_mark.line + 1))
                continue
            entry = r.mapping(node, key, ("path", "name"))
            if "path" not in entry:
                raise r.fail(node, f"{key}.path", "missing (the QMP unix socket path)")
            sockets.append(
                QMPSocket(
                    path=r.path_text(entry["path"][1], f"{key}.path"),
                    name=r.optional(entry, "name", key, r.text, None),
                    line=node.start_mark.line + 1,
                )
            )
    return QMPConfig(
        sockets=tuple(sockets),
        discover=r.optional(found, "discover", "qmp", r.boolean, True),
        poll_s=r.optional(found, "poll", "qmp", lambda n, k: r.number(n, k, 0.05, 60), 1.0),
    )
