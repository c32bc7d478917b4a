"""The lab's disk: one qemu-storage-daemon exporting one raw image once per slot.

Both exports (vhost-user-blk, writable) serve the same block node, so the QEMU
on either slot sees the same disk: at a migration the source QEMU stops the
guest and drains its requests before the destination starts it, so only one
of them writes at a time and the guest's data stays consistent without any
copy. (Block exports share the node with every permission, so a second
writable export of it is allowed.) Stalling and resuming the back-end are
``StorageDaemon``'s (svqtui.lab.storage).
"""

from __future__ import annotations

from svqtui.lab.layout import LabLayout
from svqtui.lab.storage import Export, StorageDaemon

DISK_MB = 64
NUM_QUEUES = 2


class SharedDisk(StorageDaemon):
    """qemu-storage-daemon with one writable vhost-user-blk export per lab slot."""

    def __init__(
        self,
        layout: LabLayout,
        *,
        size_mb: int = DISK_MB,
        num_queues: int = NUM_QUEUES,
        start_timeout: float = 30.0,
    ) -> None:
        self.layout = layout
        exports = [
            Export(layout.disk_image, slot.backend, slot.export_id, num_queues)
            for slot in layout.slots
        ]
        super().__init__(
            exports=exports,
            size_mb=size_mb,
            start_timeout=start_timeout,
            stderr_path=layout.storage_log,
        )
