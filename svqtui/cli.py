"""Command line: argument parsing, mode selection and exit codes.

Modes: the console (default), ``--once`` and ``--log`` batch modes,
``--replay FILE`` (the console or a batch mode on a recording, svqtui.recording),
``--headless`` (engine and interposers without a UI, driven through the
control socket), ``svqtui ctl ...`` (a client of that socket) and ``svqtui lab``
(the live-migration demo, svqtui.lab.cli).
Exit codes: 0 ok, 2 bad configuration or usage, 1 any other error.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from svqtui.config import Config, load_config, parse_listen
from svqtui.errors import ConfigError, SvqtuiError
from svqtui.outputs import OUTPUTS, output_named
from svqtui.sources.demo.settings import PLUGIN as DEMO
from svqtui.sources.libvirt.settings import PLUGIN as LIBVIRT
from svqtui.sources.qmp.settings import PLUGIN as QMP
from svqtui.web import DEFAULT_PORT, web_console_guard

if TYPE_CHECKING:
    from svqtui.runtime import Runtime

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2

DESCRIPTION = """\
svqtui: live vhost virtqueue notifications (kicks guest->device, calls
device->guest), ring indices and guest-notifier masking of every vhost device
of every VM it can reach, with a shadow mode that routes a device's
notifications through svqtui's own relay engine.

