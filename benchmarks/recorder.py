"""Flight recorder figures: CPU and bytes per hour of recording, and the
time to open and seek a one-hour recording, at 64 and 1,024 queues.

Snapshots are synthetic (tests.support.console.synthetic_snapshot), in two
workloads: ``synthetic`` as that helper builds them (every counter moves,
one-sample histories) and ``busy`` (every queue's counters move by a
different amount each refresh, rates change, 60-sample rate histories roll,
notification ages change: the worst case for a delta). One frame per second.

The one-hour file is built from the encoded frames before the last key frame
(whole key-frame groups) repeated with new times, so building it costs seconds, not the
hour of encoding it measures; opening and seeking it is then measured as a
replay does it (Recording.open, frame(i) at random places).

    python benchmarks/recorder.py            # about a minute
    python benchmarks/recorder.py --quick    # fewer frames
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from svqtui.model import QueueRow, Snapshot
from svqtui.recording.format import (
    CRC,
    KEY_EVERY,
    RECORD,
    FrameEncoder,
    file_header,
)
from svqtui.recording.reader import HEAD_SIZE, Recording
from tests.support.console import FROZEN_WALL, synthetic_snapshot

SHAPES = {64: (32, 2), 1024: (128, 8)}  # queues: (devices, queues per device)


def busy(
    snap: Snapshot, tick: int, rng: random.Random, history: dict[str, list[float]]
) -> Snapshot:
    rows: dict[str, QueueRow] = {}
    devices = {}
    for key, row in snap.rows.items():
        rate = rng.uniform(0, 5000)
        h = history.setdefault(key, [])
        h.append(rate)
        del h[:-60]
        view = dataclasses.replace(
            row.view,
            kicks=tick * 997 + rng.randrange(1000),
            calls=tick * 991 + rng.randrange(1000),
            avail_idx=(tick * 37 + rng.randrange(64)) & 0xFFFF,
            used_idx=(tick * 37) & 0xFFFF,
            last_kick_ns=10**12 + tick * 10**9 - rng.randrange(10**9),
            last_call_ns=10**12 + tick * 10**9 - rng.randrange(10**9),
        )
        rows[key] = dataclasses.replace(
            row,
            view=view,
            kick_rate=rate,
            call_rate=rate * 0.98,
            history=tuple(h),
            last_kick_age_s=rng.random(),
            last_call_age_s=rng.random(),
        )
    vms = []
    for vm in snap.vms:
        devs = []
        for dev in vm.devices:
            d = dataclasses.replace(
                dev, queues=tuple(rows[f"{dev.key}#{q.index}"].view for q in dev.queues)
            )
            devs.append(d)
            devices[d.key] = d
        vms.append(dataclasses.replace(vm, devices=tuple(devs)))
    return dataclasses.replace(snap, vms=tuple(vms), rows=rows, devices=devices)


def frames(queues: int, workload: str, n: int) -> list[Snapshot]:
    devices, per = SHAPES[queues]
    rng = random.Random(1)
    history: dict[str, list[float]] = {}
    out = []
    for t in range(n):
        snap = synthetic_snapshot(devices, per, tick=t * 7)
        if workload == "busy":
            snap = busy(snap, t, rng, history)
        out.append(dataclasses.replace(snap, taken_at=FROZEN_WALL + t))
    return out


def encode_figures(snaps: list[Snapshot]) -> tuple[float, float, list[bytes]]:
    """(CPU ms per frame, bytes per frame, the encoded frames)."""
    encoder = FrameEncoder()
    encoded = []
    cpu = 0.0
    for snap in snaps:
        started = time.process_time()
        encoded.append(encoder.encode(snap, []).data)
        cpu += time.process_time() - started
    return cpu / len(snaps) * 1e3, sum(map(len, encoded)) / len(snaps), encoded


def retime(data: bytes, t: float) -> bytes:
    """A record with its time changed (and its CRC recomputed)."""
    kind, length, _ = RECORD.unpack_from(data)
    head = RECORD.pack(kind, length, t)
    payload = data[HEAD_SIZE : HEAD_SIZE + length]
    return head + CRC.pack(zlib.crc32(payload, zlib.crc32(head))) + payload


def hour_file(group: list[bytes], path: Path) -> int:
    with open(path, "wb") as f:
        f.write(file_header({"host": "bench", "cause": "benchmark"}))
        for t in range(3600):
            f.write(retime(group[t % len(group)], FROZEN_WALL + t))
    return path.stat().st_size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{KEY_EVERY} frames per figure")
    args = parser.parse_args()
    n = KEY_EVERY if args.quick else KEY_EVERY * 3
    print(
        f"{'queues':>6} {'workload':<9} {'CPU ms/frame':>12} {'CPU %':>6} {'MB/hour':>8}"
        f" {'open s':>7} {'seek ms':>8}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for queues in SHAPES:
            for workload in ("synthetic", "busy"):
                snaps = frames(queues, workload, n)
                cpu_ms, per_frame, encoded = encode_figures(snaps)
                path = Path(tmp) / f"{queues}-{workload}.svqrec"
                keys = [i for i, data in enumerate(encoded) if data[:1] == b"K"]
                hour_file(encoded[: keys[-1]] if len(keys) > 1 else encoded, path)
                started = time.perf_counter()
                rec = Recording.open(path)
                open_s = time.perf_counter() - started
                rng = random.Random(2)
                seeks = []
                for _ in range(10):
                    i = rec.nearest(rng.uniform(0, 3600))
                    started = time.perf_counter()
                    rec.frame(i)
                    seeks.append(time.perf_counter() - started)
                rec.close()
                print(
                    f"{queues:>6} {workload:<9} {cpu_ms:>12.1f} {cpu_ms / 10:>6.1f} "
                    f"{per_frame * 3600 / 1e6:>8.1f} {open_s:>7.2f} "
                    f"{sorted(seeks)[len(seeks) // 2] * 1e3:>8.0f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
