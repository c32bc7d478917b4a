"""Regenerate the README screenshot (docs/screenshot.svg): the seeded demo,
frozen clocks, in its stall window (one queue STUCK, the cursor on it).

Usage (from the repository root): python tests/support/screenshot.py [PATH] [COLSxROWS]
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository root

from svqtui import eventlog
from svqtui.console.app import SvqtuiApp
from svqtui.sources.demo import STALL_EVERY_TICKS, STALL_TICKS
from tests.support.console import FROZEN_WALL, frozen_runtime, prime, started, until


class _FrozenTime:
    @staticmethod
    def time() -> float:
        return FROZEN_WALL


async def save(path: Path, size: tuple[int, int]) -> None:
    eventlog.time = _FrozenTime  # type: ignore[assignment]  # stable log stamps
    runtime, demo = frozen_runtime(seed=7)
    with started(runtime):
        prime(runtime, demo, samples=30, ticks=4, skip=STALL_EVERY_TICKS - STALL_TICKS - 20)
        app = SvqtuiApp(runtime, live=False)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.frames >= 1, "the first snapshot")
            await pilot.press("end")  # the stuck queue: its reason shows in the header
            await pilot.pause(0.3)
            app.save_screenshot(path.name, path=str(path.parent))


def main() -> int:
    os.environ["TZ"] = "UTC"
    time.tzset()
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/screenshot.svg")
    cols, _, rows = (sys.argv[2] if len(sys.argv) > 2 else "120x36").partition("x")
    asyncio.run(save(path, (int(cols), int(rows))))
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
