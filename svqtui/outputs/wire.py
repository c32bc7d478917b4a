"""The lossless wire form of a snapshot, as the control socket sends it to
``--attach`` and ``svqtui ctl snapshot`` (svqtui.control.codec does the work:
every model field, each shared queue and device sent once)."""

from __future__ import annotations

import json

from svqtui.control.codec import encode_snapshot
from svqtui.model import Snapshot
from svqtui.outputs.base import SnapshotOutput, register


@register("wire")
class WireOutput(SnapshotOutput):
    summary = "every field, lossless (what --attach receives)"

    def render(self, snap: Snapshot) -> str:
        return json.dumps(encode_snapshot(snap), separators=(",", ":"))
