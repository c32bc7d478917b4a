"""``svqtui lab --check`` as an operator runs it: a real subprocess with real QEMU,
qemu-storage-daemon and svqtui's interposer (about 25 s here), and the lab's
promise that it leaves no process behind on any exit path (SIGTERM included)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.lab import lab_processes
from tests.support.wait import wait_until

CHECK_TIMEOUT_S = 300.0
STEPS = (
    "boot",
    "live counters",
    "verified I/O",
    "shadow on",
    "mask/unmask",
    "stall back-end",
    "drop call / inject call",
    "migrate (shadow on)",
    "shadow off",
    "migrate back (shadow off)",
    "guest record",
    "cleanup",
)


def lab_command(workdir: Path, *extra: str) -> list[str]:
    """The check with the guest paused across each migration: the Debian QEMU 7.2
    TCG used here now and then corrupts a *live*-migrated guest on a loaded host
    (upstream bug, reproduced without svqtui; test_lab_scenario covers the live
    path and skips on exactly that crash), and a CI gate must not flake."""
    return [
        sys.executable,
        "-m",
        "svqtui",
        "lab",
        "--check",
        "--migration",
        "paused",
        "--workdir",
        str(workdir),
        *extra,
    ]


def test_check_passes_every_step_and_leaves_no_process(lab_workdir: Path) -> None:
    """The unattended demo exits 0 with one PASS line per step, in order (boot,
    shadow, mask/PENDING, stall/stuck, a dropped call diagnosed as owed and an
    injected call bringing the guest back, migration there with shadow on and back with
    it off, the guest's record), and no QEMU or qemu-storage-daemon of the run is
    left afterwards."""
    proc = subprocess.run(
        lab_command(lab_workdir),
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
    )
    lines = proc.stdout.splitlines()
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    steps = [line for line in lines if line.startswith(("PASS ", "FAIL ", "SKIP "))]
    assert [line.split("  ")[0][5:].strip() for line in steps[:-1]] == list(STEPS), report
    assert all(line.startswith("PASS ") for line in steps), report
    assert steps[-1].startswith(f"PASS lab check: {len(STEPS)}/{len(STEPS)} steps passed")
    (dropped,) = [line for line in steps if line.startswith("PASS drop call")]
    assert "device owes a call: used index" in dropped and "passed used_event" in dropped
    migrations = [line for line in steps if line.startswith("PASS migrate")]
    assert "a -> b (paused), shadow on" in migrations[0]
    assert "shadow carried to lab-b" in migrations[0]
    assert "b -> a (paused), shadow off" in migrations[1]
    assert lab_processes(lab_workdir) == []


def test_sigterm_mid_run_stops_every_lab_process(lab_workdir: Path) -> None:
    """SIGTERM while the check runs (after boot: QEMU and the daemon are up) ends it
    with status 1 and an 'interrupted' line, and the lab's processes are gone."""
    proc = subprocess.Popen(
        lab_command(lab_workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("PASS boot"), first + proc.stderr.read() if proc.stderr else ""
        assert lab_processes(lab_workdir), "the lab's processes should be running now"
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, out + err
    assert "FAIL lab check: interrupted" in out
    # the lab waited for them: this only covers process-table lag
    wait_until(
        lambda: lab_processes(lab_workdir) == [],
        what="no lab process left",
        describe=lambda: lab_processes(lab_workdir),
    )
