"""The runtime: builds and owns the engine, the I/O loop, the sources and
the monitor for one svqtui process, and routes operator actions to the source
that owns a device.

Every front end (console, batch modes, headless, control socket) drives svqtui
through one Runtime, so they all behave the same. With ``record:`` enabled (or
``--record PATH``) it also runs the flight recorder (svqtui.recording.recorder)
on the monitor's snapshots.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable

from svqtui.config import Config, load_config
from svqtui.engine import Engine, Link
from svqtui.engine.faults import Fault
from svqtui.errors import ConfigError, SvqtuiError
from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.model import DeviceView, Snapshot
from svqtui.monitor import Monitor
from svqtui.recording.recorder import Recorder
from svqtui.reload import ReloadReport, build_inputs, core_changes
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.demo.settings import PLUGIN as DEMO_PLUGIN
from svqtui.sources.demo.settings import gives_way_to
from svqtui.sources.errors import UnknownDevice
from svqtui.sources.registry import SOURCE_PLUGINS, build_by_section
from svqtui.text_safety import safe_text


class Runtime:
    """One svqtui process's moving parts, started and stopped together."""

    def __init__(
        self,
        config: Config,
        sources: list[Source] | None = None,
        *,
        clock: bool = True,
        reread: Callable[[], Config] | None = None,
    ) -> None:
        """``clock=False``: the monitor refreshes only when asked (tests that
        drive ``monitor.refresh()`` themselves). ``reread`` loads the
        configuration again for ``reload_config()`` (default: the file
        ``config.path``); the command line passes one that keeps its overrides."""
        self._clock = clock
        self.config = config
        self.log = EventLog()
        self.engine = Engine(
            config.max_queues,
            polling=config.engine.polling,
            poll_us=config.engine.poll_us,
            poll_cpu_budget=config.engine.poll_cpu_budget,
            cpu=config.engine.cpu,
        )
        self.loop = IOLoop(log=self.log)
        # Sources by plug-in section (None: sources given by the caller, not reloaded).
        self._by_section = build_by_section(config) if sources is None else None
        self.sources = (
            sources
            if sources is not None
            else [s for built in (self._by_section or {}).values() for s in built]
        )
        self._reread = reread or (lambda: load_config(self.config.path))
        self._reloading = threading.Lock()
        self._ctx: SourceContext | None = None
        self.monitor = Monitor(
            self.sources,
            self.engine,
            self.log,
            config.stuck,
            history=config.history,
            interval_s=config.refresh_s,
        )
        self.recorder: Recorder | None = None  # the flight recorder (config: record)
        if config.record.active:
            self.recorder = Recorder(config.record, self.log, continuous=config.record.continuous)
        self._started = False

    def start(self) -> None:
        """Start the engine, the I/O loop, then every source. A source
        that fails to start is logged and left out; the rest go on."""
        raised = raise_fd_limit()
        if raised is not None:
            self.log.info(f"open-file limit raised from {raised[0]} to {raised[1]}")
        self.engine.start()
        self.loop.start()
        self._started = True
        ctx = self._ctx = SourceContext(self.engine, self.loop, self.log)
        for source in list(self.sources):
            self._start_source(source, ctx)
        if self.recorder is not None:
            self.recorder.attach(self.monitor)  # before the clock: it sees the first snapshot
        if self._by_section is not None:
            self.monitor.subscribe(self._demo_gives_way)
        if self._clock:
            self.monitor.start()

    def _start_source(self, source: Source, ctx: SourceContext) -> None:
        try:
            source.start(ctx)
        except SvqtuiError as err:
            self.log.error(f"{source.name}: {err}")
        except OSError as err:
            self.log.error(f"{source.name}: cannot start: {err}")

    def _stop_source(self, source: Source) -> None:
        try:
            source.stop()
        except Exception as err:  # stopping must reach every source
            self.log.error(f"{source.name}: error while stopping: {err}")

    def stop(self) -> None:
        if not self._started:
            return
        self.monitor.stop()
        if self.recorder is not None:
            self.recorder.stop()  # writes pending incident files, closes --record's file
        for source in self.sources:
            self._stop_source(source)
        self.loop.stop()
        self.engine.close()
        self._started = False

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reloading the configuration (docs/design.md#reload) --------------------

    @property
    def reload_lock(self) -> threading.Lock:
        """Held while a reload runs (a takeover holds it too: no reload may
        change the devices it is capturing)."""
        return self._reloading

    def reload_config(self) -> ReloadReport:
        """Read the configuration again and apply it (``reload``). Raises
        ``ConfigError`` when it is invalid, having changed nothing (and
        logged one line saying so)."""
        try:
            new = self._reread()
        except ConfigError as err:
            self.log.error(f"reload refused: {err}; the running configuration is kept")
            raise
        return self.reload(new)

    def reload(self, new: Config) -> ReloadReport:
        """Apply ``new`` to the running process: the monitor's settings, and
        per source plug-in either the source's own ``reload`` or a rebuild
        when its section changed. One reload at a time; the sources keep
        serving meanwhile (a vhost-user device that did not change is not touched)."""
        with self._reloading:
            started = time.monotonic()
            old = self.config
            in_effect, changes, restart = core_changes(old, new, self.monitor)
            if self._by_section is None:
                if any(
                    new.sections.get(p.section) != old.sections.get(p.section)
                    for p in SOURCE_PLUGINS
                ):
                    restart.append("sources (this runtime was given its sources in code)")
            else:
                changes += self._reload_sources(old, in_effect)
            self.config = in_effect
            report = ReloadReport(
                in_effect.path, tuple(changes), tuple(restart), time.monotonic() - started
            )
            self.log.info(report.summary())
        if self._started:
            self.monitor.refresh_soon(wait=False)
        return report

    def _reload_sources(self, old: Config, new: Config) -> list[str]:
        assert self._by_section is not None
        changes: list[str] = []
        by_section = dict(self._by_section)
        for plugin in SOURCE_PLUGINS:
            if build_inputs(plugin, old, SOURCE_PLUGINS) == build_inputs(
                plugin, new, SOURCE_PLUGINS
            ):
                continue
            running = by_section.get(plugin.section, [])
            settings = new.section(plugin)
            if len(running) == 1:  # a source that reloads in place keeps its connections
                lines = running[0].reload(settings)
                if lines is not None:
                    changes += [f"{plugin.section}: {line}" for line in lines]
                    continue
            if self._started:
                for source in running:
                    self._stop_source(source)
            built = plugin.build(settings, new)
            if self._started and self._ctx is not None:
                for source in built:
                    self._start_source(source, self._ctx)
            by_section[plugin.section] = built
            names = ", ".join(s.name for s in built) or "none"
            changes.append(f"{plugin.section}: section changed: sources rebuilt ({names})")
        self._by_section = by_section
        self.sources = [s for built in by_section.values() for s in built]
        self.monitor.set_sources(self.sources)
        return changes

    # -- the demo gives way to real VMs ---------------------------------------

    def _demo_gives_way(self, snapshot: Snapshot) -> None:
        """``demo: enabled: auto`` is for a machine with nothing else to show:
        once another source reports a VM (QMP discovery, libvirt), the demo
        stops for good (until a reload rebuilds it), with one line saying
        why. Called from the monitor's thread after each snapshot; a reload
        or takeover in progress defers it to the next one."""
        if not (self._by_section or {}).get(DEMO_PLUGIN.section):
            return
        found = gives_way_to(self.config, snapshot.vms)
        if found is None or not self._reloading.acquire(blocking=False):
            return
        try:
            assert self._by_section is not None
            demo = self._by_section.get(DEMO_PLUGIN.section, [])
            if not demo or gives_way_to(self.config, snapshot.vms) is None:
                return  # a reload changed it meanwhile
            self._by_section = {**self._by_section, DEMO_PLUGIN.section: []}
            self.sources = [s for built in self._by_section.values() for s in built]
            self.monitor.set_sources(self.sources)
        finally:
            self._reloading.release()
        for source in demo:
            self._stop_source(source)
        self.log.info(
            f"demo: off: {found.source} found VM {safe_text(found.name)!r} "
            "(demo: enabled: auto gives way to real VMs; enabled: true keeps it)"
        )
        self.monitor.refresh_soon()

    @property
    def owns_devices(self) -> bool:
        """This process runs the engine: quitting hands shadowed devices back."""
        return True

    # -- routing actions -----------------------------------------------------

    def device(self, name_or_key: str) -> DeviceView:
        """Find a device by key, by name, or by "vm/name"."""
        snap = self.monitor.latest or self.monitor.refresh_soon(wait=True)
        if snap is None:
            raise UnknownDevice(f"no device {name_or_key!r}: svqtui has not refreshed yet")
        if name_or_key in snap.devices:
            return snap.devices[name_or_key]
        matches = [
            d
            for vm in snap.vms
            for d in vm.devices
            if name_or_key in (d.name, f"{vm.name}/{d.name}")
        ]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise UnknownDevice(
                f"no device {name_or_key!r} (`svqtui --once` or `svqtui ctl status` lists them)"
            )
        raise UnknownDevice(
            f"{name_or_key!r} names {len(matches)} devices: use VM/DEVICE or the device key"
        )

    def _owner(self, device_key: str) -> Source:
        owner = self.monitor.owner(device_key)
        if owner is not None:
            return owner
        for source in self.sources:
            if source.owns(device_key):
                return source
        raise UnknownDevice(f"no source owns device {device_key!r} (was it disconnected?)")

    def set_shadow(self, device_key: str, on: bool) -> None:
        self._owner(device_key).set_shadow(device_key, on)

    def set_masked(self, device_key: str, queue: int, masked: bool) -> None:
        self._owner(device_key).set_masked(device_key, queue, masked)

    def set_fault(self, device_key: str, queue: int, fault: Fault | None) -> None:
        """Arm a fault on one queue's link, or clear its faults (None)."""
        self._owner(device_key).set_fault(device_key, queue, fault)

    def inject(self, device_key: str, queue: int, link: Link) -> None:
        self._owner(device_key).inject(device_key, queue, link)

    def reset(self, device_key: str | None = None) -> None:
        if device_key is None:
            for source in self.sources:
                source.reset(None)
        else:
            self._owner(device_key).reset(device_key)
        self.monitor.forget_rates()


def raise_fd_limit() -> tuple[int, int] | None:
    """Raise this process's open-file soft limit to its hard limit (to 2**20
    when the hard limit is unlimited) (docs/design.md#limits); (old, new)
    when raised, None when it already was there or cannot be raised."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= target:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        return None
    return soft, target
