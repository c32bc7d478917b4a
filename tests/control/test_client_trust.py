"""`svqtui ctl` and `--attach` check who serves the control socket (SO_PEERCRED)
before sending anything: a server running as another user gets no command."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from svqtui.control.client import ControlClient
from svqtui.control.errors import UntrustedServer

NOBODY = 65534
pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to serve as another user"),
]


@dataclass
class Impostor:
    path: str
    pid: int
    report: int  # read end: the bytes the impostor received, when it ends

    def received(self) -> bytes:
        os.kill(self.pid, signal.SIGTERM)
        os.waitpid(self.pid, 0)
        with os.fdopen(self.report, "rb") as f:
            return f.read()


@pytest.fixture
def impostor() -> Iterator[Impostor]:
    """A forked child running as nobody that serves a socket 0666 and answers
    every line with a spoofed "done" reply, recording what it received."""
    base = Path(tempfile.mkdtemp(prefix="svq-trust-"))
    os.chmod(base, 0o755)
    os.chown(base, NOBODY, NOBODY)
    path = str(base / "control.sock")
    r, w = os.pipe()
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: plain syscalls, then _exit
        got = b""
        try:
            os.close(r)
            os.close(ready_r)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            srv.bind(path)
            os.chmod(path, 0o666)
            srv.listen(8)
            os.write(ready_w, b"r")

            def stop(signum: int, frame: object) -> None:
                os.write(w, got)
                os._exit(0)

            signal.signal(signal.SIGTERM, stop)
            while True:
                conn, _ = srv.accept()
                conn.settimeout(2)
                try:
                    data = conn.recv(4096)
                    got += data
                    if data:
                        conn.sendall(b'{"id": 1, "ok": true, "result": {"done": "SPOOFED"}}\n')
                except OSError:
                    pass
                conn.close()
        finally:
            os._exit(1)
    os.close(w)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"r"
    os.close(ready_r)
    imp = Impostor(path, pid, r)
    try:
        yield imp
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        shutil.rmtree(base, ignore_errors=True)


def test_the_client_refuses_a_server_of_another_user(impostor: Impostor) -> None:
    """ControlClient.connect raises UntrustedServer naming the server's user,
    and the impostor received not one byte."""
    with pytest.raises(UntrustedServer, match="served by uid 65534") as info:
        ControlClient(impostor.path, timeout=5).connect()
    assert "\n" not in str(info.value)
    assert impostor.received() == b""


@pytest.mark.parametrize(
    "argv",
    [["ctl", "--socket", "{path}", "shadow", "blk0", "on"], ["--attach", "{path}"]],
    ids=["ctl", "attach"],
)
def test_ctl_and_attach_say_one_line_and_exit_1(impostor: Impostor, argv: list[str]) -> None:
    """`svqtui ctl shadow blk0 on` and `svqtui --attach` against a socket swapped
    in by another user: one line on stderr, exit 1, nothing printed as done,
    and nothing sent to the impostor."""
    args = [a.replace("{path}", impostor.path) for a in argv]
    result = subprocess.run(
        [sys.executable, "-m", "svqtui", *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "served by uid 65534" in lines[0], result.stderr
    assert "SPOOFED" not in result.stdout + result.stderr
    assert impostor.received() == b""
