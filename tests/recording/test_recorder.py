"""The recorder: dumps on request (``svqtui ctl record dump``), retention,
atomic files, and a full filesystem that costs one log line and never a
refresh of the monitor."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.eventlog import EventLog
from svqtui.model import EngineStatus, MigrationView, Snapshot, VMView
from svqtui.recording.errors import RecorderOff, RecordingWriteFailed
from svqtui.recording.files import incident_name, prune
from svqtui.recording.reader import Recording
from svqtui.recording.recorder import Recorder
from svqtui.recording.settings import RecordSettings
from svqtui.runtime import Runtime
from svqtui.sources.demo import DemoSource
from tests.support.control import demo_runtime, make_config, serve
from tests.support.recording import stepped_runtime
from tests.support.wait import wait_until


def test_ctl_record_dump_writes_the_window(tmp_path: Path) -> None:
    """``record dump PATH`` over the control socket writes the recorded window
    to PATH, atomically (no temporary file left), and it replays."""
    record = RecordSettings(enabled=True, dir=str(tmp_path / "inc"))
    config = dataclasses.replace(make_config(tmp_path / "ctl.sock"), record=record)
    runtime = Runtime(config, [DemoSource(seed=7, autorun=False)])
    with serve(runtime) as served, served.client() as client:
        recorder = runtime.recorder
        assert recorder is not None
        wait_until(lambda: recorder.frames >= 3, 20, what="three recorded frames")
        target = tmp_path / "now.svqrec"
        assert client.record_dump(str(target)) == str(target)
        # a directory: a file named by host, time and cause inside it
        named = Path(client.record_dump(str(tmp_path)))
        assert named.parent == tmp_path and named.name.endswith("-request.svqrec")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    with Recording.open(target) as rec:
        assert rec.damage is None and len(rec) >= 3
        assert rec.header["cause"] == "request"


def test_dump_without_a_recorder_says_how_to_turn_it_on(tmp_path: Path) -> None:
    """A headless svqtui without record: answers with RecorderOff, naming the setting."""
    with (
        serve(demo_runtime(tmp_path / "ctl.sock")) as served,
        served.client() as client,
        pytest.raises(RecorderOff, match=r"record\.enabled"),
    ):
        client.record_dump()


def test_retention_keeps_the_newest_files(tmp_path: Path) -> None:
    """Beyond the file limit, or the byte limit, the oldest files go."""
    for i in range(5):
        p = tmp_path / incident_name("h", 1_700_000_000 + i, "stuck")
        p.write_bytes(b"x" * 1000)
        os.utime(p, (1_700_000_000 + i, 1_700_000_000 + i))
    removed = prune(tmp_path, "svqtui-*.svqrec", keep_files=3, keep_bytes=10**9)
    assert len(removed) == 2 and all("T2213" in p.name for p in removed)  # the two oldest
    removed = prune(tmp_path, "svqtui-*.svqrec", keep_files=10, keep_bytes=2500)
    assert len(removed) == 1
    assert len(list(tmp_path.iterdir())) == 2


@contextlib.contextmanager
def tiny_tmpfs(where: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (needs root: the test is marked), unmounted after."""
    where.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny tmpfs needs root")
def test_a_full_filesystem_is_one_log_line_and_no_stall(tmp_path: Path) -> None:
    """Recording continuously onto a 64 KiB filesystem: it fills, the log says
    so once, the dump request fails with a clear error, and the monitor keeps
    refreshing at its usual cost."""
    with tiny_tmpfs(tmp_path / "full") as full:
        # incident files off: one failure episode, the continuous file filling the disk
        settings = RecordSettings(
            enabled=True, dir=str(full), continuous=str(full / "c.svqrec"), on_stuck=False
        )
        runtime, demo = stepped_runtime(settings)
        runtime.start()
        try:
            recorder = runtime.recorder
            assert recorder is not None
            costs = []
            for n in range(1, 121):
                started = time.perf_counter()
                runtime.monitor.refresh()
                costs.append(time.perf_counter() - started)
                demo.advance(20)
                wait_until(lambda n=n: recorder.frames == n, 10, what="the recorder")
            wait_until(lambda: recorder.write_failures > 0, 10, what="a failed write")
            with pytest.raises(RecordingWriteFailed, match="No space left"):
                recorder.dump(str(full / "dump.svqrec"))
            assert runtime.monitor.seq == 120
            assert max(costs) < 1.0, "a refresh waited on the disk"
        finally:
            runtime.stop()
        _, events = runtime.log.since(0)
        failures = [e for e in events if e.level == "error" and "recording" in e.text]
        assert len(failures) == 1, [e.text for e in failures]
        assert "No space left" in failures[0].text
        first = min(full.glob("c*.svqrec"), key=lambda p: p.stat().st_mtime)
        with Recording.open(first) as rec:  # what fitted replays, up to the tear
            assert len(rec) > 0


def _vm_snapshot(t: float, status: str | None) -> Snapshot:
    migration = MigrationView(status) if status is not None else None
    vm = VMView(key="q:vm1", name="vm1", source="qmp", devices=(), migration=migration)
    engine = EngineStatus(alive=True, relays_per_s=0.0, queues=0, backlog=0)
    return Snapshot(t, (vm,), {}, engine, (), 1.0)


@pytest.mark.parametrize(
    ("statuses", "causes"),
    [
        ((None, "active", "completed"), ["migration-start"]),
        # shorter than a poll: the start was never seen, the end is
        ((None, "completed"), ["migration-start"]),
        (("none", "failed"), ["migration-start", "migration-failed"]),
        (("active", "failed"), ["migration-start", "migration-failed"]),
        # svqtui started after a migration ended: nothing started now
        (("completed", "completed"), []),
    ],
)
def test_a_migration_start_is_an_incident_even_when_its_start_was_missed(
    tmp_path: Path, statuses: tuple[str | None, ...], causes: list[str]
) -> None:
    """Each migration that svqtui sees start, or sees end without having seen
    it start (a migration shorter than the source's poll), is one
    migration-start incident; a failure adds migration-failed; a VM first
    seen after its migration completed is none."""
    recorder = Recorder(RecordSettings(enabled=True, dir=str(tmp_path)), EventLog())
    for i, status in enumerate(statuses):
        recorder._watch(_vm_snapshot(1000.0 + i, status))
    assert [i.cause for i in recorder._pending] == causes