With no configuration it opens on an embedded demo (synthetic VMs writing real
eventfds through the real engine), so it shows something live anywhere.
"""

EPILOG = """\
modes:
  svqtui                      the console (press ? inside for the keys)
  svqtui --once [--json]      print one snapshot after one refresh interval
  svqtui --log [--csv]        print kick/s and call/s per device every interval
  svqtui --headless           run the engine and interposers without a UI,
                              driven through the control socket (SIGHUP reloads
                              the config file, SIGTERM stops; under systemd see
                              contrib/systemd/svqtui.service)
  svqtui --attach [TARGET]    the console on a running --headless svqtui, here
                              (a socket path) or on another host (ssh://...)
  svqtui --headless --takeover
                              replace the --headless svqtui serving the same
                              control socket (an upgrade, a config change that
                              needs a restart): QEMU and the back-ends see no
                              connection close; the old one exits 0
  svqtui --headless --metrics 127.0.0.1:9469
                              also serve Prometheus metrics (README: Prometheus
                              and Grafana; config: metrics.listen)
  svqtui --web [--attach]     the console in a browser (http://127.0.0.1:8470)
  svqtui ctl --help           talk to a --headless svqtui (status, shadow, ...)
  svqtui lab [--check]        a live-migration demo on this host (svqtui lab --help)
  svqtui --replay FILE        the console on a recording (flight recorder, lab runs)
  svqtui --replay FILE --once --json --at 12.5s   the frame nearest 12.5 s in
  svqtui --record FILE        record every snapshot to FILE (console or --headless)

configuration (first found): -c PATH, ./config.yaml,
  $XDG_CONFIG_HOME/svqtui/config.yaml, the shipped default (demo on).

exit codes: 0 ok, 1 error, 2 bad configuration or usage.

examples:
  svqtui --once --json | jq '.vms[].devices[].queues[] | select(.mask=="PENDING")'
  svqtui --log --csv --count 60 > rates.csv
  svqtui -c /etc/svqtui/config.yaml --headless &
  svqtui ctl shadow blk0 on
  svqtui --attach ssh://root@hv1/run/svqtui/control.sock
  svqtui --attach ssh://hv1,ssh://hv2:2222      (several hosts, one console)
  SVQTUI_SSH_OPTS='-i ~/.ssh/fleet' svqtui ctl --host ssh://hv1 status
  svqtui ctl record dump /tmp/now.svqrec
  svqtui --replay /tmp/now.svqrec --log --csv > rates.csv
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="svqtui",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-c", "--config", metavar="PATH", help="configuration file (default: see below)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--once", action="store_true", help="print one snapshot and exit")
    mode.add_argument("--log", action="store_true", help="print one line per interval")
    mode.add_argument(
        "--headless", action="store_true", help="run without UI; serve the control socket"
    )
    parser.add_argument(
        "--takeover",
        action="store_true",
        help="with --headless: take everything over from the svqtui serving the same control "
        "socket (devices, connections, eventfds, counters) without closing a connection; "
        "it exits 0 (README: Upgrade without a restart)",
    )
    mode.add_argument(
        "--attach",
        nargs="?",
        const="",
        action="append",
        metavar="TARGET",
        help="open the console on a running --headless svqtui: its control socket path "
        "(default: control.socket of the config) or ssh://[user@]host[:port][/path] "
        "(through OpenSSH; ssh options in $SVQTUI_SSH_OPTS). Repeat it, or give a comma "
        "list, for several hosts in one console. Quitting detaches and leaves the devices "
        "as they are",
    )
    parser.add_argument(
        "--web",
        action="store_true",
        help="serve the console to a browser (textual-serve; one console per tab; with "
        "--attach every tab attaches to the headless svqtui) on --bind:--port",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        metavar="N",
        help="with --web (default %(default)s)",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="ADDR",
        help="with --web: the address to listen on (default %(default)s; any other address "
        "serves the console with no authentication in front of it)",
    )
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="with --once: JSON instead of a table")
    fmt.add_argument("--csv", action="store_true", help="with --log: comma-separated values")
    fmt.add_argument(
        "--output",
        metavar="FORMAT",
        choices=sorted(OUTPUTS),
        help="with --once or --log: "
        + ", ".join(f"{n} ({c.summary})" for n, c in sorted(OUTPUTS.items())),
    )
    parser.add_argument("--count", type=int, metavar="N", help="with --log: stop after N lines")
    parser.add_argument(
        "--replay",
        metavar="FILE",
        help="open the console (or --once/--log) on a recording instead of live devices; "
        "read-only: keys , . step, [ ] seek 10 s, n next event, t next stuck, - + speed, p pause",
    )
    parser.add_argument(
        "--at",
        metavar="TIME",
        help="with --replay: start at TIME into the recording (12.5, 12.5s, 2m; default 0: "
        "the first frame); --once prints the frame recorded nearest it",
    )
    parser.add_argument(
        "--record",
        metavar="FILE",
        help="record every snapshot and log line to FILE (rotated by record.rotate; "
        "replay with --replay FILE); with the console or --headless",
    )
    parser.add_argument(
        "--refresh", type=float, metavar="SECONDS", help="refresh interval (config: refresh)"
    )
    parser.add_argument(
        "--seed", type=int, metavar="N", help="make the demo deterministic (config: demo.seed)"
    )
    parser.add_argument(
        "--demo",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force the demo source on or off (config: demo.enabled)",
    )
    parser.add_argument(
        "--metrics",
        metavar="ADDR",
        help="with --headless or the console: serve Prometheus metrics at http://ADDR/metrics "
        "(HOST:PORT, [IPv6]:PORT, or PORT for 127.0.0.1:PORT; no authentication, so any "
        "other address must be written out; config: metrics.listen)",
    )
    parser.add_argument(
        "--no-discover",
        action="store_true",
        help="do not look for QEMU processes on this host (config: qmp.discover)",
    )
    parser.add_argument(
        "--libvirt",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force the libvirt source (every libvirt domain) on or off; default auto:"
        " on when the libvirt bindings import and libvirtd's socket exists"
        " (config: libvirt.enabled)",
    )
    return parser


def apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    """Command-line options win over config.yaml."""
    if args.refresh is not None:
        if not 0.05 <= args.refresh <= 60:
            raise ConfigError("--refresh", None, None, "must be between 0.05 and 60 seconds")
        config = dataclasses.replace(config, refresh_s=args.refresh)
    if args.seed is not None or args.demo is not None:
        demo = config.section(DEMO)
        if args.seed is not None:
            demo = dataclasses.replace(demo, seed=args.seed)
        if args.demo is not None:
            demo = dataclasses.replace(demo, enabled=args.demo)
        config = config.with_section(DEMO, demo)
    if args.metrics is not None:
        try:
            config = dataclasses.replace(config, metrics=parse_listen(args.metrics))
        except ValueError as err:
            raise ConfigError("--metrics", None, None, str(err)) from None
    if args.record is not None:
        record = dataclasses.replace(config.record, continuous=os.path.abspath(args.record))
        config = dataclasses.replace(config, record=record)
    if args.no_discover:
        config = config.with_section(QMP, dataclasses.replace(config.section(QMP), discover=False))
    if args.libvirt is not None:
        libvirt = dataclasses.replace(config.section(LIBVIRT), enabled=args.libvirt)
        config = config.with_section(LIBVIRT, libvirt)
    return config


def _output_name(args: argparse.Namespace) -> str:
    """The output format the batch flags ask for."""
    if args.output:
        return str(args.output)
    if args.once:
        return "json" if args.json else "table"
    return "csv" if args.csv else "log"


def _subcommand_index(argv: list[str], name: str) -> int | None:
    """Where ``name`` stands as the first positional word (so that both
    ``svqtui ctl -c X status`` and ``svqtui -c X ctl status`` work)."""
    skip = False
    for i, word in enumerate(argv):
        if skip:
            skip = False
        elif word in ("-c", "--config"):
            skip = True
        elif not word.startswith("-"):
            return i if word == name else None
    return None


def _fail(message: str, code: int) -> int:
    print(f"svqtui: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ctl_at = _subcommand_index(argv, "ctl")
    if ctl_at is not None:
        from svqtui.control.client import ctl_main

        return ctl_main(argv[:ctl_at] + argv[ctl_at + 1 :])
    lab_at = _subcommand_index(argv, "lab")
    if lab_at is not None:
        from svqtui.lab.cli import lab_main

        return lab_main(argv[:lab_at] + argv[lab_at + 1 :])
    args = build_parser().parse_args(argv)
    web_console_guard()
    if args.web:
        if args.once or args.log or args.headless:
            return _fail(
                "--web serves the console: not with --once, --log or --headless", EXIT_CONFIG
            )
        from svqtui.web import serve

        try:
            return serve(argv, args.bind, args.port)
        except SvqtuiError as err:
            return _fail(str(err), EXIT_ERROR)
    if args.output and not (args.once or args.log):
        return _fail("--output goes with --once or --log", EXIT_CONFIG)
    if args.json and not args.once:
        return _fail("--json goes with --once (try: svqtui --once --json)", EXIT_CONFIG)
    if (args.csv or args.count is not None) and not args.log:
        return _fail("--csv and --count go with --log", EXIT_CONFIG)
    if args.metrics is not None and (args.once or args.log or args.attach is not None):
        return _fail("--metrics goes with --headless or the console", EXIT_CONFIG)
    if args.replay is not None and (args.headless or args.attach is not None or args.record):
        return _fail("--replay goes alone, or with --once or --log", EXIT_CONFIG)
    if args.takeover and not args.headless:
        return _fail("--takeover goes with --headless", EXIT_CONFIG)
    if args.at is not None and args.replay is None:
        return _fail("--at goes with --replay (try: svqtui --replay FILE --at 12.5s)", EXIT_CONFIG)
    if args.record and (args.once or args.attach is not None):
        return _fail("--record goes with the console, --log or --headless", EXIT_CONFIG)
    try:
        config = apply_overrides(load_config(args.config), args)
    except ConfigError as err:
        return _fail(f"bad configuration: {err}", EXIT_CONFIG)
    try:
        return _run(config, args)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `svqtui --replay FILE --log | head`
        return EXIT_OK
    except SvqtuiError as err:
        return _fail(str(err), EXIT_ERROR)


def _run(config: Config, args: argparse.Namespace) -> int:
    if args.replay is not None:
        return _replay(config, args)
    if args.attach is not None:
        return _attach(config, args.attach)
    from svqtui.runtime import Runtime

    runtime = Runtime(config, reread=lambda: apply_overrides(load_config(config.path), args))
    if args.headless or not (args.once or args.log):
        return _serve(runtime, args.headless, args.takeover)
    runtime.start()
    try:
        if args.once:
            from svqtui.batch import run_once

            return run_once(runtime, output_named(_output_name(args)))
        from svqtui.batch import run_log

        return run_log(runtime, output_named(_output_name(args)), args.count)
    finally:
        runtime.stop()


def _serve(runtime: Runtime, headless: bool, takeover: bool = False) -> int:
    """Headless or the console, with the Prometheus exporter when configured
    (listening first: a busy port is one clear error before anything starts;
    headless starts its own, which a takeover hands over)."""
    if headless:
        from svqtui.control.headless import run_headless

        return run_headless(runtime, takeover=takeover)
    metrics = None
    if runtime.config.metrics is not None:
        from svqtui.outputs.prometheus import serve_metrics

        metrics = serve_metrics(runtime.config.metrics, runtime.monitor)
        note = "" if runtime.config.metrics.loopback else " (no authentication: any host can read)"
        runtime.log.info(f"metrics: serving {metrics.url}{note}")
    try:
        runtime.start()
        try:
            from svqtui.console.app import run_console

            return run_console(runtime)
        finally:
            runtime.stop()
    finally:
        if metrics is not None:
            metrics.stop()


def _replay(config: Config, args: argparse.Namespace) -> int:
    from svqtui.recording.batch import parse_at
    from svqtui.recording.reader import Recording

    at_s = parse_at(args.at) if args.at is not None else None
    with Recording.open(args.replay) as recording:
        if args.once or args.log:
            from svqtui.recording.batch import replay_log, replay_once

            output = output_named(_output_name(args))
            if args.once:
                return replay_once(recording, output, at_s or 0.0)
            return replay_log(recording, output, at_s or 0.0, args.count)
        from svqtui.recording.app import run_replay_console
        from svqtui.recording.replay import ReplayRuntime

        runtime = ReplayRuntime(recording, config)
        if at_s is not None:
            runtime.monitor.seek_to(at_s)
        try:
            return run_replay_console(runtime)
        finally:
            runtime.close()


def _attach(config: Config, values: list[str]) -> int:
    from svqtui.console.app import run_console
    from svqtui.control.attach import RemoteRuntime
    from svqtui.control.endpoint import split_targets
    from svqtui.control.errors import AttachTargetInvalid
    from svqtui.control.multi import MultiRemoteRuntime

    try:
        targets = split_targets(v or config.control_path for v in values)
        remote: RemoteRuntime | MultiRemoteRuntime = (
            RemoteRuntime(config, targets[0])
            if len(targets) == 1
            else MultiRemoteRuntime(config, targets)
        )
    except AttachTargetInvalid as err:
        return _fail(f"--attach: {err}", EXIT_CONFIG)
    try:
        remote.check()  # one clear line now rather than an empty console
        return run_console(remote)
    finally:
        remote.close()


if __name__ == "__main__":
    sys.exit(main())
