"""The cyclic garbage collector's policy for a long-running svqtui process.

Each refresh allocates a few container objects per queue (its view, its
row, its history tuple) and frees the previous snapshot's: at 1,024 queues
some 3,000 objects churn ten times a second. With Python's default gen0
threshold (700) that churn alone runs the collector ~50 times a second, and
the survivors (a snapshot lives one refresh) push full collections over every
object of the process (Textual's widgets, the modules) every few seconds:
~10% of a core at 1,024 queues, and 50-100 ms pauses in whichever thread
allocated last (benchmarks/ui.py reports the collector's time).

So once started, the process freezes what start-up made (it is there for
good: ``gc.freeze``) and raises gen0's threshold above a refresh's churn.
Garbage without cycles (nearly all of it) is freed by reference counting as
before; cycles wait a little longer (docs/design.md#thread-map).
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 20_000  # container allocations between collections (default 700)


def settle_after_start() -> None:
    """Call once the process has started (runtime, sources, UI built)."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    if gen0:  # 0: collection disabled, leave it so
        gc.set_threshold(max(gen0, GEN0_THRESHOLD), gen1, gen2)
