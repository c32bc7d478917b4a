"""The monitor's incremental rows equal rows built from scratch.

The monitor keeps a track per queue and hands out the previous ``QueueRow``
object again when nothing it shows changed (svqtui/monitor.py ``_row``). Here
``ScratchRows`` is the monitor's row arithmetic as it was before that (every
row built anew, every rule evaluated every time, no shortcut), and hypothesis
drives both over random sequences of counters, indices, masking, ring flags,
holds, source verdicts, connection, clock steps, early refreshes and queues
coming and going: every snapshot's rows must be equal.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svqtui.config import StuckConfig
from svqtui.control.codec import decode, encode
from svqtui.diagnosis import Timing, verdict
from svqtui.eventlog import EventLog
from svqtui.model import (
    DeviceView,
    History,
    MaskState,
    QueueRow,
    QueueView,
    StuckRule,
    VMView,
)
from svqtui.monitor import Monitor
from svqtui.virtio.split_ring import RingState
from tests.support.fake_source import FakeSource

HISTORY = 3  # short, so full histories of one repeated value occur
STUCK = StuckConfig(after_s=1.0)


@dataclasses.dataclass
class _Track:
    kicks: int | None = None
    calls: int | None = None
    used_idx: int | None = None
    used_changed_at: float = 0.0
    calls_changed_at: float = 0.0
    kicks_at_last_call: int = 0
    kicks_changed_at: float = 0.0
    avail_idx: int | None = None
    avail_changed_at: float = 0.0
    masked_at: float | None = None
    no_interrupt_at: float | None = None
    used_at_no_interrupt: int | None = None
    avail_seen: collections.deque[tuple[int, float]] = dataclasses.field(
        default_factory=collections.deque
    )
    dropped_kicks: int = 0
    last_kick_dropped: bool = False
    kick_rate: float = 0.0
    call_rate: float = 0.0
    history: collections.deque[float] = dataclasses.field(
        default_factory=lambda: collections.deque(maxlen=HISTORY)
    )


def _ring_indices(q: QueueView) -> tuple[int | None, int | None]:
    ring = q.ring
    if ring is not None and ring.avail_idx is not None and ring.used_idx is not None:
        return ring.avail_idx, ring.used_idx
    return q.avail_idx, q.used_idx


def _rate(before: int | None, after: int | None, dt: float | None) -> float:
    if before is None or after is None or not dt or after < before:
        return 0.0
    return (after - before) / dt


class ScratchRows:
    """Rows built from scratch at every refresh (the monitor's rules, plainly)."""

    def __init__(self) -> None:
        self.tracks: dict[str, _Track] = {}
        self.last_t: float | None = None

    def refresh(self, vms: list[VMView], now_ns: int, advance: bool) -> dict[str, QueueRow]:
        now = now_ns / 1e9
        dt = (now - self.last_t) if self.last_t is not None else None
        advance = advance or self.last_t is None
        rows = {}
        for vm in vms:
            for dev in vm.devices:
                for q in dev.queues:
                    row = self.row(vm, dev, q, now, now_ns, dt, advance)
                    rows[row.key] = row
        if advance:
            for gone in set(self.tracks) - set(rows):
                del self.tracks[gone]
            self.last_t = now
        return rows

    def row(
        self,
        vm: VMView,
        dev: DeviceView,
        q: QueueView,
        now: float,
        now_ns: int,
        dt: float | None,
        advance: bool,
    ) -> QueueRow:
        key = f"{dev.key}#{q.index}"
        track = self.tracks.get(key)
        if track is None:
            track = _Track(
                used_changed_at=now,
                calls_changed_at=now,
                kicks_changed_at=now,
                avail_changed_at=now,
                kicks_at_last_call=q.kicks or 0,
            )
            self.tracks[key] = track
        if advance:
            track.kick_rate = _rate(track.kicks, q.kicks, dt)
            track.call_rate = _rate(track.calls, q.calls, dt)
            avail, used = _ring_indices(q)
            if q.calls != track.calls:
                track.calls_changed_at = now
                track.kicks_at_last_call = q.kicks or 0
            if q.kicks != track.kicks:
                track.kicks_changed_at = now
                track.last_kick_dropped = q.dropped_kicks != track.dropped_kicks
            track.dropped_kicks = q.dropped_kicks
            if used != track.used_idx:
                track.used_changed_at = now
            if avail != track.avail_idx:
                track.avail_changed_at = now
            track.kicks, track.calls, track.used_idx = q.kicks, q.calls, used
            track.avail_idx = avail
            if q.mask not in (MaskState.MASKED, MaskState.PENDING):
                track.masked_at = None
            elif track.masked_at is None:
                track.masked_at = now
            no_interrupt = q.ring.no_interrupt if q.ring is not None else None
            if not no_interrupt:
                track.no_interrupt_at = track.used_at_no_interrupt = None
            elif track.no_interrupt_at is None:
                track.no_interrupt_at, track.used_at_no_interrupt = now, used
            if dt is not None:
                track.history.append(track.kick_rate + track.call_rate)
        found = self.diagnosis(q, track, now) if dev.connected else None
        stuck = self.stuck_reason(q, track, now, found) if dev.connected else None
        oldest_age = self.oldest_age(track, q, now)
        diagnosis = found[1] if found is not None else None
        return QueueRow(
            view=q,
            device_key=dev.key,
            vm_name=vm.name,
            device_name=dev.name,
            kick_rate=track.kick_rate,
            call_rate=track.call_rate,
            history=tuple(track.history),
            last_kick_age_s=(now_ns - q.last_kick_ns) / 1e9 if q.last_kick_ns else None,
            last_call_age_s=(now_ns - q.last_call_ns) / 1e9 if q.last_call_ns else None,
            stuck=stuck[1] if stuck else None,
            stuck_rule=stuck[0] if stuck else None,
            diagnosis=diagnosis,
            oldest_age_s=oldest_age,
        )

    @staticmethod
    def diagnosis(q: QueueView, track: _Track, now: float) -> tuple[str, str] | None:
        after = STUCK.after_s
        used_still = now - track.used_changed_at
        no_call = now - track.calls_changed_at if q.calls is not None else None
        no_kick = now - track.kicks_changed_at if q.kicks is not None else None
        masked = now - track.masked_at if track.masked_at is not None else None
        no_interrupt = now - track.no_interrupt_at if track.no_interrupt_at is not None else None
        quiet = [d for d in (used_still, no_call, no_kick, masked, no_interrupt) if d is not None]
        if not q.hold and max(quiet, default=0.0) < after:
            return None
        timing = Timing(
            after_s=after,
            used_still_s=used_still,
            no_call_s=no_call,
            no_kick_s=no_kick,
            avail_still_s=now - track.avail_changed_at,
            masked_s=masked,
            no_interrupt_s=no_interrupt,
            used_at_no_interrupt=track.used_at_no_interrupt,
            last_kick_dropped=track.last_kick_dropped,
        )
        return verdict(q, timing)

    @staticmethod
    def stuck_reason(
        q: QueueView, track: _Track, now: float, found: tuple[str, str] | None
    ) -> tuple[StuckRule, str] | None:
        after = STUCK.after_s
        in_flight = q.in_flight
        if STUCK.in_flight and in_flight and now - track.used_changed_at >= after:
            return StuckRule.IN_FLIGHT, (
                f"{in_flight} request(s) in flight, used index stuck at {q.used_idx} "
                f"for {now - track.used_changed_at:.0f}s"
            )
        unanswered = (q.kicks or 0) - track.kicks_at_last_call
        if (
            STUCK.kicks_without_calls
            and q.calls is not None
            and unanswered > 0
            and now - track.calls_changed_at >= after
        ):
            return StuckRule.KICKS_WITHOUT_CALLS, (
                f"{unanswered} kick(s) and no call for {now - track.calls_changed_at:.0f}s"
            )
        if STUCK.kicks_without_calls and found is not None and found[0] == "call_owed":
            return StuckRule.KICKS_WITHOUT_CALLS, (
                f"a call owed: used index at {_ring_indices(q)[1]}, "
                f"no call for {now - track.calls_changed_at:.0f}s"
            )
        return (StuckRule.SOURCE, q.stuck_hint) if q.stuck_hint else None

    @staticmethod
    def oldest_age(track: _Track, q: QueueView, now: float) -> float | None:
        avail, used = _ring_indices(q)
        seen = track.avail_seen
        if avail is None or used is None:
            seen.clear()
            return None
        if not seen or seen[-1][0] != avail:
            seen.append((avail, now))
        in_flight = (avail - used) & 0xFFFF
        while seen and not 0 < (seen[0][0] - used) & 0xFFFF <= in_flight:
            seen.popleft()
        if not in_flight or not seen:
            return None
        return now - seen[0][1]


# -- what hypothesis varies ---------------------------------------------------------

_queue_change = st.fixed_dictionaries(
    {
        "same": st.booleans(),  # hand the monitor the very same view object again
        "counted": st.booleans(),
        "kicks": st.sampled_from([0, 0, 0, 1, 3, -5]),  # -5: a counter reset
        "calls": st.sampled_from([0, 0, 0, 1, 2]),
        "avail": st.sampled_from([0, 0, 1, 2, 70_000]),
        "used": st.sampled_from([0, 0, 1, 2]),
        "indexed": st.booleans(),
        "ring": st.sampled_from([None, "indices", "no_interrupt", "flags_only", "event_idx"]),
        "dropped": st.sampled_from([0, 0, 0, 1]),  # kicks a fault dropped
        "mask": st.sampled_from([None, *MaskState]),
        "hold": st.booleans(),
        "kicked": st.booleans(),
        "hint": st.sampled_from([None, None, "device stalled"]),
    }
)
_step = st.fixed_dictionaries(
    {
        "advance": st.booleans(),
        "seconds": st.sampled_from([0.0, 0.05, 0.1, 0.5, 1.0, 2.5]),
        "connected": st.booleans(),
        "queues": st.lists(_queue_change, min_size=0, max_size=3),
    }
)


class _Queue:
    """One queue's raw state as the scripted source reports it."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.kicks = self.calls = self.avail = self.used = self.dropped = 0
        self.view: QueueView | None = None

    def view_for(self, change: dict[str, Any], now_ns: int) -> QueueView:
        if change["same"] and self.view is not None:
            return self.view
        self.kicks = max(0, self.kicks + change["kicks"])
        self.calls += change["calls"]
        self.avail = (self.avail + change["avail"]) & 0xFFFF
        self.used = (self.used + change["used"]) & 0xFFFF
        self.dropped += change["dropped"]
        counted, indexed = bool(change["counted"]), bool(change["indexed"])
        ring = None
        if change["ring"] == "indices":
            ring = RingState(16, False, False, False, 0, self.avail, 0, self.used)
        elif change["ring"] == "no_interrupt":
            ring = RingState(16, False, False, False, 1, self.avail, 0, self.used)
        elif change["ring"] == "event_idx":  # the guest wants a call past used - 1
            ring = RingState(16, True, False, False, 0, self.avail, 0, self.used)
            ring = dataclasses.replace(
                ring, used_event=(self.used - 1) & 0xFFFF, avail_event=(self.avail - 1) & 0xFFFF
            )
        elif change["ring"] == "flags_only":
            ring = RingState(16, False, False, False, 1)
        self.view = QueueView(
            index=self.index,
            kicks=self.kicks if counted else None,
            calls=self.calls if counted else None,
            mask=change["mask"],
            avail_idx=self.avail if indexed else None,
            used_idx=self.used if indexed else None,
            last_kick_ns=now_ns - 1000 if change["kicked"] else 0,
            ring=ring,
            hold=bool(change["hold"]),
            stuck_hint=change["hint"],
            dropped_kicks=self.dropped,
        )
        return self.view


@settings(max_examples=300, deadline=None)
@given(st.lists(_step, min_size=1, max_size=25))
def test_incremental_rows_equal_rows_built_from_scratch(steps: list[dict[str, Any]]) -> None:
    source = FakeSource()
    clock = [1_000_000_000_000]
    monitor = Monitor([source], None, EventLog(), STUCK, history=HISTORY, clock_ns=lambda: clock[0])
    scratch = ScratchRows()
    queues: list[_Queue] = []
    before: dict[str, QueueRow] = {}
    published: list[tuple[QueueRow, tuple[float, ...]]] = []
    for step in steps:
        clock[0] += int(step["seconds"] * 1e9)
        changes: list[dict[str, Any]] = step["queues"]
        while len(queues) < len(changes):
            queues.append(_Queue(len(queues)))
        del queues[len(changes) :]  # queues that went away come back with no history
        views = tuple(q.view_for(c, clock[0]) for q, c in zip(queues, changes, strict=True))
        dev = DeviceView(
            key="d",
            name="dev",
            kind="x",
            source="fake",
            connected=bool(step["connected"]),
            queues=views,
        )
        source.vms = [VMView(key="vm", name="vm", source="fake", devices=(dev,))]
        advance = bool(step["advance"])
        rows = monitor.refresh(advance=advance).rows
        expected = scratch.refresh(source.vms, clock[0], advance)
        assert rows == expected
        published += [(row, tuple(expected[key].history)) for key, row in rows.items()]
        for key, row in rows.items():  # a row handed out again shows what it showed
            if before.get(key) is row:
                assert row.view is views[row.view.index]
        before = dict(rows)
    for row, history in published:  # later refreshes never change a published history
        assert tuple(row.history) == history


def test_a_quiet_queue_keeps_its_row_object_until_something_it_shows_changes() -> None:
    source = FakeSource()
    clock = [1_000_000_000_000]
    monitor = Monitor([source], None, EventLog(), STUCK, history=2, clock_ns=lambda: clock[0])
    source.queue = QueueView(index=0, kicks=5, calls=5)
    rows = []
    for _ in range(5):
        clock[0] += 100_000_000
        rows.append(monitor.refresh().rows["d#0"])
    # the history fills with 0.0 (two refreshes), then nothing changes
    assert rows[3] is rows[2] and rows[4] is rows[2]
    source.queue = QueueView(index=0, kicks=6, calls=6)
    clock[0] += 100_000_000
    moved = monitor.refresh().rows["d#0"]
    assert moved is not rows[4] and moved.kick_rate == pytest.approx(10.0)


def test_a_history_is_a_tuple_to_its_readers() -> None:
    history = History([1.5, 2.25, 0.0])
    values = (1.5, 2.25, 0.0)
    assert history == values and values == history  # both operand orders
    assert hash(history) == hash((1.5, 2.25, 0.0)) and repr(history) == "(1.5, 2.25, 0.0)"
    assert history[-1] == 0.0 and history[1:] == (2.25, 0.0) and list(history) == [1.5, 2.25, 0.0]
    assert history != [1.5, 2.25, 0.0] and not History() and History() == ()
    row = QueueRow(QueueView(index=0), "d", "vm", "dev", history=history)
    same = QueueRow(QueueView(index=0), "d", "vm", "dev", history=(1.5, 2.25, 0.0))
    assert row == same and hash(row) == hash(same)
    assert json.dumps(encode(row)) == json.dumps(encode(same))
    assert decode(QueueRow, encode(row)) == row
