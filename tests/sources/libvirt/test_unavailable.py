"""libvirt missing is one status line, never an error: no daemon, no bindings."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.engine import Engine
from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.sources.base import SourceContext
from svqtui.sources.libvirt import events
from svqtui.sources.libvirt.settings import LibvirtConfig
from svqtui.sources.libvirt.source import LibvirtSource, connect_failure
from tests.support.wait import wait_until


@pytest.fixture
def context() -> Iterator[SourceContext]:
    engine, loop = Engine(8), IOLoop("libvirt-test-io")
    engine.start()
    loop.start()
    try:
        yield SourceContext(engine, loop, EventLog())
    finally:
        loop.stop()
        engine.close()


def test_no_daemon_is_a_status_line_and_a_retry(context: SourceContext, tmp_path: Path) -> None:
    """With nothing listening at the URI's socket, the source lists nothing,
    says so in its status line (not connected), logs it once as info, and
    keeps retrying without error lines."""
    pytest.importorskip("libvirt", reason="libvirt Python bindings missing")
    uri = f"qemu+unix:///system?socket={tmp_path}/none.sock"
    source = LibvirtSource(LibvirtConfig(enabled=True, uri=uri))
    source.start(context)
    try:
        status = wait_until(
            lambda: (s := source.status()) and "no daemon" in s.message and s,
            10,
            what="the no-daemon status line",
        )
        assert not status.connected
        assert "is libvirtd running?" in status.message
        assert source.collect(context.engine.snapshot()) == []
        wait_until(lambda: True, 1.5)  # a few retries
        logged = context.log.since(0)[1]
        assert [e.level for e in logged] == ["info"]
    finally:
        source.stop()


def test_missing_bindings_is_a_status_line_with_the_install_hint(
    context: SourceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without the Python bindings (made unimportable here, as they are on a
    host without them) the status line says how to install them."""
    monkeypatch.setitem(sys.modules, "libvirt", None)  # import libvirt -> ImportError
    monkeypatch.setattr(events, "_module", None)
    source = LibvirtSource(LibvirtConfig(enabled=True))
    source.start(context)
    try:
        status = wait_until(
            lambda: (s := source.status()) and "bindings missing" in s.message and s,
            10,
            what="the missing-bindings status line",
        )
        assert not status.connected
        assert "python3-libvirt" in status.message and "libvirt-dev" in status.message
        assert all(e.level != "error" for e in context.log.since(0)[1])
    finally:
        source.stop()


class _Refusal:
    """libvirt's error object, shaped as libvirtError is (get_error_message,
    get_error_code): a real refusal needs a non-root user and polkit, which
    the suite does not have, so the classifier is fed libvirt's texts."""

    def __init__(self, message: str, code: int = 38) -> None:
        self.message, self.code = message, code

    def get_error_message(self) -> str:
        return self.message

    def get_error_code(self) -> int:
        return self.code


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (
            "Failed to connect socket to '/run/libvirt/libvirt-sock': Permission denied",
            "permission denied on qemu:///system (run svqtui as root or in the libvirt group)",
        ),
        (
            "Failed to connect socket to '/run/libvirt/libvirt-sock': No such file or directory",
            "no daemon answers at qemu:///system (is libvirtd running?)",
        ),
        ("authentication unavailable: no polkit agent available", "cannot connect to"),
    ],
)
def test_a_refused_connection_is_worded_by_its_cause(message: str, expected: str) -> None:
    """Permission denied, no daemon and anything else each give their own
    line, every one saying svqtui retries."""
    lv = pytest.importorskip("libvirt", reason="libvirt Python bindings missing")
    line = connect_failure(lv, "qemu:///system", _Refusal(message))
    assert expected in line and line.endswith("retrying")
