"""Load and validate config.yaml into typed, immutable settings.

The file is parsed with PyYAML into nodes (not plain values) so that every
problem, an unknown key, a wrong type, a bad value, is reported as one
``ConfigError`` naming the file, the line and the dotted key. This module owns
the core settings (refresh, history, stuck, engine, control, metrics, record); each source
plug-in owns its own section (svqtui.sources.registry), kept in ``sections``.

Every input, however malformed (binary, not UTF-8, nested 10,000 deep, a
5,000-digit number), gives one ``ConfigError``; ``validate`` then checks
what spans sections, the unix socket paths, before anything starts. Relative
paths are taken from the config file's directory.

Lookup order when no path is given: ./config.yaml, then the user's config
directory ($XDG_CONFIG_HOME/svqtui/config.yaml), then the shipped default.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import yaml

from svqtui.config_nodes import ConfigReader, Found
from svqtui.errors import ConfigError
from svqtui.recording import settings as record_settings
from svqtui.recording.settings import RecordSettings

if TYPE_CHECKING:
    from svqtui.sources.plugin import SocketUse, SourcePlugin

SHIPPED_DEFAULT = Path(__file__).resolve().parent / "default_config.yaml"
MAX_CONFIG_BYTES = 1 << 20  # a config is a few KiB: anything past 1 MiB is not one
MAX_DEPTH = 32  # the deepest real config nests 4 levels
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
    control_line: int | None = None  # where control.socket is set
    record: RecordSettings = field(default_factory=RecordSettings)  # the flight recorder
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
    """Root: /run/svqtui/control.sock; others: $XDG_RUNTIME_DIR/svqtui/, else a
    private per-user directory /tmp/svqtui-UID/ (svqtui.control.rundir checks
    its owner and mode before anything is created in it)."""
    if os.geteuid() == 0:
        return "/run/svqtui/control.sock"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    base = Path(runtime) / "svqtui" if runtime else Path(f"/tmp/svqtui-{os.getuid()}")
    return str(base / "control.sock")


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
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            str(path), None, None, "no such file (check the -c/--config path)"
        ) from None
    except IsADirectoryError:
        raise ConfigError(str(path), None, None, "is a directory, not a config file") from None
    except OSError as err:
        raise ConfigError(str(path), None, None, f"cannot read: {err.strerror}") from None
    config = parse_config(data, str(path))
    validate(config, filesystem=True)
    return config


# -- the validator -----------------------------------------------------------


def decode(data: bytes, path: str) -> str:
    """Config bytes as text: UTF-8 only, else the line of the first bad byte."""
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(path, None, None, f"larger than {MAX_CONFIG_BYTES} bytes: not a config")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            path, line, None, f"not UTF-8 text (byte 0x{data[err.start]:02x}): save it as UTF-8"
        ) from None


def _yaml_line(err: yaml.YAMLError) -> int | None:
    if isinstance(err, yaml.MarkedYAMLError):
        mark = err.problem_mark or err.context_mark
        return mark.line + 1 if mark is not None else None
    return None


def _yaml_reason(err: yaml.YAMLError) -> str:
    if isinstance(err, yaml.reader.ReaderError):
        return f"not valid YAML: character {err.character!r} is not allowed"
    if isinstance(err, yaml.MarkedYAMLError):
        return f"not valid YAML: {err.problem or err.context or 'cannot parse'}"
    return f"not valid YAML: {err}"


def _check_depth(text: str, path: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before composing (the composer
    recurses), using the parser's event stream (which does not)."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                line = event.start_mark.line + 1 if event.start_mark else None
                raise ConfigError(
                    path, line, None, f"nested deeper than {MAX_DEPTH} levels: not a config"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def parse_config(text: str | bytes, path: str = "config.yaml") -> Config:
    """Validate YAML text (or bytes: UTF-8) as an svqtui configuration; the
    checks that need no filesystem (svqtui.config.validate) included.
    Raises ConfigError, and nothing else, whatever the input."""
    if isinstance(text, bytes):
        text = decode(text, path)
    try:
        _check_depth(text, path)
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        raise ConfigError(path, _yaml_line(err), None, _yaml_reason(err)) from None
    except RecursionError:  # a safety net: _check_depth bounds the nesting
        raise ConfigError(path, None, None, "nested too deeply: not a config") from None
    config = _build(ConfigReader(path), root, path)
    validate(config, filesystem=False)
    return config


def _build(r: ConfigReader, root: yaml.Node | None, path: str) -> Config:
    if root is None:
        return Config(path=path)
    plugins = _plugins()
    core = ("refresh", "history", "stuck", "engine", "control", "metrics", "record")
    top = r.mapping(root, "", core + tuple(p.section for p in plugins))
    sections: dict[str, object] = {}
    for plugin in plugins:
        if plugin.section in top:
            node = top[plugin.section][1]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                continue
            sections[plugin.section] = plugin.parse(r, node, plugin.section)
    max_queues, engine = _engine(r, top)
    control_socket, control_line = _control(r, top)
    return Config(
        path=path,
        refresh_s=r.optional(top, "refresh", "", lambda n, k: r.number(n, k, 0.05, 60), 1.0),
        history=r.optional(top, "history", "", lambda n, k: r.integer(n, k, 2, 3600), 60),
        stuck=_stuck(r, top),
        max_queues=max_queues,
        control_socket=control_socket,
        control_line=control_line,
        metrics=_metrics(r, top),
        record=record_settings.parse(r, top),
        sections=sections,
        engine=engine,
    )


# -- checks across sections (docs/design.md#limits) ----------------------------


def socket_uses(config: Config) -> list[SocketUse]:
    """Every unix socket the config names: the control socket, then each
    plug-in's (SourcePlugin.sockets)."""
    from svqtui.sources.plugin import SocketUse

    uses = [SocketUse(config.control_path, True, "control.socket", config.control_line)]
    for plugin in _plugins():
        if plugin.section in config.sections:
            uses.extend(plugin.sockets(config.sections[plugin.section]))
    return uses


