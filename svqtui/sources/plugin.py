"""What a source plug-in declares (docs/design.md#seams).

A ``SourcePlugin`` ties one config.yaml section to the sources it builds: the
section's parser and default, its block of the shipped config.yaml (with its
documentation in comments), and whether it names explicit targets (which
turns the demo's ``auto`` off). svqtui.sources.registry lists the plug-ins.
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
