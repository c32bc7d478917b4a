"""A headless svqtui's control socket on another host, through OpenSSH.

``SshTarget`` is an ``ssh://[user@]host[:port][/path/to/control.sock]`` URL.
``SshTunnel`` owns one ``ssh -N -L LOCAL:REMOTE`` process (the system's
OpenSSH client: svqtui has no SSH code of its own) that forwards a private
local unix socket (in a fresh 0700 directory, the socket 0600) to the remote
control socket; every connection to the local socket is one SSH channel, so a
console's refresh and action connections share one SSH session.
``SshControlClient`` is a ``ControlClient`` on that local socket that (re)starts
the tunnel when it needs it and names ssh's own last stderr line when the
transport fails. Why forwarding rather than a stdio bridge:
docs/design.md#seams ("remote consoles").

Authentication is entirely SSH's: the user's agent, keys, ``~/.ssh/config``
and known_hosts. ssh runs with ``BatchMode=yes`` (never a prompt: it has no
terminal, it runs in a session of its own) unless ``SVQTUI_SSH_OPTS`` says
otherwise; that variable's words (shell-quoted) come first on ssh's command
line, so they win over svqtui's own ``-o`` options.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from svqtui.control.client import DEFAULT_TIMEOUT_S, ControlClient
from svqtui.control.errors import AttachTargetInvalid, ControlUnreachable, SshTransportLost
from svqtui.control.protocol import Command

SCHEME = "ssh://"
SSH_OPTS_ENV = "SVQTUI_SSH_OPTS"
CONNECT_TIMEOUT_S = 10
#: ssh's keepalives: a silent peer is declared dead after about 15 s.
SERVER_ALIVE = ("ServerAliveInterval=5", "ServerAliveCountMax=3")
STOP_TIMEOUT_S = 5.0


def is_ssh_url(text: str) -> bool:
    return text.startswith(SCHEME)


@dataclass(frozen=True, slots=True)
class SshTarget:
    """Where a remote headless svqtui is: host, optional user and port, and
    its control socket path (None: that host's default for the SSH user)."""

    host: str
    user: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def parse(cls, url: str) -> SshTarget:
        """``ssh://[user@]host[:port][/path]``; raises ``AttachTargetInvalid``."""

        def bad(why: str) -> AttachTargetInvalid:
            return AttachTargetInvalid(
                f"{url!r} is not ssh://[user@]host[:port][/path/to/control.sock]: {why}"
            )

        if not is_ssh_url(url):
            raise bad("it does not start with ssh://")
        parts = urllib.parse.urlsplit(url)
        if parts.query or parts.fragment:
            raise bad("no ?query or #fragment allowed")
        if parts.password is not None:
            raise bad("no password in the URL (SSH authenticates: agent, keys)")
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port == 0:
            raise bad("the port is not a number in 1..65535")
        host = parts.hostname
        if not host:
            raise bad("no host")
        if host.startswith("-") or (parts.username or "").startswith("-"):
            raise bad("a host or user may not start with '-'")
        path = urllib.parse.unquote(parts.path)
        if path in ("", "/"):
            path_or_none: str | None = None
        elif ":" in path:
            raise bad("the socket path may not contain ':' (ssh -L cannot forward it)")
        else:
            path_or_none = path
        user = urllib.parse.unquote(parts.username) if parts.username else None
        return cls(host=host, user=user, port=port, path=path_or_none)

    @property
    def destination(self) -> str:
        """ssh's destination argument: ``[user@]host``."""
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def label(self) -> str:
        """The host as the console names it: ``[user@]host[:port]``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        port = f":{self.port}" if self.port is not None else ""
        user = f"{self.user}@" if self.user else ""
        return f"{user}{host}{port}"

    def __str__(self) -> str:
        return f"{SCHEME}{self.label}{self.path or ''}"


def user_options(environ: dict[str, str] | None = None) -> list[str]:
    """The words of ``$SVQTUI_SSH_OPTS`` (shell quoting), e.g.
    ``-i ~/.ssh/fleet -o UserKnownHostsFile=/etc/svqtui/known_hosts``."""
    text = (os.environ if environ is None else environ).get(SSH_OPTS_ENV, "")
    try:
        return shlex.split(text)
    except ValueError as err:
        raise AttachTargetInvalid(f"${SSH_OPTS_ENV} is not shell-quoted words: {err}") from None


def ssh_argv(target: SshTarget, options: list[str], *args: str) -> list[str]:
    """``ssh USER-OPTIONS SVQTUI-OPTIONS [-p PORT] ARGS -- DESTINATION``: the
    user's options first (for ``-o``, ssh keeps the first value it reads)."""
    ours = [
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={CONNECT_TIMEOUT_S}",
        *(word for opt in SERVER_ALIVE for word in ("-o", opt)),
        # The session is ours alone: never a multiplexed master that would
        # outlive svqtui or carry its forwarding after we stopped.
        "-o", "ControlMaster=no",
        "-o", "ControlPath=none",
    ]  # fmt: skip
    port = ["-p", str(target.port)] if target.port is not None else []
    return ["ssh", *options, *ours, *port, *args, "--", target.destination]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def resolve_remote_path(target: SshTarget, options: list[str], timeout: float) -> str:
    """The remote user's default control socket, found as svqtui finds its own
    (``$XDG_RUNTIME_DIR/svqtui/control.sock``, else ``/tmp/svqtui-UID/control.sock``),
    by one ``printf`` over ssh."""
    probe = 'printf "%s %s\\n" "$(id -u)" "${XDG_RUNTIME_DIR:-}"'
    argv = [*ssh_argv(target, options, "-T"), probe]
    try:
        done = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            start_new_session=True,
        )
    except FileNotFoundError:
        raise SshTransportLost(f"{target}: no ssh client (install openssh-client)") from None
    except subprocess.TimeoutExpired:
        raise SshTransportLost(f"{target}: ssh did not answer within {timeout:g} s") from None
    words = done.stdout.split()
    if done.returncode != 0 or not words or not words[0].isdigit():
        why = _last_line(done.stderr) or f"exit {done.returncode}"
        raise SshTransportLost(
            f"{target}: cannot ask the host for its control socket path: ssh: {why}"
        )
    base = words[1] if len(words) > 1 else f"/tmp/svqtui-{words[0]}"
    return f"{base}/svqtui/control.sock"


