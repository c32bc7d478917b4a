"""A libvirt domain's virtio and vhost devices, from its domain XML.

Pure parsing, no libvirt calls: ``parse_domain(xml)`` gives the domain's
identity and a ``XmlDevice`` per virtio device (disks on the virtio bus,
virtio and vhost-user interfaces, virtiofs, vsock, rng, balloon, virtio-scsi
and virtio-serial controllers), with libvirt's alias, the queue count the XML
asks for, and the vhost-user socket path a vhost-user device connects to.
A device's alias names its QOM path: ``/machine/peripheral/<alias>/virtio-backend``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from svqtui.sources.libvirt.errors import DomainXMLError


@dataclass(frozen=True, slots=True)
class XmlDevice:
    """One virtio device of a domain, as its XML declares it."""

    alias: str  # libvirt's alias ("virtio-disk0", "net0", "ua-..."); "" before start
    kind: str  # "virtio-blk", "vhost-user-blk", "virtio-net", "vhost-user-fs", ...
    element: str  # the XML element ("disk", "interface", "filesystem", ...)
    target: str = ""  # what the guest knows it by: "vda", a MAC, a mount tag
    backend: str = "qemu"  # "qemu", "vhost-user", "vhost" (the kernel's vhost)
    socket_path: str | None = None  # the vhost-user unix socket QEMU connects to
    socket_mode: str | None = None  # "client" (QEMU connects) or "server"
    queues: int | None = None  # as the XML says; None: QEMU's default
    source: str = ""  # a disk's file/device, an interface's network/bridge

    @property
    def qom_path(self) -> str | None:
        return f"/machine/peripheral/{self.alias}/virtio-backend" if self.alias else None

    @property
    def label(self) -> str:
        """The name shown: the alias, or the target before the domain runs."""
        return self.alias or self.target or self.kind


@dataclass(frozen=True, slots=True)
class DomainXML:
    """What svqtui reads from a domain's XML."""

    name: str
    uuid: str
    vcpus: int
    devices: tuple[XmlDevice, ...]
    shared_memory: bool  # memoryBacking access mode='shared' (vhost-user needs it)


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _alias(el: ET.Element) -> str:
    alias = el.find("alias")
    return alias.get("name", "") if alias is not None else ""


def _queues(el: ET.Element) -> int | None:
    driver = el.find("driver")
    return _int(driver.get("queues")) if driver is not None else None


def _disk(el: ET.Element) -> XmlDevice | None:
    target = el.find("target")
    if target is None or target.get("bus") != "virtio":
        return None
    source = el.find("source")
    dev = target.get("dev", "")
    if el.get("type") == "vhostuser":
        return XmlDevice(
            alias=_alias(el),
            kind="vhost-user-blk",
            element="disk",
            target=dev,
            backend="vhost-user",
            socket_path=source.get("path") if source is not None else None,
            socket_mode="client",
            queues=_queues(el),
        )
    where = ""
    if source is not None:
        where = source.get("file") or source.get("dev") or source.get("name") or ""
    return XmlDevice(
        alias=_alias(el), kind="virtio-blk", element="disk", target=dev,
        queues=_queues(el), source=where,
    )  # fmt: skip


def _interface(el: ET.Element) -> XmlDevice | None:
    model = el.find("model")
    mac = el.find("mac")
    target = mac.get("address", "") if mac is not None else ""
    source = el.find("source")
    driver = el.find("driver")
    queues = _queues(el)
    if el.get("type") == "vhostuser":
        return XmlDevice(
            alias=_alias(el),
            kind="virtio-net",
            element="interface",
            target=target,
            backend="vhost-user",
            socket_path=source.get("path") if source is not None else None,
            socket_mode=source.get("mode") if source is not None else None,
            queues=queues,
        )
    if model is None or model.get("type") != "virtio":
        return None
    where = ""
    if source is not None:
        where = source.get("network") or source.get("bridge") or source.get("dev") or ""
    backend = "qemu" if driver is not None and driver.get("name") == "qemu" else "vhost"
    return XmlDevice(
        alias=_alias(el), kind="virtio-net", element="interface", target=target,
        backend=backend, queues=queues, source=where,
    )  # fmt: skip


def _filesystem(el: ET.Element) -> XmlDevice | None:
    driver = el.find("driver")
    if driver is None or driver.get("type") != "virtiofs":
        return None
    target = el.find("target")
    source = el.find("source")
    return XmlDevice(
        alias=_alias(el),
        kind="vhost-user-fs",
        element="filesystem",
        target=target.get("dir", "") if target is not None else "",
        backend="vhost-user",
        socket_path=source.get("socket") if source is not None else None,
        socket_mode="client",
        queues=_int(driver.get("queue")),
        source=source.get("dir", "") if source is not None else "",
    )


def _simple(el: ET.Element) -> XmlDevice | None:
    """vsock, rng, memballoon and the virtio controllers."""
    tag = el.tag
    model = el.get("model", "")
    kind = None
    backend = "qemu"
    if tag == "vsock" and model in ("virtio", ""):
        kind, backend = "vhost-vsock", "vhost"
    elif tag in ("rng", "memballoon") and model == "virtio":
        kind = "virtio-rng" if tag == "rng" else "virtio-balloon"
    elif tag == "controller" and el.get("type") == "virtio-serial":
        kind = "virtio-serial"
    elif tag == "controller" and el.get("type") == "scsi" and model == "virtio-scsi":
        kind = "virtio-scsi"
    if kind is None:
        return None
    return XmlDevice(alias=_alias(el), kind=kind, element=tag, backend=backend, queues=_queues(el))


_PARSERS = {
    "disk": _disk,
    "interface": _interface,
    "filesystem": _filesystem,
    "vsock": _simple,
    "rng": _simple,
    "memballoon": _simple,
    "controller": _simple,
}


def parse_domain(xml: str) -> DomainXML:
    """The domain's identity and virtio devices; ``DomainXMLError`` if ``xml``
    is not a domain."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise DomainXMLError(f"domain XML does not parse: {err}") from err
    if root.tag != "domain":
        raise DomainXMLError(f"expected a <domain> document, got <{root.tag}>")
    devices: list[XmlDevice] = []
    container = root.find("devices")
    for el in container if container is not None else ():
        parser = _PARSERS.get(el.tag)
        dev = parser(el) if parser is not None else None
        if dev is not None:
            devices.append(dev)
    access = root.find("memoryBacking/access")
    return DomainXML(
        name=root.findtext("name", ""),
        uuid=root.findtext("uuid", ""),
        vcpus=_int(root.findtext("vcpu")) or 1,
        devices=tuple(devices),
        shared_memory=access is not None and access.get("mode") == "shared",
    )
