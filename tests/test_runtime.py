"""Runtime wiring: the engine it builds follows config.yaml's engine section."""

from __future__ import annotations

import os
from pathlib import Path

from svqtui.config import Config, EngineConfig
from svqtui.engine import Polling
from svqtui.runtime import Runtime


def test_runtime_engine_takes_the_configured_polling_and_cpu() -> None:
    """engine: polling/poll_us/poll_cpu_budget reach the engine, and cpu pins
    its thread (checked in /proc once it runs)."""
    cpu = max(os.sched_getaffinity(0))
    config = Config(max_queues=8, engine=EngineConfig("fixed", 50, 0.1, cpu))
    runtime = Runtime(config, sources=[])
    with runtime:
        stats = runtime.engine.polling()
        assert (stats.mode, stats.poll_us, stats.cpu_budget) == (Polling.FIXED, 50, 0.1)
        status = Path(f"/proc/self/task/{runtime.engine.native_id}/status").read_text()
        assert f"Cpus_allowed_list:\t{cpu}\n" in status
