"""Load and validate config.yaml into typed, immutable settings.

The file is parsed with PyYAML into nodes (not plain values) so that every
problem, an unknown key, a wrong type, a bad value, is reported as one
``ConfigError`` naming the file, the line and the dotted key. This module owns
the core settings (refresh, history, stuck, engine, control, record); each source
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
from svqtui.recording import settings as record_settings
from svqtui.recording.settings import RecordSettings

if TYPE_CHECKING:
    from svqtui.sources.plugin import SourcePlugin

SHIPPED_DEFAULT = Path(__file__).resolve().parent / "default_config.yaml"
S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class StuckConfig:
    after_s: float = 5.0
    in_flight: bool = True  # in-flight > 0 and the used index not moving
    kicks_without_calls: bool = True  # kicks rising while calls stay flat


@dataclass(frozen=True, slots=True)
class Config:
    path: str = "<defaults>"
    refresh_s: float = 1.0
    history: int = 60
    stuck: StuckConfig = field(default_factory=StuckConfig)
    max_queues: int = 4096
    control_socket: str | None = None  # None: default_control_socket()
    record: RecordSettings = field(default_factory=RecordSettings)  # the flight recorder
    sections: Mapping[str, object] = field(default_factory=dict)  # source plug-in settings

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
    core = ("refresh", "history", "stuck", "engine", "control", "record")
    top = r.mapping(root, "", core + tuple(p.section for p in plugins))
    sections: dict[str, object] = {}
    for plugin in plugins:
        if plugin.section in top:
            node = top[plugin.section][1]
            if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
                continue
            sections[plugin.section] = plugin.parse(r, node, plugin.section)
    return Config(
        path=path,
        refresh_s=r.optional(top, "refresh", "", lambda n, k: r.number(n, k, 0.05, 60), 1.0),
        history=r.optional(top, "history", "", lambda n, k: r.integer(n, k, 2, 3600), 60),
        stuck=_stuck(r, top),
        max_queues=_engine(r, top),
        control_socket=_control(r, top),
        record=record_settings.parse(r, top),
        sections=sections,
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


def _engine(r: ConfigReader, top: Found) -> int:
    if "engine" not in top:
        return 4096
    found = r.mapping(top["engine"][1], "engine", ("max_queues",))
    return r.optional(found, "max_queues", "engine", lambda n, k: r.integer(n, k, 1, 65536), 4096)


def _control(r: ConfigReader, top: Found) -> str | None:
    if "control" not in top:
        return None
    found = r.mapping(top["control"][1], "control", ("socket",))

    def socket(node: yaml.Node, key: str) -> str | None:
        value = r.path_text(node, key)
        return None if value == "auto" else value

    return r.optional(found, "socket", "control", socket, None)