def validate(config: Config, *, filesystem: bool = True) -> None:
    """The checks across sections, before anything starts: every socket path
    fits in a unix socket address, no two sockets are the same file (which
    also refuses a back-end that is one of svqtui's own listen sockets, the
    a <-> b cycle), and with ``filesystem`` each listen socket's directory
    exists (the control socket's is created when missing). Raises ConfigError."""
    from svqtui.unix_socket import MAX_PATH, path_length

    uses = socket_uses(config)
    for use in uses:
        if path_length(use.path) > MAX_PATH:
            raise ConfigError(
                config.path,
                use.line,
                use.key,
                f"{use.path} is {path_length(use.path)} bytes, longer than {MAX_PATH} "
                "(the AF_UNIX limit): use a shorter path",
            )
    if filesystem:
        for use in uses[1:]:
            if use.listens:
                _check_listen_dir(config, use)
    seen: dict[str, SocketUse] = {}
    for use in uses:
        where = _identity(use.path, filesystem)
        first = seen.get(where)
        if first is None:
            seen[where] = use
            continue
        at = f" (line {first.line})" if first.line is not None else ""
        if first.listens != use.listens:
            why = "svqtui would connect to its own socket (a loop through svqtui)"
        else:
            why = "two sockets cannot share one path"
        raise ConfigError(
            config.path, use.line, use.key, f"{use.path} is also {first.key}{at}: {why}"
        )


def _identity(path: str, filesystem: bool) -> str:
    """What makes two socket paths the same file: the normalised path, and
    with the filesystem the parent directory's real path (symlinks)."""
    if not filesystem:
        return os.path.normpath(path)
    parent, name = os.path.split(os.path.normpath(path))
    return os.path.join(os.path.realpath(parent), name)


def _check_listen_dir(config: Config, use: SocketUse) -> None:
    parent = os.path.dirname(use.path) or "."
    try:
        st = os.stat(parent)
    except FileNotFoundError:
        reason = f"the directory {parent} does not exist: create it or fix the path"
    except NotADirectoryError:
        reason = f"{parent} is not a directory: the socket cannot go under a file"
    except OSError as err:
        reason = f"cannot reach {parent}: {err.strerror}"
    else:
        if stat.S_ISDIR(st.st_mode):
            return
        reason = f"{parent} is not a directory: the socket cannot go under a file"
    raise ConfigError(config.path, use.line, use.key, reason)


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


def _control(r: ConfigReader, top: Found) -> tuple[str | None, int | None]:
    """control.socket (None: the default) and its line."""
    if "control" not in top:
        return None, None
    found = r.mapping(top["control"][1], "control", ("socket",))

    def socket(node: yaml.Node, key: str) -> str | None:
        if r.text(node, key) == "auto":
            return None
        return r.path_text(node, key)

    path = r.optional(found, "socket", "control", socket, None)
    return path, found["socket"][1].start_mark.line + 1 if path is not None else None


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