class SshTunnel:
    """One ``ssh -N -L`` process forwarding a private local socket to the
    remote control socket; started on demand, restarted when it died."""

    def __init__(
        self,
        target: SshTarget,
        options: list[str] | None = None,
        timeout: float = CONNECT_TIMEOUT_S + 5,
    ) -> None:
        self.target = target
        self.options = user_options() if options is None else options
        self.timeout = timeout
        self.remote_path = target.path
        self.starts = 0  # ssh processes started (tests, status)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir = Path(tempfile.mkdtemp(prefix="svqtui-ssh-"))  # mode 0700
        self.local_path = str(self._dir / "c.sock")
        self._stderr_path = self._dir / "ssh.stderr"
        self._stderr_seen = 0

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def ensure(self) -> str:
        """The local socket path, with ssh running (started now if it was not);
        raises ``SshTransportLost`` with ssh's own last line when it fails."""
        with self._lock:
            if not self.alive:
                self._start()
            return self.local_path

    def _start(self) -> None:
        self._reap()
        if self.remote_path is None:
            self.remote_path = resolve_remote_path(self.target, self.options, self.timeout)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.local_path)
        argv = ssh_argv(
            self.target,
            self.options,
            "-N",
            "-T",
            "-o", "ExitOnForwardFailure=yes",
            "-o", "StreamLocalBindUnlink=yes",
            "-o", "StreamLocalBindMask=0177",
            "-L", f"{self.local_path}:{self.remote_path}",
        )  # fmt: skip
        with self._stderr_path.open("wb") as err:
            try:
                self._proc = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    start_new_session=True,  # no terminal: ssh can never prompt
                )
            except FileNotFoundError:
                raise SshTransportLost(
                    f"{self.target}: no ssh client (install openssh-client)"
                ) from None
        self.starts += 1
        self._stderr_seen = 0
        deadline = time.monotonic() + self.timeout
        while not self._bound():
            if self._proc.poll() is not None:
                raise self._exited()
            if time.monotonic() > deadline:
                self._reap()
                raise SshTransportLost(
                    f"{self.target}: ssh did not set up the forwarding within "
                    f"{self.timeout:g} s{self._ssh_says()}"
                )
            time.sleep(0.02)

    def _bound(self) -> bool:
        try:
            return stat.S_ISSOCK(os.stat(self.local_path).st_mode)
        except FileNotFoundError:
            return False

    def _stderr(self) -> str:
        try:
            return self._stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def _ssh_says(self, text: str | None = None) -> str:
        line = _last_line(self._stderr() if text is None else text)
        return f" (ssh: {line})" if line else ""

    def _exited(self) -> SshTransportLost:
        assert self._proc is not None
        code = self._proc.returncode
        self._proc = None
        return SshTransportLost(
            f"{self.target}: the ssh transport is down (ssh exited with {code}){self._ssh_says()}"
        )

    def explain(self, err: ControlUnreachable) -> ControlUnreachable:
        """``err`` (a client's failure on the local socket) in SSH's terms:
        the transport's death, or ssh's newest stderr line (e.g. the remote
        socket's ``open failed``) added to it."""
        if isinstance(err, SshTransportLost):
            return err
        with self._lock:
            if self._proc is not None and self._proc.poll() is not None:
                return self._exited()
            text = self._stderr()
            new, self._stderr_seen = text[self._stderr_seen :], len(text)
        if not new.strip():
            return err
        return type(err)(f"{err}{self._ssh_says(new)}")

    def _reap(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(STOP_TIMEOUT_S)

    def close(self) -> None:
        """Stop ssh and remove the private directory."""
        with self._lock:
            self._reap()
            shutil.rmtree(self._dir, ignore_errors=True)


class SshControlClient(ControlClient):
    """A ``ControlClient`` through an ``SshTunnel`` (shared with other clients
    of the same host); errors name the ssh:// target, not the local socket."""

    def __init__(self, tunnel: SshTunnel, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        super().__init__(tunnel.local_path, timeout, label=str(tunnel.target))
        self.tunnel = tunnel

    def connect(self) -> SshControlClient:
        self.path = self.tunnel.ensure()
        try:
            super().connect()
        except ControlUnreachable as err:
            raise self.tunnel.explain(err) from None
        return self

    def request(self, cmd: Command, **args: Any) -> Any:
        try:
            return super().request(cmd, **args)
        except ControlUnreachable as err:
            raise self.tunnel.explain(err) from None
