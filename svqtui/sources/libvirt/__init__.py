"""The libvirt source: every libvirt domain by name, its virtio/vhost devices
from the domain XML, lifecycle and migration events, and (``libvirt.qmp``)
QEMU's virtio state through libvirt's monitor pass-through."""
