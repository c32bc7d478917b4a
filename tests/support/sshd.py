"""A real OpenSSH server on 127.0.0.1 for tests, and the client options for it.

``Sshd`` generates a host key and a client key with ssh-keygen, writes an
sshd_config (ListenAddress 127.0.0.1 on a free port, key login only, the
client key as the only authorized key, UsePAM no, StrictModes no), runs
``/usr/sbin/sshd -D -e -f CONFIG`` (not a daemon: its pid is ours, its log in
a file), waits until a real ``ssh ... true`` logs in, and stops it by pid.
``client_options()`` are the ssh words for ``SVQTUI_SSH_OPTS``: this key, a
known_hosts file of the test's own, no user ssh config.
"""

from __future__ import annotations

import getpass
import os
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"
PRIVSEP_DIR = Path("/run/sshd")  # Debian's sshd refuses to start without it
READY_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "svqtui-test", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return path


class Sshd:
    """An sshd of the test's own; use as a context manager."""

    def __init__(self, directory: Path, client_key: Path | None = None) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.user = getpass.getuser()
        self.host_key = keygen(directory / "host_key")
        self.client_key = client_key or keygen(directory / "client_key")
        self.known_hosts = directory / "known_hosts"
        self.authorized_keys = directory / "authorized_keys"
        self.authorized_keys.write_text(Path(f"{self.client_key}.pub").read_text())
        self.log_path = directory / "sshd.log"
        self.config = directory / "sshd_config"
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin prohibit-password",
                    "AllowStreamLocalForwarding yes",
                    "UsePAM no",
                    "StrictModes no",
                    "LogLevel VERBOSE",
                ]
            )
            + "\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, path: str | os.PathLike[str] = "") -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{os.fspath(path)}"

    def client_options(self) -> list[str]:
        return [
            "-F", "/dev/null",
            "-i", str(self.client_key),
            "-o", "IdentitiesOnly=yes",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "StrictHostKeyChecking=accept-new",
        ]  # fmt: skip

    def client_env(self) -> dict[str, str]:
        import shlex

        return {"SVQTUI_SSH_OPTS": shlex.join(self.client_options())}

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> Sshd:
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        login = [
            "ssh", *self.client_options(),
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "-p", str(self.port),
            f"{self.user}@127.0.0.1", "true",
        ]  # fmt: skip
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"sshd exited with {self.proc.returncode}:\n{self.log}")
            probe = subprocess.run(
                login,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=15,
            )
            if probe.returncode == 0:
                return self
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"cannot log in to the test sshd: {probe.stderr.decode()}\n{self.log}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM by pid (sshd's session children exit with their connections)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self) -> Sshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
