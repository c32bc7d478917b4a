"""Owning a control socket path: one svqtui per socket, mode 0600, no stale files.

``SocketFile.claim()`` takes an exclusive ``flock`` on ``PATH.lock`` (which
holds the owner's pid), so two svqtui cannot serve one socket even when they
start at the same moment. Holding the lock, a socket file left at PATH by a
process that died is stale and is replaced; one that still accepts
connections belongs to something else, and claiming fails. The new socket is
bound under a temporary name, made 0600 and renamed over PATH, so it is never
reachable with a wider mode. ``remove_socket()`` unlinks PATH only while it is
still the socket this process bound; ``release()`` drops the lock last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat

from svqtui.control.errors import ControlSocketInUse
from svqtui.errors import ControlError
from svqtui.unix_socket import check_path, fits

SOCKET_MODE = 0o600
DIR_MODE = 0o700


def probe(path: str, timeout: float = 1.0) -> bool:
    """True when something accepts connections on the unix socket ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(path)
        except OSError:
            return False
        return True


class SocketFile:
    """The control socket file (and its lock) of one svqtui process."""

    def __init__(self, path: str) -> None:
        self.path = os.path.abspath(path)
        self.lock_path = self.path + ".lock"
        self._lock_fd: int | None = None
        self._ino: int | None = None

    def claim(self, backlog: int = 16) -> socket.socket:
        """Lock PATH, replace a stale socket, and return a listening socket.

        Raises ``ControlSocketInUse`` when another svqtui (or anything else)
        serves PATH, ``SocketPathTooLong`` when PATH is too long for a unix
        socket, ``ControlError`` when PATH cannot be used otherwise.
        """
        check_path(self.path, "control", "set control.socket in the config to a shorter path")
        parent = os.path.dirname(self.path)
        try:
            os.makedirs(parent, mode=DIR_MODE, exist_ok=True)
        except OSError as err:
            raise ControlError(
                f"cannot create the control socket directory {parent}: {err.strerror} "
                "(set control.socket in the config to a writable place)"
            ) from None
        self._lock()
        try:
            self._check_existing()
            sock = self._bind(backlog)
        except BaseException:
            self.release()
            raise
        return sock

    def _lock(self) -> None:
        for _ in range(10):
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, SOCKET_MODE)
            except OSError as err:
                raise ControlError(
                    f"cannot open the lock file {self.lock_path}: {err.strerror} "
                    "(does another user run svqtui with this control socket?)"
                ) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _read_pid(fd)
                os.close(fd)
                who = f"another svqtui (pid {owner})" if owner else "another svqtui"
                raise ControlSocketInUse(
                    f"{who} is serving the control socket {self.path}: stop it first, "
                    "drive it with `svqtui ctl`, or give this one its own control.socket"
                ) from None
            # The previous owner unlinks the lock file on exit: make sure the
            # file we locked is still the one at lock_path, else lock again.
            try:
                same = os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                self._lock_fd = fd
                return
            os.close(fd)
        raise ControlError(f"cannot lock {self.lock_path}: it keeps being replaced")

    def _check_existing(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(
                f"{self.path} exists and is not a socket: remove it, or set "
                "control.socket in the config to another path"
            )
        if probe(self.path):
            raise ControlSocketInUse(
                f"something other than svqtui is listening on the control socket {self.path}: "
                "stop it or set control.socket in the config to another path"
            )
        # A stale socket of an svqtui that died: _bind renames over it.

    def _bind(self, backlog: int) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        parent, name = os.path.split(self.path)
        tmp = os.path.join(parent, f".{name}.{os.getpid()}")
        try:
            if fits(tmp):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                sock.bind(tmp)
                os.chmod(tmp, SOCKET_MODE)
                os.rename(tmp, self.path)
            else:  # no room for a temporary name: bind in place, then narrow
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                sock.bind(self.path)
                os.chmod(self.path, SOCKET_MODE)
            sock.listen(backlog)
            self._ino = os.lstat(self.path).st_ino
        except OSError as err:
            sock.close()
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise ControlError(
                f"cannot create the control socket {self.path}: {err.strerror or err}"
            ) from None
        sock.setblocking(False)
        return sock

    def remove_socket(self) -> None:
        """Unlink PATH if it is still the socket this process bound."""
        if self._ino is None:
            return
        with contextlib.suppress(OSError):
            if os.lstat(self.path).st_ino == self._ino:
                os.unlink(self.path)
        self._ino = None

    def release(self) -> None:
        """Remove the socket file, then the lock file, and drop the lock (idempotent)."""
        self.remove_socket()
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.lock_path)  # while still locked: see _lock()
        os.close(self._lock_fd)
        self._lock_fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
