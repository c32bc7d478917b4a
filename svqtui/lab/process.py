"""Start a lab child process (QEMU, qemu-storage-daemon) so that it is always stopped.

The child runs in its own process group (so stopping it also stops anything it
forked) with stdin from /dev/null and stderr to a file (read back for error
messages; a pipe nobody drains could block it). Where ``setpriv`` exists it is
started with a parent-death signal (armed just before the program is exec'd),
so even a SIGKILLed harness leaves no QEMU behind; the signal fires when the
*thread* that started it exits, so start long-lived processes from a
long-lived thread. Processes still running at
interpreter exit are killed by an atexit hook as a last resort.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import stat
import subprocess
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Self

from svqtui.lab.errors import LabProcessError, LabToolMissing

_LIVE: weakref.WeakSet[ManagedProcess] = weakref.WeakSet()


def find_program(name: str, apt_package: str) -> str:
    """The absolute path of ``name`` on PATH, or ``LabToolMissing`` naming the package."""
    path = shutil.which(name)
    if path is None:
        raise LabToolMissing(f"{name} not found on PATH: install it: apt-get install {apt_package}")
    return path


class StartStop:
    """A lab resource used as ``with X(...) as x:``: started on entry, stopped
    on any exit (exceptions included)."""

    def start(self) -> object:
        raise NotImplementedError

    def stop(self) -> object:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ManagedProcess(StartStop):
    """One child process in its own process group; a context manager that stops it."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        stderr_path: Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``env``: variables added to (or replacing) this process's environment."""
        self.name = name
        self.argv = list(argv)
        self.stderr_path = stderr_path
        self.env = dict(env or {})
        self.started_at: float | None = None  # time.monotonic() just before spawning
        self._popen: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    @property
    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self._popen.poll() if self._popen else None

    def start(self) -> None:
        if self._popen is not None:
            raise LabProcessError(f"{self.name} was already started (pid {self.pid})")
        argv = self.argv
        setpriv = shutil.which("setpriv")
        if setpriv is not None:
            argv = [setpriv, "--pdeathsig", "KILL", "--", *argv]
        with self.stderr_path.open("wb") as err:
            self.started_at = time.monotonic()
            try:
                self._popen = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=err,
                    stderr=err,
                    start_new_session=True,
                    close_fds=True,
                    env={**os.environ, **self.env} if self.env else None,
                )
            except OSError as exc:
                raise LabProcessError(
                    f"cannot start {self.name} ({self.argv[0]}): {exc.strerror}"
                ) from exc
        _LIVE.add(self)

    def stderr_tail(self, lines: int = 5) -> str:
        """The last lines the process wrote to stderr/stdout, joined with ' | '."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return " | ".join(line.strip() for line in text.splitlines()[-lines:] if line.strip())

    def died_error(self, doing: str) -> LabProcessError:
        """The error for a process that exited while ``doing`` something."""
        tail = self.stderr_tail()
        return LabProcessError(
            f"{self.name} exited with code {self.returncode} {doing}"
            + (f": {tail}" if tail else f" (no output; see {self.stderr_path})")
        )

    def wait_for_path(self, path: Path, timeout: float, *, socket: bool = False) -> None:
        """Wait until ``path`` exists (as a unix socket if ``socket``); raise
        ``LabProcessError`` if the process exits first or ``timeout`` passes."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(FileNotFoundError):
                if not socket or stat.S_ISSOCK(path.stat().st_mode):
                    return
            if not self.running:
                raise self.died_error(f"before creating {path}")
            if time.monotonic() > deadline:
                raise LabProcessError(
                    f"{self.name} (pid {self.pid}) did not create {path} within {timeout:.0f} s"
                )
            time.sleep(0.02)

    def wait(self, timeout: float) -> int | None:
        """Wait up to ``timeout`` s for the process to exit; its exit code, or None."""
        if self._popen is None:
            return None
        try:
            return self._popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 5.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout`` s; the exit code."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                popen.wait()
        _LIVE.discard(self)
        return popen.returncode

    def kill(self) -> int | None:
        """SIGKILL the process group at once (a crash, not a shutdown); the exit code."""
        popen = self._popen
        if popen is None:
            return None
        if popen.poll() is None:
            self._signal_group(signal.SIGKILL)
            popen.wait()
        _LIVE.discard(self)
        return popen.returncode

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self._popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, sig)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        proc.stop(timeout=1.0)
