"""The AF_UNIX path limit, once: how long a unix socket path may be, and the check.

Linux's ``sockaddr_un.sun_path`` is 108 bytes, NUL included, so a path (as
bytes in the filesystem encoding) may be at most 107 bytes long. Every place
that binds or connects a unix socket (the control socket, the lab's sockets,
QEMU's and qemu-storage-daemon's) checks with ``check_path`` before it starts
anything, and fails with ``SocketPathTooLong`` naming the path and the fix.
``bind_private`` binds one with an exact mode and owner, whatever the umask;
``peer_uid`` reads who is at the other end of a connected one (SO_PEERCRED).
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import struct
import threading

from svqtui.errors import SvqtuiError

#: Longest unix socket path Linux accepts, in bytes (sun_path is 108 with the NUL).
MAX_PATH = 107


class SocketPathTooLong(SvqtuiError, ValueError):
    """A unix socket path longer than ``MAX_PATH`` bytes."""

    def __init__(self, path: str | os.PathLike[str], what: str, hint: str) -> None:
        self.path = os.fspath(path)
        self.what = what
        self.length = path_length(path)
        super().__init__(
            f"{what} socket path {self.path} is {self.length} bytes, longer than {MAX_PATH} "
            f"bytes (the AF_UNIX limit): {hint}"
        )


def path_length(path: str | os.PathLike[str]) -> int:
    """``path``'s length in bytes, as the kernel counts it."""
    return len(os.fsencode(path))


def fits(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` fits in a unix socket address."""
    return path_length(path) <= MAX_PATH


def check_path(
    path: str | os.PathLike[str], what: str, hint: str = "use a shorter directory"
) -> None:
    """``SocketPathTooLong`` if ``path`` does not fit in a unix socket address;
    ``what`` names the socket ("control", "QMP", ...), ``hint`` the fix."""
    if not fits(path):
        raise SocketPathTooLong(path, what, hint)


_umask_lock = threading.Lock()


def bind_private(
    sock: socket.socket,
    path: str,
    mode: int = 0o600,
    uid: int = -1,
    gid: int = -1,
) -> None:
    """Bind ``sock`` (not yet listening) to ``path`` with exactly ``mode`` and
    the given owner, whatever the umask: the file is created under umask 0177
    (no one else can connect even for an instant), then chown-ed (-1 keeps
    the owner/group) and chmod-ed by path. The caller calls ``listen()``
    after this returns, so nothing connects before the mode is final. The
    umask is process-wide: it is held narrow only around ``bind`` itself."""
    with _umask_lock:
        old = os.umask(0o177)
        try:
            sock.bind(path)
        finally:
            os.umask(old)
    try:
        if uid != -1 or gid != -1:
            os.lchown(path, uid, gid)
        _chmod_nofollow(path, mode)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise


def _chmod_nofollow(path: str, mode: int) -> None:
    """chmod ``path`` unless it has been swapped for a symlink since bind (in
    a directory others can write, root must not chmod the link's target)."""
    try:
        os.chmod(path, mode, follow_symlinks=False)
    except NotImplementedError:  # a symlink (or a libc without the flag)
        if stat.S_ISLNK(os.lstat(path).st_mode):
            raise OSError(errno.ELOOP, "replaced by a symlink after bind", path) from None
        os.chmod(path, mode)


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of the connected unix socket
    ``sock`` (SO_PEERCRED: fixed at connect/listen time), or None if unknown."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)
