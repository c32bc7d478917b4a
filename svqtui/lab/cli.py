"""``svqtui lab``: argument parsing, signals and exit codes of the lab command.

``svqtui lab`` brings the lab up (printing each step while it boots) and opens
the console on it; ``svqtui lab --check`` runs the unattended script instead
(svqtui.lab.check). Whatever ends it, the console's quit, an error, Ctrl-C or
SIGTERM or SIGHUP (turned into KeyboardInterrupt in the main thread),
``Lab.close`` stops every process the lab started, with those signals ignored
meanwhile so a second one cannot cut the cleanup short.
Exit codes: 0 ok, 1 a failed check or a lab error, 2 bad usage.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from svqtui.errors import SvqtuiError
from svqtui.lab.guest_init import GuestParams
from svqtui.lab.layout import STUCK_AFTER_S
from svqtui.lab.migration import Mode
from svqtui.lab.scenario import LAB_PARAMS, Lab, LabOptions
from svqtui.recording.files import SUFFIX, prune, stamp

# the lab's default recordings (one per run, in the cache directory) kept:
# the newest this many, within this many bytes; a --record FILE is never pruned
LAB_RECORDINGS_KEPT = 20
LAB_RECORDINGS_BYTES = 512 * 1024 * 1024

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2

DESCRIPTION = """\
svqtui lab: a live-migration demo on this host, in one command.

It builds (once, cached) a guest kernel + busybox initramfs, starts
qemu-storage-daemon (one disk, exported twice), svqtui's vhost-user
interposer (devices lab-a and lab-b) and a QEMU guest (TCG) whose
vhost-user-blk disk goes through lab-a, and opens the console on it. The
guest writes, reads back and verifies blocks without end, and its status
(I/O verified, heartbeat) shows on the lab VM row.

In the console, besides the usual keys (s shadow, m mask...):
  M   migrate the VM to the other slot (lab-a <-> lab-b) over loopback TCP;
      shadow mode goes with it
  S   stall/resume the back-end (SIGSTOP/SIGCONT qemu-storage-daemon):
      watch the stuck detector fire and clear
  D   drop the next call of the guest's busy queue (shadow mode on first):
      its I/O stops, the queue turns STUCK with "device owes a call";
      then c (inject a call) on that queue brings the guest back
"""

EPILOG = """\
examples:
  svqtui lab                   the demo console
  svqtui lab --check           the whole demo unattended: one PASS/FAIL line a step
  svqtui lab --check --migrations 6
  svqtui lab --check --migration paused   (on a busy machine)
  svqtui lab --workdir /tmp/lab --shadow --cpus 2
  svqtui lab --record /tmp/demo.svqrec && svqtui --replay /tmp/demo.svqrec

Every run is recorded (--no-record: not); the file is named at exit.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svqtui lab",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--check", action="store_true", help="run the demo unattended; exit 0 if every step held"
    )
    parser.add_argument(
        "--migrations",
        type=int,
        default=2,
        metavar="N",
        help="with --check: migrations to make, ping-pong (default 2: there and back)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        metavar="DIR",
        help="where sockets, logs and the disk image go (default: a temporary directory, removed)",
    )
    parser.add_argument(
        "--migration",
        choices=[m.value for m in Mode],
        default=Mode.LIVE.value,
        help="live: the guest runs while it migrates (default); paused: it is stopped for "
        "the whole migration (QEMU 7.2's TCG can corrupt a live-migrated guest on a busy host)",
    )
    parser.add_argument("--shadow", action="store_true", help="start the lab device in shadow mode")
    parser.add_argument(
        "--cpus",
        type=int,
        default=1,
        metavar="N",
        help="guest CPUs (2: both request queues carry I/O; default 1)",
    )
    parser.add_argument(
        "--stuck-after",
        type=float,
        default=STUCK_AFTER_S,
        metavar="SECONDS",
        help=f"the stuck detector's threshold in the lab (default {STUCK_AFTER_S:g})",
    )
    parser.add_argument(
        "--delay-ms",
        type=int,
        default=LAB_PARAMS.delay_ms,
        metavar="MS",
        help=f"guest pause between I/O iterations (default {LAB_PARAMS.delay_ms})",
    )
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="record the run to FILE (default: a new file in $XDG_CACHE_HOME/svqtui/lab, "
        f"~/.cache/svqtui/lab, where the newest {LAB_RECORDINGS_KEPT} are kept; printed at "
        "exit; replay it with svqtui --replay FILE)",
    )
    parser.add_argument("--no-record", action="store_true", help="do not record the run")
    return parser


