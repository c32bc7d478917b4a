"""Domain XML parsing: which devices a domain has, as libvirt writes them.

The XML below is the shape libvirt 9 returns for a running domain (aliases
assigned); no libvirt is needed to parse it."""

from __future__ import annotations

import pytest

from svqtui.sources.libvirt.domxml import parse_domain
from svqtui.sources.libvirt.errors import DomainXMLError

RUNNING = """<domain type='qemu' id='3'>
  <name>web1</name>
  <uuid>6f1c3f39-6c54-4c1b-9d5e-3f0b1a2c4d5e</uuid>
  <vcpu placement='static'>4</vcpu>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <devices>
    <disk type='vhostuser' device='disk'>
      <driver name='qemu' type='raw' queues='2'/>
      <source type='unix' path='/run/svqtui/blk0.sock'>
        <reconnect enabled='yes' timeout='10'/>
      </source>
      <target dev='vda' bus='virtio'/>
      <alias name='virtio-disk0'/>
    </disk>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2'/>
      <source file='/var/lib/libvirt/images/web1.qcow2'/>
      <target dev='vdb' bus='virtio'/>
      <alias name='virtio-disk1'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/iso/x.iso'/><target dev='sda' bus='sata'/><alias name='sata0-0-0'/>
    </disk>
    <interface type='vhostuser'>
      <mac address='52:54:00:aa:bb:cc'/>
      <source type='unix' path='/run/svqtui/net0.sock' mode='client'/>
      <model type='virtio'/>
      <driver queues='4'/>
      <alias name='net0'/>
    </interface>
    <interface type='network'>
      <mac address='52:54:00:11:22:33'/>
      <source network='default'/>
      <model type='virtio'/>
      <alias name='net1'/>
    </interface>
    <interface type='network'>
      <source network='default'/><model type='e1000e'/><alias name='net2'/>
    </interface>
    <filesystem type='mount'>
      <driver type='virtiofs' queue='1024'/>
      <source socket='/run/virtiofsd.sock'/>
      <target dir='share'/>
      <alias name='fs0'/>
    </filesystem>
    <controller type='scsi' index='0' model='virtio-scsi'><alias name='scsi0'/></controller>
    <memballoon model='virtio'><alias name='balloon0'/></memballoon>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend><alias name='rng0'/></rng>
  </devices>
</domain>"""


def test_every_virtio_device_with_its_alias_kind_queues_and_socket() -> None:
    """Virtio disks and interfaces, virtiofs, virtio-scsi, balloon and rng are
    found with libvirt's alias and kind; SATA and e1000e devices are not;
    vhost-user devices carry their socket path, queues come from the XML."""
    dom = parse_domain(RUNNING)
    assert (dom.name, dom.uuid, dom.vcpus, dom.shared_memory) == (
        "web1",
        "6f1c3f39-6c54-4c1b-9d5e-3f0b1a2c4d5e",
        4,
        True,
    )
    got = {d.alias: (d.kind, d.backend, d.socket_path, d.queues) for d in dom.devices}
    assert got == {
        "virtio-disk0": ("vhost-user-blk", "vhost-user", "/run/svqtui/blk0.sock", 2),
        "virtio-disk1": ("virtio-blk", "qemu", None, None),
        "net0": ("virtio-net", "vhost-user", "/run/svqtui/net0.sock", 4),
        "net1": ("virtio-net", "vhost", None, None),
        "fs0": ("vhost-user-fs", "vhost-user", "/run/virtiofsd.sock", 1024),
        "scsi0": ("virtio-scsi", "qemu", None, None),
        "balloon0": ("virtio-balloon", "qemu", None, None),
        "rng0": ("virtio-rng", "qemu", None, None),
    }
    disk = dom.devices[0]
    assert disk.qom_path == "/machine/peripheral/virtio-disk0/virtio-backend"
    assert (disk.target, disk.label) == ("vda", "virtio-disk0")


def test_an_inactive_domain_has_no_aliases_and_is_named_by_target() -> None:
    """Before a domain runs libvirt assigns no aliases: the device is labelled
    by its target and has no QOM path."""
    xml = RUNNING.replace("<alias name='virtio-disk1'/>", "")
    disk = next(d for d in parse_domain(xml).devices if d.target == "vdb")
    assert (disk.alias, disk.label, disk.qom_path) == ("", "vdb", None)


@pytest.mark.parametrize("xml", ["<domain", "<network><name>x</name></network>"])
def test_what_is_not_a_domain_is_a_precise_error(xml: str) -> None:
    """Broken XML or another document is DomainXMLError, saying which."""
    with pytest.raises(DomainXMLError):
        parse_domain(xml)
