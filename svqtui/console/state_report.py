"""A queue's full state as plain text, for a bug report (the `y` key).

Everything the detail screen shows, without styles and in one block: where
the queue is, the diagnosis and stuck verdict, counters and ages, the ring's
suppression state and oldest request (svqtui.widgets.queue_detail.ring_lines),
fds, errors and the device's notes, stamped with the snapshot's time.
"""

from __future__ import annotations

import time

from svqtui.console import format as fmt
from svqtui.model import QueueRow, Snapshot
from svqtui.widgets.queue_detail import ring_lines


def state_report(snap: Snapshot, row: QueueRow) -> str:
    """The queue of ``row`` in ``snap`` as text lines."""
    q = row.view
    dev = snap.devices.get(row.device_key)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(snap.taken_at))
    lines = [
        f"svqtui queue state at {stamp} UTC: {row.vm_name}/{row.device_name} "
        f"queue {q.index} ({row.key})",
    ]
    if dev is not None:
        lines.append(
            f"device    {dev.kind}, source {dev.source}, {dev.status or 'no status'}; "
            f"shadow {'on' if dev.shadow else 'off'}; features {dev.features or '?'}"
        )
    lines += [
        f"why       {row.diagnosis or 'no diagnosis'}",
        f"stuck     {row.stuck or 'no'}",
        f"kicks     {fmt.count(q.kicks)} ({fmt.rate(row.kick_rate, q.kicks is not None)}/s, "
        f"last {fmt.age(row.last_kick_age_s)} ago, {q.injected_kicks} injected)",
        f"calls     {fmt.count(q.calls)} ({fmt.rate(row.call_rate, q.calls is not None)}/s, "
        f"last {fmt.age(row.last_call_age_s)} ago, {q.injected_calls} injected)",
        f"mask      {q.mask.value if q.mask else '-'}"
        + (" (operator hold)" if q.hold else "")
        + f", {q.held} held while masked",
        f"indices   avail {fmt.index(q.avail_idx)} used {fmt.index(q.used_idx)} "
        f"in flight {fmt.index(q.in_flight)} (from {q.ring_source or 'nowhere'})",
        *ring_lines(row),
        f"kick fd   {q.kick_fd or '?'}",
        f"call fd   {q.call_fd or '?'}",
    ]
    if q.error:
        lines.append(f"error     {q.error}")
    for note in dev.notes if dev is not None else ():
        lines.append(f"note      {note}")
    return "\n".join(lines)
