"""What a source plug-in declares (docs/design.md#seams).

A ``SourcePlugin`` ties one config.yaml section to the sources it builds: the
section's parser and default, its block of the shipped config.yaml (with its
documentation in comments), whether it names explicit targets (which
turns the demo's ``auto`` off), and the unix sockets its settings bind or
connect to (``sockets``: svqtui.config.validate checks them all together, with
the control socket, before anything starts). svqtui.sources.registry lists the
plug-ins.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import yaml

from svqtui.config_nodes import ConfigReader

if TYPE_CHECKING:
    from svqtui.config import Config
    from svqtui.sources.base import Source

S = TypeVar("S")


@dataclass(frozen=True, slots=True)
class SocketUse:
    """One unix socket a config names: where, whether svqtui binds it
    (``listens``) or connects to it, and the key and line that set it."""

    path: str
    listens: bool
    key: str
    line: int | None = None


def no_sockets(settings: object) -> tuple[SocketUse, ...]:
    return ()


@dataclass(frozen=True)
class SourcePlugin(Generic[S]):
    """One config section and the sources it makes."""

    section: str  # the config.yaml key
    summary: str  # one line: what the source watches
    default: S  # the settings when the section is absent
    parse: Callable[[ConfigReader, yaml.Node, str], S]  # (reader, value node, key) -> settings
    build: Callable[[S, Config], list[Source]]  # settings, whole config -> sources to run
    names_targets: Callable[[S], bool]  # explicit devices/VMs (the demo's auto goes off)
    shipped: str  # this section's block of the shipped config.yaml, verbatim
    sockets: Callable[[S], tuple[SocketUse, ...]] = no_sockets  # for svqtui.config.validate
