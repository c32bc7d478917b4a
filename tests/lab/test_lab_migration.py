"""Pieces of the lab's migration that need no QEMU (svqtui.lab.migration)."""

from __future__ import annotations

import dataclasses

import pytest

from svqtui.lab.errors import MigrationFailed
from svqtui.lab.migration import MigrationResult, Mode, incoming_port


def test_incoming_port_is_the_one_qemu_bound() -> None:
    """``migrate-incoming tcp:127.0.0.1:0`` lets the kernel pick a free port; the
    destination's query-migrate names it (QEMU 7.2 reply shape, port as a string)."""
    reply = {
        "socket-address": [{"port": "44697", "ipv4": True, "host": "127.0.0.1", "type": "inet"}]
    }
    assert incoming_port(reply) == 44697


@pytest.mark.parametrize(
    "reply",
    [
        {},
        {"status": "completed"},
        {"socket-address": [{"type": "unix", "path": "/x"}]},
        {"socket-address": [{"type": "inet", "port": "0"}]},
        {"socket-address": [{"type": "inet", "port": "http"}]},
        None,
    ],
)
def test_no_usable_port_is_a_migration_failure(reply: object) -> None:
    """A reply without a usable TCP port raises MigrationFailed instead of migrating
    to a wrong port."""
    with pytest.raises(MigrationFailed, match="did not say which port"):
        incoming_port(reply)


def test_result_summary_and_view_carry_qemus_figures() -> None:
    """The summary line names direction, shadow mode and QEMU's total time, downtime
    and bytes; the view the console shows is a completed migration with them."""
    result = MigrationResult("a", "b", True, Mode.LIVE, 693, 30, 3, 97_567_689, 1.2, 17)
    assert result.summary() == (
        "a -> b, shadow on: total 693 ms, downtime 30 ms, 93 MiB sent, "
        "1.2s with QEMU start and quit"
    )
    paused = dataclasses.replace(result, mode=Mode.PAUSED)
    assert paused.summary().startswith("a -> b (paused), shadow on: ")
    view = result.view()
    assert (view.status, view.total_time_ms, view.downtime_ms, view.remaining) == (
        "completed",
        693,
        30,
        0,
    )
