"""The lab's view of its interposers (svqtui.lab.interposers), with a real
VhostUserSource listening (no QEMU: the slots are idle)."""

from __future__ import annotations

from pathlib import Path

from svqtui.lab.interposers import LabInterposers
from svqtui.lab.layout import LabLayout, lab_config
from svqtui.runtime import Runtime
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.sources.vhost_user.settings import PLUGIN as VHOST_USER


def test_idle_slots_are_hidden_but_still_take_actions(tmp_path: Path) -> None:
    """Slots no QEMU is connected to are not listed (no DOWN rows between
    migrations) yet still belong to the source: a shadow mode set on an idle slot
    is accepted for its next connection."""
    layout = LabLayout(tmp_path)
    config = lab_config(layout)
    inner = VhostUserSource(config.section(VHOST_USER))
    with Runtime(config, sources=[LabInterposers(inner)]) as runtime:
        views = inner.collect(runtime.engine.snapshot())
        assert views and all(vm.connected for vm in views)
        assert runtime.monitor.refresh().vms == ()
        b = layout.slots[1]
        runtime.set_shadow(b.device_key, True)
        _, events = runtime.log.since(0)
        assert any("lab-b: shadow mode on from the next connection" in e.text for e in events)


def test_a_slot_that_cannot_listen_stays_visible(tmp_path: Path) -> None:
    """A slot whose socket path is taken by a regular file is shown, with the
    reason, instead of vanishing with the idle ones."""
    layout = LabLayout(tmp_path)
    layout.slots[0].listen.write_text("not a socket")
    config = lab_config(layout)
    with Runtime(
        config, sources=[LabInterposers(VhostUserSource(config.section(VHOST_USER)))]
    ) as runtime:
        vms = runtime.monitor.refresh().vms
        assert [vm.name for vm in vms] == ["lab-a"]
        assert "is not a socket" in vms[0].status
