"""Batch modes as scripts use them: ``svqtui --once --json`` and
``svqtui --log --csv``, run as real subprocesses over the real demo."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from svqtui.batch import first_rated
from svqtui.config import StuckConfig
from svqtui.eventlog import EventLog
from svqtui.model import SourceStatus
from svqtui.monitor import Monitor
from tests.support.fake_source import FakeSource

TIMEOUT_S = 60
MASKS = {"UNMASKED", "MASKED", "PENDING"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text("refresh: 0.2\ndemo:\n  enabled: true\nqmp:\n  discover: false\n")
    return path


def svqtui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "svqtui", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_once_json_holds_vms_devices_queues(config: Path) -> None:
    """--once --json: VMs hold devices hold queues, each queue with integer
    kicks and calls, a mask word and a shadow flag; the demo relays in shadow."""
    done = svqtui("-c", str(config), "--once", "--json", "--no-discover", "--seed", "1")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["engine"]["alive"] is True
    assert data["interval_s"] == 0.2
    vms = data["vms"]
    assert [vm["name"] for vm in vms] == ["web01", "db01"]
    assert all(vm["label"] == "demo" for vm in vms)
    queues = [q for vm in vms for d in vm["devices"] for q in d["queues"]]
    assert len(queues) == 10
    for vm in vms:
        for dev in vm["devices"]:
            assert dev["shadow"] is True
            assert dev["key"].startswith("demo:")
            for q in dev["queues"]:
                assert isinstance(q["kicks"], int) and isinstance(q["calls"], int)
                assert q["mask"] in MASKS
                assert q["shadow"] is True
                assert q["kicks_per_s"] >= 0
    assert sum(q["kicks"] for q in queues) > 0, "the demo made notifications"


def test_once_json_is_repeatable_in_shape(config: Path) -> None:
    """Two runs with the same seed show the same devices and queue indices."""
    runs = [
        json.loads(svqtui("-c", str(config), "--once", "--json", "--seed", "1").stdout)
        for _ in range(2)
    ]
    shapes = [
        [(d["key"], [q["index"] for q in d["queues"]]) for vm in r["vms"] for d in vm["devices"]]
        for r in runs
    ]
    assert shapes[0] == shapes[1]


def test_log_csv_prints_a_header_and_count_lines(config: Path) -> None:
    """--log --csv --count 2: a header (time, kick/s and call/s per device),
    then exactly two lines of numbers."""
    done = svqtui("-c", str(config), "--log", "--csv", "--count", "2", "--no-discover")
    assert done.returncode == 0, done.stderr
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert len(rows) == 3
    header, *lines = rows
    assert header == [
        "time",
        "web01/net0:kick/s",
        "web01/net0:call/s",
        "db01/blk0:kick/s",
        "db01/blk0:call/s",
    ]
    for line in lines:
        assert len(line) == len(header)
        assert all(float(v) >= 0 for v in line[1:])
    assert any(float(v) > 0 for line in lines for v in line[1:]), "the demo is live"


class _SlowToAnswer(FakeSource):
    """A source whose first attempt has no outcome until ``answer`` is set
    (libvirt still connecting)."""

    def __init__(self) -> None:
        super().__init__("slow", "slow")
        self.answer = threading.Event()

    def status(self) -> SourceStatus:
        if self.answer.is_set():
            return SourceStatus(self.name, self.kind, False, "no daemon answers")
        return SourceStatus(self.name, self.kind, False, "starting", answered=False)


def test_once_waits_for_a_source_still_starting() -> None:
    """--once's snapshot is taken after every source answered (the CI flake:
    a libvirt source still "starting" when a loaded machine took the second
    refresh), and no longer than the answer wait when one never does."""
    slow = _SlowToAnswer()
    monitor = Monitor([slow], None, EventLog(), StuckConfig(), interval_s=0.05)
    monitor.start()
    try:
        threading.Timer(0.5, slow.answer.set).start()
        snap = first_rated(monitor, 0.05)
        assert [dataclasses.astuple(s)[3:] for s in snap.sources] == [("no daemon answers", True)]
    finally:
        monitor.stop()

    never = _SlowToAnswer()
    monitor = Monitor([never], None, EventLog(), StuckConfig(), interval_s=0.05)
    monitor.start()
    try:
        snap = first_rated(monitor, 0.05, answer_wait_s=0.3)
        assert [s.message for s in snap.sources] == ["starting"]
    finally:
        monitor.stop()
