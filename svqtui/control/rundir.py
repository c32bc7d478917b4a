"""Runtime directories nobody else can swap: walked from ``/`` without
following a symlink, each directory checked for its owner and mode.

``open_private_dir(path)`` returns a descriptor of ``path`` (created, with the
given mode, where missing) after checking every directory from the root down:
each must be owned by root or by this process's user, and may be writable by
group or others only when it is sticky (``/tmp``). A symlink anywhere on the
way is refused (the path is resolved once, before the walk, so ``/var/run``
-> ``/run`` still works; after that every step is ``openat(O_NOFOLLOW)``).
Files inside are then opened relative to that descriptor, also with
``O_NOFOLLOW`` (``open_lock_file``). Anything unsafe raises
``UnsafeRuntimePath`` with one line saying what and what to do.
"""

from __future__ import annotations

import os
import pwd
import stat

from svqtui.control.errors import UnsafeRuntimePath

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def user_name(uid: int) -> str:
    """``uid 65534 (nobody)``, or just the number when it has no name."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def check_dir(st: os.stat_result, path: str, fix: str) -> None:
    """Refuse a directory another user (not root) owns or may write into."""
    me = os.geteuid()
    if st.st_uid not in (0, me):
        raise UnsafeRuntimePath(
            f"{path} is owned by {user_name(st.st_uid)}, not by root or {user_name(me)}: "
            f"that user could replace svqtui's files there; {fix}"
        )
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        who = "group" if st.st_mode & 0o020 else "everyone"
        raise UnsafeRuntimePath(
            f"{path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):04o}) and not sticky: "
            f"another user could replace svqtui's files there; {fix}"
        )


def _is_link(parent_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _open_step(parent_fd: int, name: str, where: str, mode: int | None) -> tuple[int, bool]:
    """Open directory ``name`` under ``parent_fd`` (creating it with ``mode``
    unless None); returns the descriptor and whether this call created it."""
    created = False
    while True:
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent_fd), created
        except FileNotFoundError:
            if created or mode is None:
                raise UnsafeRuntimePath(f"{where} does not exist: create it first") from None
        except OSError as err:
            if _is_link(parent_fd, name):
                raise UnsafeRuntimePath(
                    f"{where} is a symlink, which svqtui does not follow here: "
                    "remove it or use a real directory"
                ) from None
            raise UnsafeRuntimePath(f"cannot open {where}: {err.strerror or err}") from None
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
            created = True
        except FileExistsError:  # made meanwhile: opened and checked like any other
            pass
        except OSError as err:
            raise UnsafeRuntimePath(f"cannot create {where}: {err.strerror or err}") from None


def open_private_dir(path: str, mode: int = 0o700, fix: str = "", create: bool = True) -> int:
    """A descriptor of directory ``path`` (created with ``mode`` where missing,
    when ``create``), every directory from ``/`` down checked; raises
    ``UnsafeRuntimePath``."""
    fix = fix or "use a directory only root or this user can write"
    fd = os.open("/", DIR_FLAGS)
    try:
        check_dir(os.fstat(fd), "/", fix)
        where = ""
        for name in [p for p in os.path.realpath(path).split("/") if p]:
            where = f"{where}/{name}"
            child, created = _open_step(fd, name, where, mode if create else None)
            os.close(fd)
            fd = child
            st = os.fstat(fd)
            if created and st.st_uid == os.geteuid():
                os.fchmod(fd, mode)  # exactly ``mode``, whatever the umask
                st = os.fstat(fd)
            check_dir(st, where, fix)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _lock_problem(st: os.stat_result) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "is a symlink, which svqtui does not follow"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by {user_name(st.st_uid)}"
    if st.st_nlink != 1:
        return f"has {st.st_nlink} hard links"
    return None


def open_lock_file(dir_fd: int, name: str, where: str) -> int:
    """Open (creating, 0600) the regular file ``name`` in ``dir_fd`` without
    following a symlink; refuse one another user owns or that has other links
    (nothing is truncated or written before these checks)."""
    try:
        fd = os.open(
            name,
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NOCTTY | os.O_NONBLOCK | os.O_CLOEXEC,
            0o600,
            dir_fd=dir_fd,
        )
    except OSError as err:
        try:  # fs.protected_regular may refuse another user's file before we look
            problem = _lock_problem(os.stat(name, dir_fd=dir_fd, follow_symlinks=False))
        except OSError:
            problem = None
        if problem is None:
            problem = f"cannot be opened: {err.strerror}"
        raise UnsafeRuntimePath(
            f"the lock file {where} {problem}: remove it (svqtui only writes its own lock files)"
        ) from None
    problem = _lock_problem(os.fstat(fd))
    if problem is not None:
        os.close(fd)
        raise UnsafeRuntimePath(
            f"the lock file {where} {problem}: remove it (svqtui only writes its own lock files)"
        )
    return fd
