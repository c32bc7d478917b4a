"""The lab: a real guest to test svqtui against, and the processes around it.

One concern a module:

- ``cpio``: write and read newc cpio archives (the initramfs format);
- ``guest_init``: the guest's /init program and the kernel parameters that pace it;
- ``guest_image``: build and cache the guest kernel + busybox initramfs from
  the Debian packages installed on the host;
- ``console``: parse and follow the guest's serial console (``SVQ-*`` lines);
- ``process``: start and always stop a child process (its own process group);
- ``storage``: qemu-storage-daemon with a vhost-user-blk export;
- ``qemu_vm``: a QEMU (TCG) guest with vhost-user-blk disks and a QMP socket.
"""
