"""Fixtures for the QMP source tests: a QEMU launcher that always kills what it
started, a running I/O loop, an event log, and ``qmp_watch``, which starts
a ``QMPSource`` on given sockets and stops it after the test.

``qmp_watch`` is also the hook for tests with a booted guest (the root
conftest's ``booted_guest``/``boot_guest`` fixtures): point it at the
guest QEMU's QMP socket (``vm.spec.qmp_socket``) and read ring indices and
vhost state from ``collect()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.sources.base import SourceContext
from svqtui.sources.qmp import QMPSource, Timing
from svqtui.sources.qmp.settings import QMPConfig, QMPSocket
from tests.support.markers import QEMU, needs
from tests.support.qemu import QemuLab
from tests.support.qmp import TEST_TIMING, WatchFn


@pytest.fixture
@needs(QEMU)
def lab(tmp_path: Path) -> Iterator[QemuLab]:
    """A launcher for guestless QEMUs and storage daemons; all stopped after the test."""
    launcher = QemuLab(tmp_path)
    try:
        yield launcher
    finally:
        launcher.close()


@pytest.fixture
def io_loop() -> Iterator[IOLoop]:
    """A started I/O loop, stopped after the test."""
    loop = IOLoop("test-io")
    loop.start()
    try:
        yield loop
    finally:
        loop.stop()


@pytest.fixture
def event_log() -> EventLog:
    """An empty event log."""
    return EventLog()


@pytest.fixture
def qmp_watch(io_loop: IOLoop, event_log: EventLog) -> Iterator[WatchFn]:
    """Start a QMPSource on the given sockets (``discover`` off unless a ``scan``
    limited to the test's own processes is given); stopped after the test."""
    started: list[QMPSource] = []

    def watch(
        *sockets: Path | QMPSocket,
        timing: Timing = TEST_TIMING,
        scan: Callable[[int | None], list[Any]] | None = None,
        **kwargs: Any,
    ) -> QMPSource:
        socks = tuple(s if isinstance(s, QMPSocket) else QMPSocket(str(s)) for s in sockets)
        config = QMPConfig(sockets=socks, discover=scan is not None, poll_s=timing.poll_s)
        extra: dict[str, Any] = dict(kwargs)
        if scan is not None:
            extra["scan"] = scan
        source = QMPSource(config, timing=timing, **extra)
        # The QMP source never touches the relay engine: no engine is started here.
        source.start(SourceContext(None, io_loop, event_log))  # type: ignore[arg-type]
        started.append(source)
        return source

    try:
        yield watch
    finally:
        for source in started:
            source.stop()
