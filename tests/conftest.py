"""Shared test fixtures and the ``qemu``/``root`` markers (tests.support.markers).

Fixtures here are the ones several test folders use: the real lab guest
(``guest_image``, ``storage_daemon``, ``boot_guest``, ``booted_guest``, from
tests.support.guest) and a short lab work directory (``lab_workdir``, from
tests.support.lab), and a directory short enough for unix sockets
(``sock_dir``, from tests.support.qsd). Test helpers are imported as ``tests.support.X``.
"""

from __future__ import annotations

import pytest

from tests.support.guest import boot_guest, booted_guest, guest_image, storage_daemon
from tests.support.lab import lab_workdir
from tests.support.markers import fixture_markers
from tests.support.qsd import sock_dir

__all__ = [
    "boot_guest",
    "booted_guest",
    "guest_image",
    "lab_workdir",
    "sock_dir",
    "storage_daemon",
]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test by the fixtures it uses (``qemu``, ``root``)."""
    for item in items:
        for name in sorted(fixture_markers(item)):
            if name not in {m.name for m in item.iter_markers()}:
                item.add_marker(name)
