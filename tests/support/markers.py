"""The test suite's markers: ``qemu`` (needs qemu-system-x86, qemu-storage-daemon
or a guest image), ``root`` (needs root), ``prometheus`` (runs Debian's
prometheus/promtool), ``libvirt`` (a real libvirtd, which
the tests start) and ``ssh`` (starts a real sshd on
127.0.0.1, tests.support.sshd), registered in pyproject.toml.

A fixture that starts such a thing is tagged with ``@needs(QEMU)`` (under its
``@pytest.fixture``); the root conftest marks every test that uses a tagged
fixture, directly or through other fixtures. Tests that start QEMU themselves
carry ``pytest.mark.qemu`` explicitly. ``scripts/test --fast`` deselects them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])

QEMU = "qemu"
ROOT = "root"
LIBVIRT = "libvirt"  # a real libvirtd (started by tests.support.libvirt)
SSH = "ssh"
PROMETHEUS = "prometheus"
_ATTR = "__svqtui_needs__"


def needs(*markers: str) -> Callable[[F], F]:
    """Tag a fixture function: the tests using it get ``markers``."""

    def tag(func: F) -> F:
        setattr(func, _ATTR, (*getattr(func, _ATTR, ()), *markers))
        return func

    return tag


def fixture_markers(item: pytest.Item) -> set[str]:
    """The markers the fixtures ``item`` uses (its whole fixture closure) call for."""
    info = getattr(item, "_fixtureinfo", None)
    found: set[str] = set()
    if info is None:
        return found
    for defs in info.name2fixturedefs.values():
        for fixturedef in defs:
            found.update(getattr(fixturedef.func, _ATTR, ()))
    return found
