"""Scope, filter and sort of the queue table, on synthetic snapshots."""

from __future__ import annotations

import dataclasses

from svqtui.console.selection import (
    Scope,
    SortMode,
    device_vms,
    in_scope,
    matches,
    ordered,
)
from tests.support.console import synthetic_snapshot


def test_scope_picks_all_a_vm_or_a_device() -> None:
    """All shows every queue; a VM its devices' queues; a device its own."""
    snap = synthetic_snapshot(devices=4, queues=3)
    vm_of = device_vms(snap)

    def keys(scope: Scope) -> list[str]:
        return [k for k, r in snap.rows.items() if in_scope(r, scope, vm_of)]

    assert len(keys(Scope.all())) == 12
    assert keys(Scope.vm("syn:vm1")) == [f"syn:vm1/dev{d}#{i}" for d in (2, 3) for i in range(3)]
    assert keys(Scope.device("syn:vm0/dev1")) == [f"syn:vm0/dev1#{i}" for i in range(3)]


def test_filter_words_all_must_match() -> None:
    """Every word must occur: VM/device text, #N, qN and state words."""
    snap = synthetic_snapshot(devices=2, queues=3, stuck=frozenset({"syn:vm0/dev1#2"}))
    row = snap.rows["syn:vm0/dev1#2"]
    assert matches(row, "")
    assert matches(row, "vm0/dev1")
    assert matches(row, "DEV1 #2")
    assert matches(row, "q2 stuck")
    assert matches(row, "unmasked")
    assert not matches(row, "dev1 #1")
    assert not matches(snap.rows["syn:vm0/dev1#1"], "stuck")


def test_sort_modes() -> None:
    """NAME keeps source order; rates and in-flight put the largest first;
    STUCK puts stuck queues first; ties keep source order."""
    snap = synthetic_snapshot(devices=2, queues=3, stuck=frozenset({"syn:vm0/dev1#0"}))
    rows = list(snap.rows.values())
    names = [r.key for r in rows]
    assert ordered(rows, SortMode.NAME) == names
    by_kicks = ordered(rows, SortMode.KICKS)
    assert by_kicks[:2] == ["syn:vm0/dev0#2", "syn:vm0/dev1#2"]
    assert ordered(rows, SortMode.STUCK)[0] == "syn:vm0/dev1#0"
    busy = dataclasses.replace(rows[4], view=dataclasses.replace(rows[4].view, avail_idx=9))
    assert ordered([*rows[:4], busy, rows[5]], SortMode.IN_FLIGHT)[0] == busy.key


def test_sort_cycle_returns_to_name() -> None:
    """o goes through every mode once and comes back to NAME."""
    mode, seen = SortMode.NAME, []
    for _ in SortMode:
        mode = mode.next()
        seen.append(mode)
    assert seen[-1] is SortMode.NAME
    assert set(seen) == set(SortMode)
