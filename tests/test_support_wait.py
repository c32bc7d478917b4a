"""The tests' polling helper (tests.support.wait): returns what the predicate
returned once it holds, and on timeout fails saying what was awaited."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.wait import wait_until, wait_until_async


def test_returns_the_first_truthy_value_after_some_tries() -> None:
    """The value the predicate returns once true is returned; it was asked until then."""
    calls = []

    def third_time() -> str | None:
        calls.append(1)
        return "ready" if len(calls) == 3 else None

    assert wait_until(third_time, what="the third call") == "ready"
    assert len(calls) == 3


def test_timeout_names_what_was_awaited_and_the_state() -> None:
    """A predicate that never holds fails after ``timeout`` with an AssertionError
    naming ``what`` and the ``describe()`` state, not much later."""
    began = time.monotonic()
    with pytest.raises(AssertionError, match=r"waiting for the moon; state: \['no moon'\]"):
        wait_until(lambda: False, 0.2, interval=0.01, what="the moon", describe=lambda: ["no moon"])
    assert 0.2 <= time.monotonic() - began < 2.0


def test_async_variant_pauses_through_the_given_coroutine() -> None:
    """``wait_until_async`` awaits ``pause`` between tries and fails the same way."""
    pauses: list[float] = []

    async def pause(s: float) -> None:
        pauses.append(s)
        await asyncio.sleep(s)

    assert asyncio.run(wait_until_async(lambda: len(pauses) >= 2, pause, what="two pauses"))
    with pytest.raises(AssertionError, match="waiting for never"):
        asyncio.run(wait_until_async(lambda: False, pause, 0.1, what="never"))
