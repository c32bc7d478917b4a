"""Fixtures for the console tests: a started runtime over the lock-step demo
(real engine, real eventfds) and the console app on top of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from svqtui.console.app import SvqtuiApp
from svqtui.runtime import Runtime
from svqtui.sources.demo import DemoSource
from tests.support.console import demo_runtime, started


@pytest.fixture
def demo() -> DemoSource:
    """The demo in lock-step (tests call advance), shadow on, seed 3."""
    return DemoSource(seed=3, autorun=False)


@pytest.fixture
def runtime(demo: DemoSource) -> Iterator[Runtime]:
    """A started runtime over ``demo``, refreshing every 200 ms; stopped after."""
    with started(demo_runtime(demo)) as rt:
        demo.advance(5)
        yield rt


@pytest.fixture
def app(runtime: Runtime) -> SvqtuiApp:
    """The console, live (its feed refreshes every 50 ms)."""
    return SvqtuiApp(runtime)
