"""A lab run is recorded (real QEMU, qemu-storage-daemon and guest): the
recording replays the migration rows, and the migration's start wrote an
incident file beside it."""

from __future__ import annotations

from pathlib import Path

import pytest

from svqtui.lab.migration import Mode
from svqtui.lab.scenario import Lab, LabOptions
from svqtui.lab.source import VM_KEY
from svqtui.recording.reader import Recording
from tests.support.wait import wait_until

WAIT_S = 90.0


@pytest.mark.qemu
def test_a_lab_migration_replays_its_migration_rows(lab_workdir: Path) -> None:
    """Record a lab run with one (paused: reliable under TCG) migration; the
    recording shows the lab VM migrating then completed, with QEMU's figures,
    and a migration-start incident file was written in the same directory."""
    path = lab_workdir / "rec" / "lab.svqrec"
    with Lab(LabOptions(workdir=lab_workdir, migration=Mode.PAUSED, record=path)) as lab:
        lab.start()
        wait_until(
            lambda: (
                lab.runtime.monitor.latest is not None
                and any(vm.key == VM_KEY for vm in lab.runtime.monitor.latest.vms)
            ),
            WAIT_S,
            what="the lab VM",
        )
        lab.migrate()
        recorder = lab.runtime.recorder
        assert recorder is not None
        seen = recorder.frames
        wait_until(lambda: recorder.frames > seen + 3, WAIT_S, what="frames after the migration")
    with Recording.open(path) as rec:
        assert rec.damage is None
        statuses = []
        for i in range(len(rec)):
            vm = next((v for v in rec.frame(i).snapshot.vms if v.key == VM_KEY), None)
            if vm is not None and vm.migration is not None:
                statuses.append(vm.migration.status)
        assert statuses and statuses[-1] == "completed"
        last = next(v for v in rec.frame(len(rec) - 1).snapshot.vms if v.key == VM_KEY)
        assert last.migration is not None and last.migration.total_time_ms
    starts = list(path.parent.glob("svqtui-*-migration-start.svqrec"))
    assert len(starts) == 1
    with Recording.open(starts[0]) as rec:
        assert rec.header["cause"] == "migration-start" and len(rec) > 0
