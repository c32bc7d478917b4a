"""Fixtures for the control tests: an in-process Runtime serving its control
socket (tests.support.control)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.control import Served, demo_runtime, serve


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """A demo runtime serving its control socket in tmp_path; stopped after the test."""
    with serve(demo_runtime(tmp_path / "c.sock")) as s:
        yield s
