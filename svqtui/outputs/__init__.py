"""Outputs: renderings of monitor snapshots, each a plug-in behind one interface.

An output turns a ``Snapshot`` into text for a reader elsewhere: the table and
JSON of ``--once`` and ``ctl status``, the rate lines of ``--log`` (text or
CSV), the lossless wire form the control socket sends to ``--attach``. Each
lives in its own module and registers itself by name (svqtui.outputs.base);
a new output is one new module imported below. Outputs read snapshots only:
they never refresh the monitor or touch a source.
"""

from __future__ import annotations

from svqtui.outputs import json_doc, prometheus, rate_log, table, wire
from svqtui.outputs.base import OUTPUTS, SnapshotOutput, output_named

__all__ = [
    "OUTPUTS",
    "SnapshotOutput",
    "json_doc",
    "output_named",
    "prometheus",
    "rate_log",
    "table",
    "wire",
]
