"""Runtime.reload in-process, from config text (svqtui.reload and
svqtui.runtime): core settings apply or are reported as needing a restart,
a plug-in whose build inputs did not change keeps its very source objects,
one whose section changed is rebuilt (or reloaded in place), and an invalid
file changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from svqtui.config import parse_config
from svqtui.errors import ConfigError
from svqtui.runtime import Runtime
from svqtui.sources.demo import DemoSource
from svqtui.sources.qmp import QMPSource
from svqtui.sources.vhost_user import VhostUserSource

BASE = "refresh: 0.5\ndemo: {enabled: true, seed: 1}\nqmp: {discover: false}\n"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(BASE + f"control: {{socket: {tmp_path / 'c.sock'}}}\n")
    rt = Runtime(parse_config(cfg.read_text(), str(cfg)))
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


def _write(rt: Runtime, text: str) -> None:
    path = Path(rt.config.path)
    path.write_text(text + f"control: {{socket: {path.parent / 'c.sock'}}}\n")


def test_core_settings_apply_and_restart_only_ones_are_kept(runtime: Runtime) -> None:
    """refresh, history and stuck reach the monitor at once; engine.max_queues
    is reported as needing a restart and the running value is kept."""
    sources = list(runtime.sources)
    _write(
        runtime,
        BASE.replace("refresh: 0.5", "refresh: 0.25")
        + "history: 10\nstuck: {after: 2}\nengine: {max_queues: 128}\n",
    )
    report = runtime.reload_config()
    assert report.changes == (
        "refresh 0.5 s -> 0.25 s",
        "history 60 -> 10",
        "stuck rules (after 5 s, in_flight True, kicks_without_calls True) -> "
        "(after 2 s, in_flight True, kicks_without_calls True)",
    )
    assert report.restart == ("engine.max_queues 4096 -> 128",)
    assert runtime.monitor.interval_s == 0.25 and runtime.monitor.history == 10
    assert runtime.monitor.stuck.after_s == 2
    assert runtime.config.max_queues == 4096 and runtime.config.refresh_s == 0.25
    assert runtime.sources == sources  # the same objects: nothing rebuilt
    assert "needs a restart" in report.summary()


def test_an_unchanged_file_changes_nothing(runtime: Runtime) -> None:
    sources = list(runtime.sources)
    report = runtime.reload_config()
    assert report.changes == () and report.restart == ()
    assert runtime.sources == sources and "nothing changed" in report.summary()


def test_a_changed_section_rebuilds_that_plugins_sources_only(runtime: Runtime) -> None:
    """A new demo seed rebuilds the demo (a new, started source); turning QMP
    sockets on builds a QMP source; the monitor refreshes the new list."""
    (demo,) = runtime.sources
    assert isinstance(demo, DemoSource)
    _write(
        runtime,
        BASE.replace("seed: 1", "seed: 2").replace(
            "discover: false", "discover: false, sockets: [/nonexistent.qmp]"
        ),
    )
    report = runtime.reload_config()
    assert "demo: section changed: sources rebuilt (demo)" in report.changes
    assert any(line.startswith("qmp: section changed") for line in report.changes)
    new_demo, qmp = runtime.sources
    assert isinstance(new_demo, DemoSource) and new_demo is not demo
    assert isinstance(qmp, QMPSource)
    assert runtime.monitor.sources == runtime.sources
    snap = runtime.monitor.refresh_soon(wait=True)
    assert snap is not None and any(s.name == qmp.name for s in snap.sources)


def test_an_invalid_file_is_refused_and_nothing_changes(runtime: Runtime) -> None:
    """ConfigError naming file and key, one error event, the old config and
    sources kept (even the valid parts of the bad file are not applied)."""
    old, sources = runtime.config, list(runtime.sources)
    _write(runtime, BASE.replace("refresh: 0.5", "refresh: 0.25") + "nonsense: 1\n")
    with pytest.raises(ConfigError, match="nonsense"):
        runtime.reload_config()
    assert runtime.config is old and runtime.sources == sources
    assert runtime.monitor.interval_s == 0.5
    errors = [e for e in runtime.log.since(0)[1] if e.level == "error"]
    assert len(errors) == 1 and "reload refused" in errors[0].text


def test_vhost_user_devices_reload_in_place(tmp_path: Path) -> None:
    """devices: a device added listens; a removed one stops listening and its
    socket file is gone; a changed listen path moves; a changed shadow is
    the next connection's mode; the source object is the same throughout."""

    def devices(*items: str) -> str:
        return "demo: {enabled: false}\nqmp: {discover: false}\ndevices:\n" + "".join(items)

    def dev(name: str, listen: str, shadow: str = "off") -> str:
        backend = tmp_path / f"be-{name}.sock"  # every socket its own path (config rule)
        where = f"listen: {tmp_path / listen}, backend: {backend}"
        return f"  - {{name: {name}, {where}, shadow: {shadow}}}\n"

    cfg = tmp_path / "config.yaml"
    cfg.write_text(devices(dev("a", "a.sock"), dev("b", "b.sock")))
    rt = Runtime(parse_config(cfg.read_text(), str(cfg)), clock=False)
    rt.start()
    try:
        (source,) = rt.sources
        assert isinstance(source, VhostUserSource)
        cfg.write_text(devices(dev("a", "a2.sock"), dev("b", "b.sock", "on"), dev("c", "c.sock")))
        report = rt.reload_config()
        assert report.changes == (
            "devices: a: listen/backend changed: closed, listening again on "
            f"{tmp_path / 'a2.sock'}",
            "devices: b: shadow on from its next connection",
            f"devices: c: added, listening on {tmp_path / 'c.sock'}",
        )
        assert rt.sources == [source]
        assert not (tmp_path / "a.sock").exists()
        assert (tmp_path / "a2.sock").exists() and (tmp_path / "c.sock").exists()
        snap = rt.monitor.refresh()
        assert sorted(snap.devices) == ["vu:a", "vu:b", "vu:c"]
        assert "shadow on when QEMU connects" in snap.devices["vu:b"].shadow_note
        cfg.write_text(devices(dev("c", "c.sock")))
        report = rt.reload_config()
        assert report.changes == (
            "devices: a: removed (drained and closed)",
            "devices: b: removed (drained and closed)",
        )
        assert not (tmp_path / "a2.sock").exists() and not (tmp_path / "b.sock").exists()
        assert sorted(rt.monitor.refresh().devices) == ["vu:c"]
    finally:
        rt.stop()
    assert not (tmp_path / "c.sock").exists()
