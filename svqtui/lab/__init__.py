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

``svqtui lab`` (the live-migration demo) is built from those:

- ``layout``: the lab's work directory, its two slots and its svqtui config;
- ``disk``: one qemu-storage-daemon exporting the lab disk once per slot, stall;
- ``guest_watch``: the guest's health from its serial log, across migrations;
- ``qmp``: the lab's own blocking QMP session to a lab QEMU;
- ``interposers``: the lab's vhost-user source (idle slot hidden);
- ``source``: the lab VM as one row that follows it (``LabSource``);
- ``scenario``: start and stop everything in order (``Lab``), actions;
- ``migration``: the QEMU side of migrating the VM to its other slot, and its figures;
- ``check``: ``svqtui lab --check``, the unattended script;
- ``app``: the console in lab mode (keys M and S);
- ``cli``: ``svqtui lab`` argument parsing, signals and exit codes.
"""
