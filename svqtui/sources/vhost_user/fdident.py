"""Eventfd identities: which eventfd an fd number refers to.

Two processes (or two dups in one process) see the same eventfd under
different fd numbers; the kernel's ``eventfd-id`` in /proc/self/fdinfo is the
same everywhere, so it is what the console shows and what mask tracking
compares. It must be read while the fd is still open.
"""

from __future__ import annotations

import os


def eventfd_id(fd: int) -> int | None:
    """The kernel's eventfd-id of an open fd, or None (not an eventfd, or an
    older kernel without the field)."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("eventfd-id:"):
                    return int(line.split(":", 1)[1])
    except (OSError, ValueError):
        return None
    return None


def is_eventfd(fd: int) -> bool:
    """True when ``fd`` is an eventfd (any kernel: by its anon inode name).

    The engine writes 8-byte counters to destinations and reads sources: it
    must only ever be given eventfds, never a file or socket a peer passed."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
    except OSError:
        return False


def describe(ident: int | None) -> str:
    """A short label for an fd identity: ``eventfd-id 17`` or ``not an eventfd``."""
    return f"eventfd-id {ident}" if ident is not None else "not an eventfd"


def new_eventfd() -> int:
    """A nonblocking, close-on-exec eventfd owned by the caller."""
    return os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
