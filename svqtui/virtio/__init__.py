"""Virtio rings read from guest memory, for diagnosis: bounded, fault-proof, read-only.

Modules, one concern each: ``guest_memory`` (reads that cannot fault, by
guest-physical or front-end virtual address), ``split_ring`` (split ring
layout and notification suppression state), ``chain`` (descriptor chain
walker with bounds), ``inflight`` (the heads made available and not yet
used, oldest first), ``requests`` (virtio-blk / virtio-net / raw decoding of
a chain), ``inspect`` (all of it for one ring in one bounded call).
"""
