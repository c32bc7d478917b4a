"""QEMU's virtio state through libvirt's monitor pass-through (``libvirt.qmp: true``).

``DomainMonitor`` polls one domain the way the QMP source polls a VM, with the
same command choice (svqtui.sources.qmp.devices: ``x-query-virtio`` for the
device list, ``x-query-virtio-status`` per device, ``plan_queue_commands`` for
ring reads), sent through ``libvirt_qemu.qemuMonitorCommand``. It never sends
``x-query-virtio-queue-status`` to a device vhost may run (that command asks a
vhost-user back-end for the vring base, which stops the ring): the plan never
contains one, and ``_send_queue`` refuses it again.

Every command sent this way taints the domain ("custom-monitor") until it
stops; the source shows the taint. Calls block (5-11 ms each measured): they
run on the source's poll thread, never on a UI or I/O loop.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from svqtui.sources.libvirt.domxml import XmlDevice
from svqtui.sources.libvirt.errors import MonitorCommandFailed
from svqtui.sources.qmp.devices import (
    CMD_VHOST,
    NEVER_TO_VHOST,
    DeviceInfo,
    DeviceState,
    QueueCmd,
    device_ident,
    plan_queue_commands,
)

TOPOLOGY_EVERY = 5  # rounds between device re-listings (and after a device event)
QUEUE_BUDGET = 32  # queue commands per round at most


class DomainMonitor:
    """The QMP side of one running domain (one QEMU process)."""

    def __init__(self, libvirt: Any, libvirt_qemu: Any, dom: Any) -> None:
        self._libvirt = libvirt
        self._qemu = libvirt_qemu
        self.dom = dom
        self.devices: dict[str, DeviceState] = {}  # QOM path -> state
        self.round = 0
        self.topology_due = True
        self.commands_sent = 0
        self.error: str | None = None
        self._served: dict[QueueCmd, int] = {}

    def command(self, execute: str, arguments: Mapping[str, Any] | None = None) -> Any:
        """One QMP command's ``return``; ``MonitorCommandFailed`` on a QMP error
        or a libvirt refusal."""
        request: dict[str, Any] = {"execute": execute}
        if arguments:
            request["arguments"] = dict(arguments)
        self.commands_sent += 1
        try:
            raw = self._qemu.qemuMonitorCommand(self.dom, json.dumps(request), 0)
        except self._libvirt.libvirtError as err:
            raise MonitorCommandFailed(execute, str(err.get_error_message())) from err
        reply = json.loads(raw)
        if "error" in reply:
            err_desc = reply["error"].get("desc", "error") if isinstance(reply, dict) else "error"
            raise MonitorCommandFailed(execute, str(err_desc))
        return reply.get("return")

    def poll(self, xml_devices: tuple[XmlDevice, ...]) -> None:
        """One round: device list when due, each device's status, due ring reads."""
        self.round += 1
        self.error = None
        try:
            if self.topology_due or self.round % TOPOLOGY_EVERY == 1:
                self._refresh_topology(xml_devices)
            devices = list(self.devices.values())
            for dev in devices:
                self._poll_status(dev)
            for cmd in plan_queue_commands(devices, self.round, QUEUE_BUDGET, self._served):
                self._send_queue(cmd)
        except MonitorCommandFailed as err:
            self.error = str(err)

    def state_of(self, alias: str) -> DeviceState | None:
        return next((d for d in self.devices.values() if d.info.ident == alias), None)

    def _refresh_topology(self, xml_devices: tuple[XmlDevice, ...]) -> None:
        listing = self.command("x-query-virtio")
        by_alias = {d.alias: d for d in xml_devices if d.alias}
        present: dict[str, str] = {}
        for entry in listing if isinstance(listing, list) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get("path"), str):
                present[entry["path"]] = str(entry.get("name", "virtio"))
        for path in [p for p in self.devices if p not in present]:
            del self.devices[path]
        for path, vname in present.items():
            if path in self.devices:
                continue
            ident = device_ident(path)
            xml = by_alias.get(ident)
            self.devices[path] = DeviceState(
                DeviceInfo(
                    path=path,
                    virtio_name=vname,
                    ident=ident,
                    kind=xml.kind if xml is not None else vname,
                    socket_path=xml.socket_path if xml is not None else None,
                )
            )
        self.topology_due = False

    def _poll_status(self, dev: DeviceState) -> None:
        try:
            reply = self.command("x-query-virtio-status", {"path": dev.info.path})
        except MonitorCommandFailed as err:
            dev.status = None
            dev.error = f"x-query-virtio-status failed: {err.desc}"
            self.topology_due = True
            return
        dev.status = reply if isinstance(reply, Mapping) else None
        dev.error = None
        if not dev.vhost_started:
            dev.vhost_rings.clear()

    def _send_queue(self, cmd: QueueCmd) -> None:
        dev = self.devices.get(cmd.path)
        if dev is None:
            return
        if dev.vhost_capable and cmd.command in NEVER_TO_VHOST:
            return  # would stop a vhost ring or break the device (devices.py)
        store = dev.vhost_rings if cmd.command == CMD_VHOST else dev.queue_status
        try:
            reply = self.command(cmd.command, {"path": cmd.path, "queue": cmd.queue})
        except MonitorCommandFailed as err:
            store.pop(cmd.queue, None)
            dev.queue_errors[(cmd.queue, cmd.command)] = f"{cmd.command}: {err.desc}"
            return
        if isinstance(reply, Mapping):
            store[cmd.queue] = reply
            dev.queue_errors.pop((cmd.queue, cmd.command), None)
