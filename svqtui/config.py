"""Load and validate config.yaml into typed, immutable settings.

The file is parsed with PyYAML into nodes (not plain values) so that every
problem, an unknown key, a wrong type, a bad value, is reported as one
``ConfigError`` naming the file, the line and the dotted key. This module owns
the core settings (refresh, history, stuck, engine, control, metrics); each source
plug-in owns its own section (svqtui.sources.registry), kept in ``sections``.

Lookup order when no path is given: ./config.yaml, then the user's config
directory ($XDG_CONFIG_HOME/svqtui/config.yaml), then the shipped default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import yaml

from svqtui.config_nodes import ConfigReader, Found
from svqtui.errors import ConfigError

if TYPE_CHECKING:
    from svqtui.sources.plugin import SourcePlugin

SHIPPED_DEFAULT = Path(__file__).resolve().parent / "default_config.yaml"
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class StuckConfig:
    after_s: float = 5.0
    in_flight: bool = True  # in-flight > 0 and the used index not moving
    kicks_without_calls: bool = True  # kicks rising while calls stay flat


DEFAULT_METRICS_PORT = 9469
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class MetricsListen:
    """Where the Prometheus exporter listens (svqtui.outputs.prometheus)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return self.host in ("localhost", "::1") or self.host.startswith("127.")


def parse_listen(text: str) -> MetricsListen:
    """``HOST:PORT``, ``[V6]:PORT``, ``:PORT`` or ``PORT`` (the last two on
    127.0.0.1: any other address must be written out; port 0: any free port,
    logged when serving). ValueError says why not."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"write an IPv6 address in brackets: [{host}]:{port_text}")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"expected HOST:PORT with a port from 0 to 65535, got {text!r}")
    if any(c.isspace() or c in "/[]" for c in host):
        raise ValueError(f"not a host name or address: {host!r}")
    return MetricsListen(host or LOOPBACK, int(port_text))


@dataclass(frozen=True, slots=True)
class Config:
    path: str = "<defaults>"
    refresh_s: float = 1.0
    history: int = 60
    stuck: StuckConfig = field(default_factory=StuckConfig)
    max_queues: int = 4096
    control_socket: str | None = None  # None: default_control_socket()
    metrics: MetricsListen | None = None  # None: no Prometheus exporter
    sections: Mapping[str, object] = field(default_factory=dict)  # source plug-in settings
    engine: EngineConfig = field(default_factory=lambda: EngineConfig())  # class: by _engine

    def section(self, plugin: SourcePlugin[S]) -> S:
        """A source plug-in's settings: as configured, or its default."""
        value = self.sections.get(plugin.section, plugin.default)
        return cast(S, value)

    def with_section(self, plugin: SourcePlugin[S], settings: S) -> Config:
        """This config with ``plugin``'s section replaced."""
        return dataclasses.replace(self, sections={**self.sections, plugin.section: settings})

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


def parse_config(text: str, path: str = "config.yaml") -> Config:
    """Validate YAML text as an svqtui configuration."""
    r = ConfigReader(path)
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
    plugins = _plugins()
    core = ("refresh", "history", "stuck", "engine", "control", "metrics")
    top = r.mapping(root, "", core + tuple(p.section for p in plugins))
    sections: dict[str, object] = {}
    for plugin in plugins:
        if plugin.section in top:
            node = top[plugin.section][1]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                continue
            sections[plugin.section] = plugin.parse(r, node, plugin.section)
    max_queues, engine = _engine(r, top)
    return Config(
        path=path,
        refresh_s=r.optional(top, "refresh", "", lambda n, k: r.number(n, k, 0.05, 60), 1.0),
        history=r.optional(top, "history", "", lambda n, k: r.integer(n, k, 2, 3600), 60),
        stuck=_stuck(r, top),
        max_queues=max_queues,
        control_socket=_control(r, top),
        metrics=_metrics(r, top),
        sections=sections,
        engine=engine,
    )


def _plugins() -> tuple[SourcePlugin[Any], ...]:
    from svqtui.sources.registry import SOURCE_PLUGINS  # the registry imports this module's users

    return SOURCE_PLUGINS


def _stuck(r: ConfigReader, top: Found) -> StuckConfig:
    if "stuck" not in top:
        return StuckConfig()
    found = r.mapping(top["stuck"][1], "stuck", ("after", "in_flight", "kicks_without_calls"))
    return StuckConfig(
        after_s=r.optional(found, "after", "stuck", lambda n, k: r.number(n, k, 0.1, 86400), 5.0),
        in_flight=r.optional(found, "in_flight", "stuck", r.boolean, True),
        kicks_without_calls=r.optional(found, "kicks_without_calls", "stuck", r.boolean, True),
    )


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """How the relay engine thread waits between notifications, and where it runs."""

    polling: str = "adaptive"  # one of POLLING_MODES
    poll_us: int = 200  # fixed: the spin window; adaptive: the longest one
    poll_cpu_budget: float = 0.2  # adaptive: fraction of a core spinning may use
    cpu: int | None = None  # pin the engine thread to this CPU; None: anywhere


POLLING_MODES = ("off", "adaptive", "fixed")


def _engine(r: ConfigReader, top: Found) -> tuple[int, EngineConfig]:
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


def _control(r: ConfigReader, top: Found) -> str | None:
    if "control" not in top:
        return None
    found = r.mapping(top["control"][1], "control", ("socket",))

    def socket(node: yaml.Node, key: str) -> str | None:
        value = r.path_text(node, key)
        return None if value == "auto" else value

    return r.optional(found, "socket", "control", socket, None)


def _metrics(r: ConfigReader, top: Found) -> MetricsListen | None:
    if "metrics" not in top:
        return None
    found = r.mapping(top["metrics"][1], "metrics", ("listen",))

    def listen(node: yaml.Node, key: str) -> MetricsListen | None:
        value = r.scalar(node, key)
        if value is None or value is False or (isinstance(value, str) and value == "off"):
            return None
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise r.fail(node, key, f"expected HOST:PORT or off, got {value!r}")
        try:
            return parse_listen(str(value))
        except ValueError as err:
            raise r.fail(node, key, str(err)) from None

    return r.optional(found, "listen", "metrics", listen, None)