def default_recording(now: float | None = None) -> Path:
    """A new file for this run's recording: $XDG_CACHE_HOME/svqtui/lab/lab-TIME.svqrec."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = f"lab-{stamp(time.time() if now is None else now)}{SUFFIX}"
    return Path(base) / "svqtui" / "lab" / name


def new_default_recording(now: float | None = None) -> Path:
    """``default_recording()``, after removing the oldest default recordings
    so that, with this one, at most LAB_RECORDINGS_KEPT stay (``lab --check``
    runs in CI and a demo host runs the lab daily: the cache must not grow
    for ever)."""
    path = default_recording(now)
    if path.parent.is_dir():
        prune(path.parent, f"lab-*{SUFFIX}", LAB_RECORDINGS_KEPT - 1, LAB_RECORDINGS_BYTES)
    return path


def options_from(args: argparse.Namespace) -> LabOptions:
    """LabOptions from parsed arguments; ``ValueError`` with a one-line reason."""
    if args.migrations < 2:
        raise ValueError("--migrations must be at least 2 (there and back)")
    if not 1 <= args.cpus <= 8:
        raise ValueError("--cpus must be between 1 and 8")
    if not 0.1 <= args.stuck_after <= 60:
        raise ValueError("--stuck-after must be between 0.1 and 60 seconds")
    if not 0 <= args.delay_ms <= 10000:
        raise ValueError("--delay-ms must be between 0 and 10000")
    if args.record is not None and args.no_record:
        raise ValueError("--record and --no-record exclude each other")
    params = GuestParams(
        delay_ms=args.delay_ms,
        blocks=LAB_PARAMS.blocks,
        slots=LAB_PARAMS.slots,
        hb_ms=LAB_PARAMS.hb_ms,
    )
    return LabOptions(
        workdir=args.workdir,
        shadow=args.shadow,
        cpus=args.cpus,
        params=params,
        stuck_after_s=args.stuck_after,
        migration=Mode(args.migration),
        record=None if args.no_record else (args.record or new_default_recording()),
    )


@contextmanager
def interrupts_as_keyboard() -> Iterator[None]:
    """SIGTERM (and SIGHUP) raise KeyboardInterrupt in the main thread, like Ctrl-C,
    so the ``finally`` that stops the lab runs."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    sigs = (signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, on_signal) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def stop_signals_ignored() -> Iterator[None]:
    """While the lab stops, a second Ctrl-C, SIGTERM or SIGHUP (a closing terminal
    sends more than one) must not cut its cleanup short."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in sigs}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _say(text: str) -> None:
    print(f"svqtui lab: {text}", file=sys.stderr, flush=True)


def lab_main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    try:
        options = options_from(args)
    except ValueError as err:
        _say(str(err))
        return EXIT_USAGE
    with interrupts_as_keyboard():
        lab: Lab | None = None
        try:
            lab = Lab(options)
            if args.check:
                from svqtui.lab.check import run_check

                return run_check(lab, migrations=args.migrations)
            return _console(lab)
        except KeyboardInterrupt:
            if args.check:
                print("FAIL lab check: interrupted", flush=True)
                return EXIT_ERROR
            return EXIT_OK
        except SvqtuiError as err:
            _say(str(err))
            return EXIT_ERROR
        finally:
            if lab is not None:
                with stop_signals_ignored():
                    lab.close()
                _said_recording(lab)


def _said_recording(lab: Lab) -> None:
    """Name the run's recording (written by now: the runtime has stopped)."""
    path = lab.recording
    if path is not None and path.exists():
        _say(f"this run is recorded in {path} (replay: svqtui --replay {path})")


def _console(lab: Lab) -> int:
    began = time.monotonic()
    lab.start(on_step=lambda step: _say(f"starting {step}…"))
    _say(
        f"guest up after {time.monotonic() - began:.1f}s "
        f"(work directory {lab.layout.workdir}); opening the console"
    )
    from svqtui.lab.app import run_lab_console

    return run_lab_console(lab)
