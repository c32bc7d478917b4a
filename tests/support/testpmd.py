"""DPDK testpmd as a real vhost-user-net back-end for tests (Debian's dpdk-dev).

``DpdkTestpmd(socket, workdir)`` runs ``dpdk-testpmd`` without hugepages or PCI
devices, with one vhost-user port (``net_vhost0``) serving ``socket``
(``client=0``: testpmd listens, the front-end or svqtui connects) and
forwarding in 5tswap mode on a looped port: every frame the guest sends comes
back to it with MAC, IP addresses and L4 ports swapped (the lab guest's net
mode pings through that, svqtui.lab.guest_init). ``--stats-period`` keeps it
running without reading stdin (its non-interactive mode otherwise exits on
EOF); its runtime directory (``RUNTIME_DIRECTORY``) in ``workdir`` keeps it
apart from any other DPDK process and leaves nothing in /var/run/dpdk
(``--in-memory`` does not go with ``--no-huge``). Its output
(``log``) has the ``CONNECT_LINES`` once per front-end connection and a
"vhost peer closed" line when one goes away.

The forwarding lcore polls: testpmd keeps one CPU busy while it runs.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from svqtui.lab.process import ManagedProcess, find_program

TESTPMD = "dpdk-testpmd"
TESTPMD_PACKAGE = "dpdk-dev"
START_TIMEOUT_S = 60.0
# what testpmd's lib/vhost prints once per front-end connection (its SET_STATUS
# dumps also say "new device status(...)", hence the exact lines), and when a
# front-end goes away
CONNECT_LINES = ("new vhost user connection is", "new device, handle is")
DISCONNECT_LINES = ("vhost peer closed", "destroy", "disconnect")


def have_testpmd() -> bool:
    return shutil.which(TESTPMD) is not None


class DpdkTestpmd(ManagedProcess):
    """dpdk-testpmd serving one vhost-user-net port on ``socket`` (5tswap)."""

    def __init__(self, socket: Path, workdir: Path, queues: int = 2) -> None:
        self.socket = socket
        self.log = workdir / "testpmd.log"
        argv = [
            find_program(TESTPMD, TESTPMD_PACKAGE),
            "--no-huge",
            "-m",
            "512",
            "--no-pci",
            "-l",
            "0,1",
            "--log-level=lib.vhost.config:info",
            "--vdev",
            f"net_vhost0,iface={socket},queues={queues},client=0",
            "--",
            "--total-num-mbufs=16384",
            "--port-topology=loop",
            "--forward-mode=5tswap",
            f"--rxq={queues}",
            f"--txq={queues}",
            "--stats-period=3600",
        ]
        # its runtime files (6 MiB without hugepages) go to workdir/dpdk/rte, not
        # /var/run/dpdk/rte
        super().__init__("dpdk-testpmd", argv, self.log, env={"RUNTIME_DIRECTORY": str(workdir)})

    def start(self) -> None:
        super().start()
        self.wait_for_path(self.socket, START_TIMEOUT_S, socket=True)

    def dropped(self) -> dict[str, int]:
        """RX-dropped and TX-dropped of testpmd's accumulated statistics, which
        it prints when it stops (after ``stop()``; empty before)."""
        text = self.output()
        at = text.rfind("Accumulated forward statistics")
        found = re.findall(r"([RT]X-dropped):\s*(\d+)", text[at:]) if at >= 0 else []
        return {name: int(value) for name, value in found}

    def negotiated_features(self) -> list[int]:
        """The virtio features of each device start, as lib/vhost logged them."""
        found = re.findall(r"negotiated Virtio features: (0x[0-9a-fA-F]+)", self.output())
        return [int(f, 16) for f in found]

    def output(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""
