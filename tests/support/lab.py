"""Helpers for tests of ``svqtui lab``: a short work directory (unix socket paths
must fit in 108 bytes, pytest's tmp_path can be long) and the lab's processes.

``lab_workdir`` is a fixture of the root tests/conftest.py (marked ``qemu``).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.guest import processes_mentioning
from tests.support.markers import QEMU, needs


@pytest.fixture
@needs(QEMU)
def lab_workdir() -> Iterator[Path]:
    """A fresh short directory in /tmp for a lab's sockets, logs and disk; removed
    after the test, once no process mentioning it is left (killed if one is)."""
    path = Path(tempfile.mkdtemp(prefix="svq-lab-", dir="/tmp"))
    try:
        yield path
    finally:
        for proc in processes_mentioning(str(path)):
            proc.kill()
        shutil.rmtree(path, ignore_errors=True)


def lab_processes(workdir: Path) -> list[str]:
    """Live processes started for the lab in ``workdir`` (their command lines)."""
    return [" ".join(p.cmdline()) for p in processes_mentioning(str(workdir))]
