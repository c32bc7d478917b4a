"""The runtime: builds and owns the engine, the I/O loop, the sources and
the monitor for one svqtui process, and routes operator actions to the source
that owns a device.

Every front end (console, batch modes, headless, control socket) drives svqtui
through one Runtime, so they all behave the same.
"""

from __future__ import annotations

import resource

from svqtui.config import Config
from svqtui.engine import Engine, Link
from svqtui.errors import SvqtuiError
from svqtui.eventlog import EventLog
from svqtui.io_loop import IOLoop
from svqtui.model import DeviceView
from svqtui.monitor import Monitor
from svqtui.sources.base import Source, SourceContext
from svqtui.sources.errors import UnknownDevice
from svqtui.sources.registry import build_sources


class Runtime:
    """One svqtui process's moving parts, started and stopped together."""

    def __init__(
        self, config: Config, sources: list[Source] | None = None, *, clock: bool = True
    ) -> None:
        """``clock=False``: the monitor refreshes only when asked (tests that
        drive ``monitor.refresh()`` themselves)."""
        self._clock = clock
        self.config = config
        self.log = EventLog()
        self.engine = Engine(config.max_queues)
        self.loop = IOLoop(log=self.log)
        self.sources = sources if sources is not None else build_sources(config)
        self.monitor = Monitor(
            self.sources,
            self.engine,
            self.log,
            config.stuck,
            history=config.history,
            interval_s=config.refresh_s,
        )
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
        ctx = SourceContext(self.engine, self.loop, self.log)
        for source in list(self.sources):
            try:
                source.start(ctx)
            except SvqtuiError as err:
                self.log.error(f"{source.name}: {err}")
            except OSError as err:
                self.log.error(f"{source.name}: cannot start: {err}")
        if self._clock:
            self.monitor.start()

    def stop(self) -> None:
        if not self._started:
            return
        self.monitor.stop()
        for source in self.sources:
            try:
                source.stop()
            except Exception as err:  # stopping must reach every source
                self.log.error(f"{source.name}: error while stopping: {err}")
        self.loop.stop()
        self.engine.close()
        self._started = False

    def __enter__(self) -> Runtime:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
