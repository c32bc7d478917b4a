"""The lab's layout and configuration (svqtui.lab.layout): pure, no processes."""

from __future__ import annotations

from pathlib import Path

import pytest

from svqtui.errors import LabError
from svqtui.lab.layout import LabLayout, lab_config
from svqtui.sources.demo.settings import demo_active
from svqtui.sources.qmp.settings import PLUGIN as QMP
from svqtui.sources.vhost_user.settings import PLUGIN as VHOST_USER
from svqtui.unix_socket import SocketPathTooLong


def test_slots_have_distinct_sockets_and_the_other_slot_is_the_way_back(tmp_path: Path) -> None:
    """Each slot has its own interposer socket, export socket and two QMP sockets
    (svqtui's named for svqtui), none shared; ``other`` pairs a with b both ways."""
    layout = LabLayout(tmp_path)
    a, b = layout.slots
    paths = [p for s in (a, b) for p in (s.listen, s.backend, s.control_qmp, s.svqtui_qmp)]
    assert len(set(paths)) == 8
    assert all(p.parent == tmp_path for p in paths)
    assert "svqtui" in a.svqtui_qmp.name and "svqtui" not in a.control_qmp.name
    assert (a.device, a.device_key, b.device) == ("lab-a", "vu:lab-a", "lab-b")
    assert layout.other(a) == b and layout.other(b) == a
    assert a.serial_log == tmp_path / f"{a.vm_name}.serial"


def test_config_has_both_interposers_no_demo_no_discovery_and_a_short_stuck_threshold(
    tmp_path: Path,
) -> None:
    """The lab's runtime interposes both slots' devices (listen -> export), shows no
    demo VMs and no other QEMUs of the host, and flags a stall within seconds."""
    layout = LabLayout(tmp_path)
    config = lab_config(layout, shadow=True, stuck_after_s=0.7)
    assert [(d.name, d.listen, d.backend, d.shadow) for d in config.section(VHOST_USER)] == [
        (s.device, str(s.listen), str(s.backend), True) for s in layout.slots
    ]
    assert not demo_active(config)
    assert not config.section(QMP).discover and config.section(QMP).sockets == ()
    assert config.stuck.after_s == 0.7
    assert config.refresh_s <= 1.0


def test_create_makes_a_temporary_directory_or_uses_the_given_one(tmp_path: Path) -> None:
    """Without a directory the lab makes a temporary one (marked for removal); a given
    one is created if missing and kept."""
    temp = LabLayout.create()
    try:
        assert temp.temporary and temp.workdir.is_dir()
    finally:
        temp.workdir.rmdir()
    given = LabLayout.create(tmp_path / "sub")
    assert not given.temporary and (tmp_path / "sub").is_dir()


def test_too_long_or_comma_paths_are_refused_with_what_to_do(tmp_path: Path) -> None:
    """A work directory whose socket paths do not fit sun_path, or that QEMU's option
    syntax would split (a comma), is refused
    with one precise error naming the fix."""
    with pytest.raises(SocketPathTooLong, match=r"AF_UNIX limit\): use a shorter --workdir"):
        LabLayout.create(tmp_path / ("x" * 90))
    with pytest.raises(LabError, match="cannot contain ','"):
        LabLayout.create(Path("/tmp/a,b"))
