"""The ``libvirt:`` config section and when the source runs (enabled: auto)."""

from __future__ import annotations

import pytest

from svqtui.config import parse_config
from svqtui.errors import ConfigError
from svqtui.sources.libvirt import settings
from svqtui.sources.libvirt.settings import PLUGIN, LibvirtConfig, libvirt_active


def test_the_section_parses_every_key() -> None:
    """uri, qmp, poll and enabled (auto/true/false) are read as written."""
    cfg = parse_config(
        "libvirt: {enabled: true, uri: 'qemu+ssh://h/system', qmp: on, poll: 2}\n", "c.yaml"
    )
    assert cfg.section(PLUGIN) == LibvirtConfig(True, "qemu+ssh://h/system", True, 2.0)
    assert parse_config("libvirt: {enabled: auto}\n").section(PLUGIN).enabled is None


def test_a_bad_value_names_file_line_and_key() -> None:
    """A wrong type is one line: file:line: libvirt.key: reason."""
    with pytest.raises(ConfigError) as err:
        parse_config("\nlibvirt:\n  qmp: maybe\n", "c.yaml")
    assert str(err.value).startswith("c.yaml:3: libvirt.qmp:")


def test_auto_needs_the_bindings_and_the_daemon_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    """auto is on only when the bindings import and libvirt's socket exists
    (the import check and the socket list are replaced here to pin both)."""
    auto = LibvirtConfig()
    monkeypatch.setattr(settings, "bindings_present", lambda: True)
    monkeypatch.setattr(settings, "SYSTEM_SOCKETS", ("/nonexistent/libvirt-sock",))
    assert not libvirt_active(auto)
    monkeypatch.setattr(settings, "SYSTEM_SOCKETS", ("/",))
    assert libvirt_active(auto)
    monkeypatch.setattr(settings, "bindings_present", lambda: False)
    assert not libvirt_active(auto)
    assert libvirt_active(LibvirtConfig(enabled=True))
    assert not libvirt_active(LibvirtConfig(enabled=False))
