"""The relay engine: a C eventfd relay (relay.c) in its own thread, and its API."""

from svqtui.engine.engine import (
    End,
    Engine,
    EngineHealth,
    EngineSnapshot,
    Link,
    LinkCounters,
    Polling,
    PollingStats,
    QueueCounters,
)

__all__ = [
    "End",
    "Engine",
    "EngineHealth",
    "EngineSnapshot",
    "Link",
    "LinkCounters",
    "Polling",
    "PollingStats",
    "QueueCounters",
]
