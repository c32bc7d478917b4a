"""The public JSON document of a snapshot (``--once --json``, ``ctl status --json``).

This is the script-friendly shape: VMs hold devices, devices hold queues, with
rates and verdicts next to the totals; each queue has ``ring`` (the
suppression state), ``oldest`` (the oldest request decoded, with its age)
and ``diagnosis`` (one sentence, or null). It leaves out what a script does not
need (rate history, fd identities); the lossless form is svqtui.outputs.wire.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from svqtui.model import QueueRow, QueueView, Snapshot
from svqtui.outputs.base import SnapshotOutput, register


def snapshot_document(snap: Snapshot) -> dict[str, Any]:
    """The public JSON shape: VMs hold devices, devices hold queues."""
    vms = []
    for vm in snap.vms:
        devices = []
        for dev in vm.devices:
            queues = []
            for q in dev.queues:
                row = snap.rows.get(f"{dev.key}#{q.index}")
                queues.append(
                    {
                        "index": q.index,
                        "kicks": q.kicks,
                        "calls": q.calls,
                        "kicks_per_s": round(row.kick_rate, 3) if row else None,
                        "calls_per_s": round(row.call_rate, 3) if row else None,
                        "mask": q.mask.value if q.mask else None,
                        "shadow": q.shadow,
                        "avail_idx": q.avail_idx,
                        "used_idx": q.used_idx,
                        "in_flight": q.in_flight,
                        "ring_source": q.ring_source,
                        "held": q.held,
                        "hold": q.hold,  # the operator's mask (ctl mask, key m), not the guest's
                        "last_kick_age_s": row.last_kick_age_s if row else None,
                        "last_call_age_s": row.last_call_age_s if row else None,
                        "stuck": row.stuck if row else None,
                        "diagnosis": row.diagnosis if row else None,
                        "ring": q.ring.to_json() if q.ring is not None else None,
                        "oldest": _oldest(q, row),
                        "error": q.error,
                    }
                )
            d = {k: v for k, v in asdict(dev).items() if k != "queues"}
            d["source"] = str(dev.source)
            d["shadow_via"] = dev.shadow_via.value
            d["notes"] = list(dev.notes)
            d["queues"] = queues
            devices.append(d)
        vms.append(
            {
                "key": vm.key,
                "name": vm.name,
                "source": str(vm.source),
                "label": vm.label,
                "connected": vm.connected,
                "status": vm.status,
                "pid": vm.pid,
                "cpu_percent": vm.cpu_percent,
                "rss_bytes": vm.rss_bytes,
                "migration": asdict(vm.migration) if vm.migration else None,
                "devices": devices,
            }
        )
    return {
        "time": snap.taken_at,
        "interval_s": snap.interval_s,
        "engine": asdict(snap.engine),
        "sources": [
            {
                "name": s.name,
                "kind": str(s.kind),
                "connected": s.connected,
                "message": s.message,
            }
            for s in snap.sources
        ],
        "vms": vms,
    }


def _oldest(q: QueueView, row: QueueRow | None) -> dict[str, Any] | None:
    """The oldest in-flight request: ``head``, ``kind``, ``sector``, ``bytes``,
    ``age_s`` (since svqtui first saw it), its avail ``position``, whether
    the in-flight heads are ``exact`` and the request's own fields."""
    if q.oldest_head is None:
        return None
    out: dict[str, Any] = {"head": q.oldest_head, "kind": None, "sector": None, "bytes": None}
    if q.oldest is not None:
        out.update(q.oldest.to_json())
    out["age_s"] = row.oldest_age_s if row else None
    out["position"] = q.oldest_position
    out["note"] = q.in_flight_note
    return out


@register("json")
class JsonOutput(SnapshotOutput):
    summary = "the JSON document (VMs > devices > queues)"

    def render(self, snap: Snapshot) -> str:
        return json.dumps(snapshot_document(snap), indent=2)
