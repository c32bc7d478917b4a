"""QMP faults: each broken socket gives one clear log line and a disconnected
row that keeps retrying, other VMs keep working, a dead QEMU's row turns
disconnected and a restarted one is picked up again.

The broken peers (garbage, hang-up mid-command, silence, an older QEMU) are
fake servers (tests/support/fake_qmp.py): a real QEMU here cannot behave that way.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from svqtui.engine import EngineSnapshot
from svqtui.eventlog import EventLog
from svqtui.sources.qmp import Timing
from tests.support.fake_qmp import FakeQMP
from tests.support.qemu import QemuLab, QemuSpec, virtio_blk_net
from tests.support.qmp import TEST_TIMING, WatchFn, connected_vm, log_lines, rows, vm
from tests.support.wait import wait_until

FAST_GIVE_UP = Timing(
    poll_s=0.2, connect_timeout_s=0.5, command_timeout_s=5.0, backoff_first_s=0.2, backoff_cap_s=1.0
)


def _refused(path: Path) -> None:
    """A socket file nobody listens on (a QEMU that died without cleaning up)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


Setup = Callable[[Path], object]
FAULTS: dict[str, tuple[Setup, str]] = {
    "missing": (lambda p: None, "no QMP socket at {path}"),
    "refused": (_refused, "connection refused at {path}"),
    "garbage": (lambda p: FakeQMP(p, "garbage"), "{path} does not speak QMP"),
    "closes mid-command": (
        lambda p: FakeQMP(p, "close-mid-command"),
        "{path} closed the connection during query-commands",
    ),
    "garbage reply": (
        lambda p: FakeQMP(p, "garbage-reply"),
        "{path} sent something that is not QMP during query-commands",
    ),
    "silent": (lambda p: FakeQMP(p, "silent"), "no QMP greeting from {path} within 0.5s"),
}


@pytest.fixture
def fakes() -> list[FakeQMP]:
    servers: list[FakeQMP] = []
    yield servers  # type: ignore[misc]
    for server in servers:
        server.close()


def _errors_about(log: EventLog, path: Path) -> list[str]:
    return [line for line in log_lines(log) if line.startswith("error:") and str(path) in line]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_broken_socket_gives_one_line_and_a_retrying_disconnected_row(
    fault: str, tmp_path: Path, qmp_watch: WatchFn, event_log: EventLog, fakes: list[FakeQMP]
) -> None:
    """A broken QMP socket shows as "disconnected: <reason>; retrying in Ns" and
    logs its reason once, on one line, however often the source retries."""
    path = tmp_path / "broken.qmp"
    setup, expected = FAULTS[fault]
    made = setup(path)
    if isinstance(made, FakeQMP):
        fakes.append(made)
    reason = expected.format(path=path)
    source = qmp_watch(path, timing=FAST_GIVE_UP)

    def backed_off() -> bool:
        row = vm(source, "broken")
        return row is not None and row.status.endswith("retrying in 1s")

    wait_until(backed_off, what="the backoff to reach its cap", describe=lambda: rows(source))
    row = vm(source, "broken")
    assert row is not None and not row.connected and not row.devices
    assert row.status.startswith(f"disconnected: {reason}"), row.status
    errors = _errors_about(event_log, path)
    assert len(errors) == 1, errors
    assert reason in errors[0] and "\n" not in errors[0]
    assert "Traceback" not in errors[0]


def test_faulty_sockets_do_not_stop_a_healthy_vm(
    lab: QemuLab, qmp_watch: WatchFn, fakes: list[FakeQMP]
) -> None:
    """With every kind of broken socket watched by the same source, a real QEMU
    is still connected and polled."""
    broken: list[Path] = []
    for i, (setup, _) in enumerate(FAULTS.values()):
        path = lab.path(f"b{i}.qmp")
        made = setup(path)
        if isinstance(made, FakeQMP):
            fakes.append(made)
        broken.append(path)
    qmp = lab.path("ok.qmp")
    lab.qemu(QemuSpec(qmp=qmp, name="healthy", devices=virtio_blk_net()))
    source = qmp_watch(*broken, qmp, timing=FAST_GIVE_UP)
    row = wait_until(
        lambda: connected_vm(source, "healthy"),
        what="the healthy VM",
        describe=lambda: rows(source),
    )
    assert {d.name for d in row.devices} == {"blk0", "net0"}
    others = [v for v in source.collect(EngineSnapshot.empty()) if v.name != "healthy"]
    assert len(others) == len(FAULTS) and not any(v.connected for v in others)
    status = source.status()
    assert status.connected and status.message.startswith(f"1/{len(FAULTS) + 1} VMs connected")


def test_qemu_without_x_query_virtio_is_listed_with_the_reason(
    tmp_path: Path, qmp_watch: WatchFn, event_log: EventLog, fakes: list[FakeQMP]
) -> None:
    """A QEMU older than 7.2 (no x-query-virtio commands) is a connected row with
    no devices whose status says why, and a warning is logged."""
    path = tmp_path / "old.qmp"
    fakes.append(FakeQMP(path, "qemu", version=(6, 2, 0)))
    source = qmp_watch(path)

    def listed() -> bool:
        row = vm(source, "old")
        return row is not None and row.connected and "lacks" in row.status

    wait_until(listed, what="the old QEMU's row", describe=lambda: rows(source))
    row = vm(source, "old")
    assert row is not None and not row.devices
    assert "QEMU 6.2.0 lacks x-query-virtio" in row.status and "7.2" in row.status
    assert any(line.startswith("warning:") and "lacks" in line for line in log_lines(event_log))


def test_killed_qemu_turns_disconnected_and_a_restarted_one_is_picked_up(
    lab: QemuLab, qmp_watch: WatchFn, event_log: EventLog
) -> None:
    """Killing QEMU turns its row disconnected (devices gone); a new QEMU on the
    same socket path is connected again with its devices."""
    qmp = lab.path("vm.qmp")
    spec = QemuSpec(qmp=qmp, name="phoenix", devices=virtio_blk_net())
    first = lab.qemu(spec)
    source = qmp_watch(qmp, timing=TEST_TIMING)
    wait_until(
        lambda: connected_vm(source, "phoenix"),
        what="the first QEMU",
        describe=lambda: rows(source),
    )
    first.kill()

    def down() -> bool:
        row = vm(source, "phoenix")
        return row is not None and not row.connected

    wait_until(down, what="the row to turn disconnected", describe=lambda: rows(source))
    row = vm(source, "phoenix")
    assert row is not None and row.status.startswith("disconnected: ") and not row.devices
    second = lab.qemu(spec)
    row = wait_until(
        lambda: connected_vm(source, "phoenix"),
        what="the restarted QEMU",
        describe=lambda: rows(source),
    )
    assert row.pid == second.pid != first.pid
    assert any("reconnected" in line for line in log_lines(event_log))
