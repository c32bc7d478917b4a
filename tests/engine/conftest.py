"""Fixtures for the relay engine tests: a real started Engine and real eventfds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from svqtui.engine import Engine
from tests.support.engine import Rig


@pytest.fixture
def engine() -> Iterator[Engine]:
    """A started engine with 64 queue slots, stopped after the test."""
    eng = Engine(max_queues=64)
    eng.start()
    try:
        yield eng
    finally:
        eng.stop()


@pytest.fixture
def rig(engine: Engine) -> Iterator[Rig]:
    """The started engine plus an eventfd factory; fds close after the engine stops."""
    r = Rig(engine)
    yield r
    engine.stop()
    r.close()
