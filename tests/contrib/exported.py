"""The metric names svqtui's exporter writes, for checking contrib/ against them."""

from __future__ import annotations

import dataclasses

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from svqtui.model import MigrationView, Snapshot
from svqtui.outputs.prometheus import SnapshotCollector, registry_of
from tests.support.console import synthetic_snapshot


@dataclasses.dataclass
class _Published:
    """What the collector reads of a monitor."""

    latest: Snapshot | None
    refresh_ms: float = 1.5


def exported_names() -> set[str]:
    """Every sample name the collector serves for a snapshot with queues, an
    engine, a source and a migrating VM (so that every family has samples)."""
    snap = synthetic_snapshot(2, 2)
    vm = dataclasses.replace(snap.vms[0], migration=MigrationView("active", 1, 2, 3, 4))
    snap = dataclasses.replace(
        snap,
        vms=(vm, *snap.vms[1:]),
        engine=dataclasses.replace(snap.engine, heartbeat_age_s=0.1),
    )
    registry = registry_of(SnapshotCollector(_Published(snap)))
    names = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        assert family.samples, f"{family.name} has no sample: extend exported_names()"
        names.update(s.name for s in family.samples)
    return names
