"""The ``libvirt:`` config section and the libvirt source's plug-in declaration."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

import yaml

from svqtui.config_nodes import ConfigReader
from svqtui.sources.plugin import SourcePlugin

if TYPE_CHECKING:
    from svqtui.config import Config
    from svqtui.sources.base import Source

DEFAULT_URI = "qemu:///system"
SYSTEM_SOCKET = "/run/libvirt/libvirt-sock"  # libvirtd's (or virtqemud's) socket
SYSTEM_SOCKETS = (SYSTEM_SOCKET, "/run/libvirt/virtqemud-sock")


@dataclass(frozen=True, slots=True)
class LibvirtConfig:
    enabled: bool | None = None  # None: "auto" (see libvirt_active)
    uri: str = DEFAULT_URI
    qmp: bool = False  # QEMU's virtio state through the monitor pass-through (taints)
    poll_s: float = 1.0


def parse(r: ConfigReader, node: yaml.Node, key: str) -> LibvirtConfig:
    found = r.mapping(node, key, ("enabled", "uri", "qmp", "poll"))

    def enabled(node: yaml.Node, key: str) -> bool | None:
        if isinstance(node, yaml.ScalarNode) and str(node.value).lower() == "auto":
            return None
        return r.boolean(node, key)

    return LibvirtConfig(
        enabled=r.optional(found, "enabled", key, enabled, None),
        uri=r.optional(found, "uri", key, r.text, DEFAULT_URI),
        qmp=r.optional(found, "qmp", key, r.boolean, False),
        poll_s=r.optional(found, "poll", key, lambda n, k: r.number(n, k, 0.1, 60), 1.0),
    )


def bindings_present() -> bool:
    """The libvirt Python bindings can be imported (without importing them)."""
    return importlib.util.find_spec("libvirt") is not None


def libvirt_active(settings: LibvirtConfig) -> bool:
    """On when forced; auto: on when the bindings import and, for the local
    system URI, libvirt's daemon socket exists (other URIs: bindings only)."""
    if settings.enabled is not None:
        return settings.enabled
    if not bindings_present():
        return False
    if settings.uri == DEFAULT_URI:
        return any(os.path.exists(p) for p in SYSTEM_SOCKETS)
    return True


def build(settings: LibvirtConfig, config: Config) -> list[Source]:
    if not libvirt_active(settings):
        return []
    from svqtui.sources.libvirt.source import LibvirtSource

    return [LibvirtSource(settings)]


PLUGIN: SourcePlugin[LibvirtConfig] = SourcePlugin(
    section="libvirt",
    summary="libvirt domains: names, devices from the domain XML, events, migration",
    default=LibvirtConfig(),
    parse=parse,
    build=build,
    names_targets=lambda settings: settings.enabled is True,
    shipped="""\
# libvirt: every domain of `uri` by name, its virtio/vhost devices from the
# domain XML (a vhost-user device on an interposer's listen socket shows
# libvirt's names with svqtui's counts), lifecycle and migration events.
# enabled: auto = on when the libvirt Python bindings import and libvirt's
# socket exists. qmp: true adds QEMU's virtio state (vhost state, plain devices'
# ring indices) through libvirt's monitor pass-through, which TAINTS each
# domain it touches ("custom-monitor", until the domain stops); false (the
# default) never taints and uses a read-only connection.
libvirt:
  enabled: auto
  uri: qemu:///system
  qmp: false
  poll: 1.0                  # seconds between polls of every domain
""",
)
