"""The lab's own QMP session to one of its QEMUs, for commands svqtui never sends
to a VM it watches (migrate-incoming, migrate, migrate-set-*, quit).

It uses a second QMP socket of that QEMU (a QMP socket serves one client, and
svqtui's QMP source holds the other) and svqtui's ``QMPConnection`` on the
runtime's I/O loop; the methods block the calling thread (the lab's
thread, never the I/O loop's) until QEMU answers.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from svqtui.io_loop import IOLoop
from svqtui.sources.qmp.client import QMPConnection
from svqtui.sources.qmp.errors import QMPConnectionLost

COMMAND_TIMEOUT_S = 15.0


class LabQMP:
    """A blocking QMP client over the I/O loop; ``with`` closes it."""

    def __init__(
        self, path: Path, name: str, loop: IOLoop, *, timeout: float = COMMAND_TIMEOUT_S
    ) -> None:
        self.path = path
        self.loop = loop
        self.timeout = timeout
        self._conn = QMPConnection(
            str(path), name, connect_timeout_s=timeout, command_timeout_s=timeout
        )

    def open(self) -> LabQMP:
        self._wait(self.loop.submit(self._conn.open()), "connect")
        return self

    def execute(self, command: str, arguments: Mapping[str, object] | None = None) -> Any:
        """Run ``command``; QEMU's refusal raises ``QMPCommandFailed``."""
        return self._wait(self.loop.submit(self._conn.execute(command, arguments)), command)

    def _wait(self, future: concurrent.futures.Future[Any], what: str) -> Any:
        try:
            return future.result(self.timeout + 5.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise QMPConnectionLost(
                f"{self.path}: no answer to {what} within {self.timeout + 5.0:g}s"
            ) from None

    def close(self) -> None:
        if self.loop.running:
            fut = self.loop.submit(self._conn.close())
            try:
                fut.result(5.0)
            except concurrent.futures.TimeoutError:
                fut.cancel()

    def __enter__(self) -> LabQMP:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()
