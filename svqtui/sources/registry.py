"""The source plug-ins svqtui knows, in display order (docs/design.md#seams).

Adding a source is one new package with a ``settings.PLUGIN`` listed here: its
section becomes a known config.yaml key, its block goes into the shipped
config (a test checks it is there), and ``build_sources`` runs it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from svqtui.sources.demo import settings as demo_settings
from svqtui.sources.libvirt import settings as libvirt_settings
from svqtui.sources.plugin import SourcePlugin
from svqtui.sources.qmp import settings as qmp_settings
from svqtui.sources.vhost_user import settings as vhost_user_settings

if TYPE_CHECKING:
    from svqtui.config import Config
    from svqtui.sources.base import Source

SOURCE_PLUGINS: tuple[SourcePlugin[Any], ...] = (
    demo_settings.PLUGIN,
    vhost_user_settings.PLUGIN,
    qmp_settings.PLUGIN,
    libvirt_settings.PLUGIN,
)


def plugin_for(section: str) -> SourcePlugin[Any] | None:
    return next((p for p in SOURCE_PLUGINS if p.section == section), None)


def build_sources(config: Config) -> list[Source]:
    """The sources config.yaml asks for, in display order."""
    return [s for built in build_by_section(config).values() for s in built]


def build_by_section(config: Config) -> dict[str, list[Source]]:
    """The sources config.yaml asks for, by plug-in section, in display order."""
    return {p.section: p.build(config.section(p), config) for p in SOURCE_PLUGINS}
