"""A takeover rig: a real ``svqtui --headless`` (O) interposing one device
between a scripted front-end and a scripted back-end (both in this test
process), and the means to start ``svqtui --headless --takeover`` (N) and
watch both processes by PID.

The front-end runs a kick/call ping-pong (tests.support.vhost_user_backend)
from ``start_traffic()``; ``take_over()`` starts N, waits until O has exited
(its exit code is returned) and N answers on the control socket.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from svqtui.model import QueueView
from tests.support.headless import HeadlessProcess
from tests.support.qsd import short_dir
from tests.support.vhost_user_backend import PingPong, RequestProbe, ScriptedBackend, Shared
from tests.support.vhost_user_frontend import VhostUserFrontend
from tests.support.wait import wait_until

DEVICE = "blk0"
IDLE_DEVICE = "blk1"


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_kinds(pid: int) -> list[str]:
    """What each open fd of ``pid`` is (socket:[...] numbers cut off)."""
    kinds = []
    for name in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{name}")
        except OSError:
            continue
        kinds.append(link.split(":[")[0] if ":[" in link else link)
    return sorted(kinds)


def settled_fd_count(pid: int, expected: int, timeout: float = 5.0) -> int:
    """The fd count once it equals ``expected`` (a control client's socket
    closes a moment after the client), or the last count after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        count = fd_count(pid)
        if count == expected or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def write_config(
    directory: Path, shadow: bool, metrics: str | None = None, idle_device: bool = False
) -> Path:
    """The rig's config (``metrics``: a ``metrics.listen`` address;
    ``idle_device``: also IDLE_DEVICE, which no front-end connects to)."""
    cfg = directory / "config.yaml"
    cfg.write_text(
        "\n".join(
            [
                "refresh: 0.1",
                "demo: {enabled: false}",
                "qmp: {discover: false}",
                f"control: {{socket: {directory / 'c.sock'}}}",
                *([f"metrics: {{listen: '{metrics}'}}"] if metrics else []),
                "devices:",
                f"  - {{name: {DEVICE}, listen: {directory / 'vu0.sock'}, "
                f"backend: {directory / 'be0.sock'}, shadow: {'on' if shadow else 'off'}}}",
                *(
                    [
                        f"  - {{name: {IDLE_DEVICE}, listen: {directory / 'vu1.sock'}, "
                        f"backend: {directory / 'be1.sock'}, shadow: off}}"
                    ]
                    if idle_device
                    else []
                ),
            ]
        )
        + "\n"
    )
    return cfg


def wait_serving(n: HeadlessProcess, timeout: float = 30.0) -> None:
    """Until N answers on the control socket with its own pid (O has gone)."""
    assert n.proc is not None
    deadline = time.monotonic() + timeout
    while True:
        try:
            with n.client() as c:
                if c.hello()["pid"] == n.proc.pid:
                    return
        except Exception:
            pass
        assert n.proc.poll() is None, f"N exited {n.proc.returncode}:\n{n.stderr[-2000:]}"
        assert time.monotonic() < deadline, f"N does not serve:\n{n.stderr[-2000:]}"
        time.sleep(0.02)


def take_over(
    current: HeadlessProcess, cfg: Path, directory: Path, env: dict[str, str] | None = None
) -> HeadlessProcess:
    """Start ``svqtui --headless --takeover`` on ``cfg``; O must exit 0 and N serve."""
    assert current.proc is not None
    new = HeadlessProcess(directory, config=cfg, env=env, args=["--takeover"]).start(wait=False)
    assert current.proc.wait(30) == 0, current.stderr[-2000:]
    new.socket_path = current.socket_path
    wait_serving(new)
    return new


class TakeoverRig:
    """O serving one device to a scripted front-end and back-end."""

    def __init__(
        self,
        tmp_path: Path,
        shadow: bool,
        env: dict[str, str] | None = None,
        metrics: str | None = None,
        idle_device: bool = False,
    ) -> None:
        self.dir, self._created = short_dir(tmp_path)
        self.shadow = shadow
        self.config = write_config(self.dir, shadow, metrics, idle_device)
        self.shared = Shared()
        self.backend = ScriptedBackend(str(self.dir / "be0.sock"), self.shared)
        self.current = HeadlessProcess(self.dir, config=self.config, env=env).start()
        self.retired: list[HeadlessProcess] = []
        # 15 s: a hung successor holds the vhost-user path for the 5 s step deadline
        self.frontend = VhostUserFrontend(self.dir / "vu0.sock", timeout=15.0)
        self.frontend.connect().init().start()
        self.pingpong: PingPong | None = None
        self.probe: RequestProbe | None = None

    def start_traffic(self, probe: bool = True) -> None:
        self.pingpong = PingPong(self.frontend, self.shared).start()
        if probe:
            self.probe = RequestProbe(self.frontend).start()
        wait_until(lambda: self.pingpong is not None and self.pingpong.rounds > 20, what="traffic")

    def successor(self, env: dict[str, str] | None = None) -> HeadlessProcess:
        """Start N (not waiting for anything)."""
        n = HeadlessProcess(self.dir, config=self.config, env=env, args=["--takeover"])
        return n.start(wait=False)

    def take_over(self, timeout: float = 30.0) -> int:
        """Start N, wait until O exits and N serves; O's exit code."""
        old = self.current
        n = self.successor()
        assert old.proc is not None and n.proc is not None
        code = old.proc.wait(timeout)
        self.retired.append(old)
        self.current = n
        n.socket_path = old.socket_path
        wait_serving(n, timeout)
        return code

    def queues(self) -> dict[int, QueueView]:
        """The device's queues in a snapshot taken after this call."""
        time.sleep(0.3)  # at least one refresh (0.1 s) later
        with self.current.client() as c:
            snap = c.snapshot()
        dev = next(d for vm in snap.vms for d in vm.devices if d.name == DEVICE)
        return {q.index: q for q in dev.queues}

    def close(self) -> None:
        if self.pingpong is not None:
            self.pingpong.stop()
        if self.probe is not None:
            self.probe.stop()
        self.frontend.close()
        for p in (self.current, *self.retired):
            p.stop()
        self.backend.close()
        if self._created:
            shutil.rmtree(self.dir, ignore_errors=True)
