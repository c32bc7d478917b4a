"""The source contract, checked over every source svqtui ships (and the shared
fake, so the suite itself is checked against a known-good source).

A source plug-in must: collect from memory with the engine copy it is handed,
report unique device keys that it owns (and nothing else), describe itself in
one status line under its own name and kind, refuse an action on a device it
does not have with an svqtui error (never a bare exception), and release every
fd on stop, idempotently. A new source is added to SOURCES below.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from svqtui.engine import Engine, Link
from svqtui.errors import SvqtuiError
from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.lab.interposers import LabInterposers
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.demo import DemoSource
from svqtui.sources.libvirt.settings import LibvirtConfig
from svqtui.sources.libvirt.source import LibvirtSource
from svqtui.sources.qmp import QMPSource
from svqtui.sources.qmp.settings import QMPConfig, QMPSocket
from svqtui.sources.vhost_user import VhostUserSource
from svqtui.sources.vhost_user.settings import VhostUserDevice
from tests.support.fake_source import FakeSource
from tests.support.vhost_user_rig import open_fds, wait_fds


def _vhost_user(tmp: Path) -> Source:
    # No QEMU connects and no back-end runs: the devices wait, listed.
    return VhostUserSource(
        [VhostUserDevice(f"c{i}", str(tmp / f"l{i}.sock"), str(tmp / f"b{i}.sock")) for i in (0, 1)]
    )


SOURCES: dict[str, Callable[[Path], Source]] = {
    "fake": lambda tmp: FakeSource(),
    "demo": lambda tmp: DemoSource(seed=3, autorun=False),
    "vhost-user": _vhost_user,
    "lab-interposers": lambda tmp: LabInterposers(_vhost_user(tmp)),  # type: ignore[arg-type]
    # no daemon at that socket: the source retries, saying so in its status line
    "libvirt": lambda tmp: LibvirtSource(
        LibvirtConfig(enabled=True, uri=f"qemu+unix:///system?socket={tmp}/no-libvirtd.sock")
    ),
    "qmp": lambda tmp: QMPSource(
        QMPConfig(sockets=(QMPSocket(str(tmp / "no-vm.qmp"), name="absent"),), discover=False)
    ),
}


@pytest.fixture
def context() -> Iterator[SourceContext]:
    engine, loop = Engine(64), IOLoop("contract-io")
    engine.start()
    loop.start()
    try:
        yield SourceContext(engine, loop, EventLog())
    finally:
        loop.stop()
        engine.close()


@pytest.fixture(params=sorted(SOURCES))
def started(
    request: pytest.FixtureRequest, context: SourceContext, tmp_path: Path
) -> Iterator[Source]:
    source = SOURCES[request.param](tmp_path)
    source.start(context)
    try:
        yield source
    finally:
        source.stop()


def test_collect_reports_unique_keys_the_source_owns(
    started: Source, context: SourceContext
) -> None:
    """Every device key collected is unique and owned; an unknown key is not."""
    views = started.collect(context.engine.snapshot())
    keys = [d.key for vm in views for d in vm.devices]
    assert len(keys) == len(set(keys))
    assert all(started.owns(k) for k in keys)
    assert not started.owns("no-such:device")
    assert all(isinstance(vm.source, str) and vm.source for vm in views)


def test_status_is_one_line_under_the_sources_name(started: Source) -> None:
    """status() names the source and its kind, in one line."""
    status = started.status()
    assert status.name == started.name and status.kind == started.kind
    assert "\n" not in status.message


@pytest.mark.parametrize(
    "action",
    [
        lambda s: s.set_shadow("no-such:device", True),
        lambda s: s.set_masked("no-such:device", 0, True),
        lambda s: s.inject("no-such:device", 0, Link.CALL),
    ],
    ids=["shadow", "mask", "inject"],
)
def test_an_action_on_an_unknown_device_is_an_svqtui_error(
    started: Source, action: Callable[[Source], None]
) -> None:
    """Actions on a device the source does not have raise a precise svqtui
    error (what the console and the control socket show as one line), never
    a bare exception and never a silent success."""
    with pytest.raises(SvqtuiError):
        action(started)


def test_reset_of_everything_or_of_an_unknown_device_never_escapes(started: Source) -> None:
    """reset(None) resets what the source has; an unknown device is an svqtui
    error or nothing (a source without counters has nothing to zero)."""
    started.reset(None)
    with contextlib.suppress(SvqtuiError):
        started.reset("no-such:device")


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_stop_releases_every_fd_and_can_be_repeated(
    name: str, context: SourceContext, tmp_path: Path
) -> None:
    """start + collect + stop leaves no fd behind; a second stop is harmless."""
    baseline = open_fds()
    source = SOURCES[name](tmp_path)
    source.start(context)
    source.collect(context.engine.snapshot())
    source.stop()
    source.stop()
    wait_fds(baseline, f"{name}: fds released after stop")
