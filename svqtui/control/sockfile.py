"""Owning a control socket path: one svqtui per socket, mode 0600, no stale
files, nothing another user can swap.

``SocketFile.claim()`` first opens the socket's directory with
``svqtui.control.rundir.open_private_dir`` (created where missing; every
directory from ``/`` down owned by root or this user and not writable by
others unless sticky; no symlink followed) and then works relative to that
descriptor only. It takes an exclusive ``flock`` on ``PATH.lock`` (opened
``O_NOFOLLOW``, a regular file of ours with one link; it holds the owner's
pid), so two svqtui cannot serve one socket even when they start at the same
moment. Holding the lock, a socket file left at PATH by a process that died is
stale and is replaced; one that still accepts connections belongs to something
else, and claiming fails. The new socket is bound under a private umask and a
temporary name, made 0600 and renamed over PATH before it listens, so it is
never reachable with a wider mode. ``remove_socket()`` unlinks PATH only while
it is still the socket this process bound; ``release()`` drops the lock last.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import stat

from svqtui.control.errors import ControlSocketInUse, UnsafeRuntimePath
from svqtui.control.rundir import open_lock_file, open_private_dir, user_name
from svqtui.errors import ControlError
from svqtui.unix_socket import bind_private, check_path, fits

SOCKET_MODE = 0o600
DIR_MODE = 0o700  # a directory svqtui creates for its control socket
SYSTEM_RUNTIME_DIR = "/run/svqtui"  # root's; 0755 so QEMU reaches device sockets kept there
FIX = "set control.socket in the config to a path in a directory only you (or root) can write"


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
        self._parent, self._name = os.path.split(self.path)
        self._lock_name = self._name + ".lock"
        self._dir_fd: int | None = None
        self._lock_fd: int | None = None
        self._ino: int | None = None
        self._real = self.path  # where it is bound: the parent's real path

    def claim(self, backlog: int = 16) -> socket.socket:
        """Lock PATH, replace a stale socket, and return a listening socket.

        Raises ``ControlSocketInUse`` when another svqtui (or anything else)
        serves PATH, ``SocketPathTooLong`` when PATH is too long for a unix
        socket, ``UnsafeRuntimePath`` when another user could swap PATH's
        directory or files, ``ControlError`` when PATH cannot be used otherwise.
        """
        check_path(self.path, "control", "set control.socket in the config to a shorter path")
        mode = 0o755 if self._parent == SYSTEM_RUNTIME_DIR else DIR_MODE
        self._dir_fd = open_private_dir(self._parent, mode, FIX)
        # Bind where the checked walk went (the parent's real path).
        self._real = os.path.join(os.path.realpath(self._parent), self._name)
        check_path(self._real, "control", "set control.socket in the config to a shorter path")
        try:
            self._lock()
            self._check_existing()
            sock = self._bind(backlog)
        except BaseException:
            self.release()
            raise
        return sock

    def _lstat(self, name: str) -> os.stat_result:
        assert self._dir_fd is not None
        return os.stat(name, dir_fd=self._dir_fd, follow_symlinks=False)

    def _unlink(self, name: str) -> None:
        assert self._dir_fd is not None
        os.unlink(name, dir_fd=self._dir_fd)

    def _lock(self) -> None:
        assert self._dir_fd is not None
        for _ in range(10):
            fd = open_lock_file(self._dir_fd, self._lock_name, self.lock_path)
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
                same = self._lstat(self._lock_name).st_ino == os.fstat(fd).st_ino
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
            st = self._lstat(self._name)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(
                f"{self.path} exists and is not a socket: remove it, or set "
                "control.socket in the config to another path"
            )
        if st.st_uid != os.geteuid():
            raise UnsafeRuntimePath(
                f"the control socket {self.path} is owned by {user_name(st.st_uid)}: "
                f"remove it, or {FIX}"
            )
        if probe(self._real):
            raise ControlSocketInUse(
                f"something other than svqtui is listening on the control socket {self.path}: "
                "stop it or set control.socket in the config to another path"
            )
        # A stale socket of an svqtui that died: _bind renames over it.

    def _bind(self, backlog: int) -> socket.socket:
        assert self._dir_fd is not None
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        parent = os.path.dirname(self._real)
        tmp_name = f".{self._name}.{os.getpid()}"
        tmp = os.path.join(parent, tmp_name)
        try:
            if fits(tmp):
                with contextlib.suppress(FileNotFoundError):
                    self._unlink(tmp_name)
                bind_private(sock, tmp, SOCKET_MODE)
                os.rename(tmp_name, self._name, src_dir_fd=self._dir_fd, dst_dir_fd=self._dir_fd)
            else:  # no room for a temporary name: bind in place
                with contextlib.suppress(FileNotFoundError):
                    self._unlink(self._name)
                bind_private(sock, self._real, SOCKET_MODE)
            sock.listen(backlog)
            self._ino = self._lstat(self._name).st_ino
        except OSError as err:
            sock.close()
            with contextlib.suppress(OSError):
                self._unlink(tmp_name)
            raise ControlError(
                f"cannot create the control socket {self.path}: {err.strerror or err}"
            ) from None
        sock.setblocking(False)
        return sock

    # -- a takeover (docs/design.md#takeover) -----------------------------------

    @property
    def lock_fd(self) -> int:
        """The locked lock file's fd: a takeover passes it on, so that the
        lock (held by the open file, not the process) never lapses."""
        assert self._lock_fd is not None
        return self._lock_fd

    @property
    def socket_ino(self) -> int | None:
        return self._ino

    def adopt(self, lock_fd: int, ino: int | None) -> None:
        """Own the socket file and the lock a previous svqtui handed over
        (``lock_fd`` is ours now): the same checked directory, the same lock
        file (same inode), and this process's pid written in it."""
        try:
            self._dir_fd = open_private_dir(self._parent, DIR_MODE, FIX)
            if self._lstat(self._lock_name).st_ino != os.fstat(lock_fd).st_ino:
                raise ControlError(
                    f"takeover: the lock handed over is not {self.lock_path} any more"
                )
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # ours already: a no-op check
        except BaseException:
            os.close(lock_fd)
            if self._dir_fd is not None:
                os.close(self._dir_fd)
                self._dir_fd = None
            raise
        os.ftruncate(lock_fd, 0)
        os.pwrite(lock_fd, f"{os.getpid()}\n".encode(), 0)
        self._lock_fd = lock_fd
        self._ino = ino

    def remove_socket(self) -> None:
        """Unlink PATH if it is still the socket this process bound."""
        if self._ino is None:
            return
        with contextlib.suppress(OSError):
            if self._lstat(self._name).st_ino == self._ino:
                self._unlink(self._name)
        self._ino = None

    def release(self) -> None:
        """Remove the socket file, then the lock file, and drop the lock (idempotent)."""
        self.remove_socket()
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                self._unlink(self._lock_name)  # while still locked: see _lock()
            os.close(self._lock_fd)
            self._lock_fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
