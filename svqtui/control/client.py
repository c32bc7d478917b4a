"""``svqtui ctl``: a client of the control socket of ``svqtui --headless``.

``ControlClient`` is the in-process API (scripts, tests, an attaching console):
one connection, blocking calls, server errors raised as their svqtui.errors
classes; before the first request it checks that the server runs as root or
as this user (``check_server``). ``ctl_main`` is the command line on top of it; exit codes are 0 ok,
1 error (one line on stderr), 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import sys
import textwrap
import time
from typing import Any

from svqtui.control.codec import decode_event, decode_snapshot
from svqtui.control.errors import (
    AttachTargetInvalid,
    ControlProtocolError,
    ControlUnreachable,
    UntrustedServer,
)
from svqtui.control.protocol import MAX_RESPONSE_BYTES, Command, Request, Response, decode_line
from svqtui.control.rundir import user_name
from svqtui.engine.faults import FAULT_NAMES
from svqtui.errors import ConfigError, SvqtuiError
from svqtui.model import LogEvent, Snapshot
from svqtui.unix_socket import peer_uid

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
DEFAULT_TIMEOUT_S = 10.0


def _unreachable(path: str, err: OSError) -> ControlUnreachable:
    if isinstance(err, FileNotFoundError):
        why = (
            "no such file (is `svqtui --headless` running? start it, "
            "or pass -c with the config it uses)"
        )
    elif isinstance(err, ConnectionRefusedError):
        why = "nothing is listening (a stale socket: did `svqtui --headless` die? start it again)"
    elif isinstance(err, PermissionError):
        why = (
            "permission denied (the socket is mode 0600: run `svqtui ctl` as the user "
            "that runs `svqtui --headless`)"
        )
    elif isinstance(err, TimeoutError):
        why = "timed out connecting (is `svqtui --headless` stuck?)"
    else:
        why = err.strerror or str(err)
    return ControlUnreachable(f"cannot reach the control socket {path}: {why}")


def check_server(sock: socket.socket, path: str) -> None:
    """Refuse a server that runs as neither root nor this user (SO_PEERCRED),
    before anything is sent: someone may have swapped the socket file."""
    uid = peer_uid(sock)
    me = os.geteuid()
    if uid in (0, me):
        return
    who = "an unknown user" if uid is None else user_name(uid)
    raise UntrustedServer(
        f"the control socket {path} is served by {who}, not by root or {user_name(me)}: "
        "sent nothing (someone may have replaced the socket; check who owns its directory)"
    )


class ControlClient:
    """One connection to a control socket; use as a context manager."""

    def __init__(
        self, path: str, timeout: float = DEFAULT_TIMEOUT_S, label: str | None = None
    ) -> None:
        self.path = path
        self.label = label or path  # how messages name the socket (an ssh:// URL)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""
        self._next_id = 0

    def connect(self) -> ControlClient:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError as err:
            sock.close()
            raise _unreachable(self.label, err) from None
        try:
            check_server(sock, self.path)
        except UntrustedServer:
            sock.close()
            raise
        self._sock = sock
        return self

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf = b""

    def __enter__(self) -> ControlClient:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the wire --------------------------------------------------------------

    def request(self, cmd: Command, **args: Any) -> Any:
        """Send one request and return its result (or raise the server's error)."""
        if self._sock is not None and self._closed_by_server():
            self.close()  # idle too long (or told to go): a fresh connection
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        self._next_id += 1
        rid = self._next_id
        send_error: OSError | None = None
        try:
            self._sock.sendall(Request(cmd, args, rid).encode())
        except (BrokenPipeError, ConnectionResetError) as err:
            send_error = err  # the server may have said why before closing: read on
        try:
            response = Response.from_wire(decode_line(self._read_line(), "reply"))
        except TimeoutError:
            self.close()
            raise ControlUnreachable(
                f"no reply from the control socket {self.label} within {self.timeout:g} s "
                "(is `svqtui --headless` stuck? try --timeout)"
            ) from None
        except (OSError, ControlUnreachable) as err:
            self.close()
            lost = send_error or err
            if not isinstance(lost, OSError):
                raise
            raise ControlUnreachable(
                f"lost the control socket {self.label}: {lost.strerror or lost} "
                "(did `svqtui --headless` stop?)"
            ) from None
        if response.id not in (rid, None):
            self.close()
            raise ControlProtocolError(f"reply to request {response.id!r}, expected {rid}")
        return response.unwrap()

    def _closed_by_server(self) -> bool:
        """Between requests the server sends nothing, unless it is closing this
        connection (idle timeout, busy): then EOF or a line is waiting."""
        assert self._sock is not None
        if self._buf:
            return True
        poller = select.poll()  # not select(): any fd number
        poller.register(self._sock, select.POLLIN | select.POLLHUP | select.POLLERR)
        return bool(poller.poll(0))

    def _read_line(self) -> bytes:
        assert self._sock is not None
        while b"\n" not in self._buf:
            if len(self._buf) > MAX_RESPONSE_BYTES:
                raise ControlProtocolError(f"reply longer than {MAX_RESPONSE_BYTES} bytes")
            chunk = self._sock.recv(1 << 16)
            if not chunk:
                raise ControlUnreachable(
                    f"the control socket {self.label} closed the connection "
                    "(did `svqtui --headless` stop?)"
                )
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    # -- typed calls -------------------------------------------------------------

    def hello(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request(Command.HELLO)
        return result

    def status(self) -> dict[str, Any]:
        """The ``svqtui --once --json`` shape of the latest snapshot."""
        result: dict[str, Any] = self.request(Command.STATUS)
        return result

    def snapshot(self) -> Snapshot:
        """The latest snapshot, every field, as model objects."""
        return decode_snapshot(self.request(Command.SNAPSHOT))

    def events(self, since: int = 0) -> tuple[int, list[LogEvent]]:
        """Log events after sequence number ``since``, and the newest number."""
        result = self.request(Command.EVENTS, since=since)
        if not isinstance(result, dict) or not isinstance(result.get("events"), list):
            raise ControlProtocolError("events reply without an events list")
        seq = result.get("seq")
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise ControlProtocolError("events reply without a sequence number")
        return seq, [decode_event(e) for e in result["events"]]

    def shadow(self, device: str, on: bool) -> dict[str, Any]:
        result: dict[str, Any] = self.request(Command.SHADOW, device=device, on=on)
        return result

    def mask(self, device: str, queue: int, masked: bool = True) -> dict[str, Any]:
        cmd = Command.MASK if masked else Command.UNMASK
        result: dict[str, Any] = self.request(cmd, device=device, queue=queue)
        return result

    def unmask(self, device: str, queue: int) -> dict[str, Any]:
        return self.mask(device, queue, masked=False)

    def kick(self, device: str, queue: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request(Command.KICK, device=device, queue=queue)
        return result

    def call(self, device: str, queue: int) -> dict[str, Any]:
        result: dict[str, Any] = self.request(Command.CALL, device=device, queue=queue)
        return result

    def fault(
        self, device: str, queue: int, fault: str, amount: int | None = None
    ) -> dict[str, Any]:
        """Arm ``fault`` (drop-kick, drop-call, delay-call, dup-call) or ``clear``."""
        result: dict[str, Any] = self.request(
            Command.FAULT, device=device, queue=queue, fault=fault, amount=amount
        )
        return result

    def reset(self, device: str | None = None) -> dict[str, Any]:
        result: dict[str, Any] = self.request(Command.RESET, device=device)
        return result

    def reload(self) -> dict[str, Any]:
        """Re-read and apply the server's config file: {config, changes,
        restart, seconds}; raises ConfigError (nothing changed) when invalid."""
        result: dict[str, Any] = self.request(Command.RELOAD)
        return result

    def record_dump(self, path: str | None = None) -> str:
        """Have the flight recorder write its window now; the file it wrote."""
        result = self.request(Command.RECORD_DUMP, path=path)
        if not isinstance(result, dict) or not isinstance(result.get("path"), str):
            raise ControlProtocolError("record-dump reply without a path")
        return str(result["path"])


# -- the command line ------------------------------------------------------------

DESCRIPTION = """\
Talk to a running `svqtui --headless` through its control socket: show what it
sees, and drive shadow mode, masking, injection and counters. DEVICE is a
device key, a device name, or VM/NAME, as `svqtui ctl status` shows them.
"""

EPILOG = """\
The socket is control.socket of the configuration (-c PATH, else the one
svqtui would load), unless --socket names it, or --host names one on another
host: ssh://[user@]host[:port][/path/to/control.sock] (the path defaults to
that user's default socket there). svqtui runs the system's ssh client
(BatchMode=yes: agent or unencrypted keys, known hosts); $SVQTUI_SSH_OPTS
adds ssh options before svqtui's own, e.g. '-i ~/.ssh/fleet -o Port=2222'.
Nothing is sent unless the process serving it runs as root or as you
(checked with SO_PEERCRED). A busy
server (too many clients or followers, actions piling up on a hung device)
answers with one "busy" line: try again.

exit codes: 0 ok, 1 error (one line on stderr), 2 bad configuration or usage.

examples:
  svqtui -c /etc/svqtui/config.yaml --headless &
  svqtui ctl -c /etc/svqtui/config.yaml status
  svqtui ctl status --json | jq '.vms[].devices[] | {name, shadow}'
  svqtui ctl shadow blk0 on
  svqtui ctl mask vm1/net0 0 && svqtui ctl unmask vm1/net0 0
  svqtui ctl kick blk0 0
  svqtui ctl reset
  svqtui ctl fault blk0 0 drop-call && svqtui ctl call blk0 0
  svqtui ctl reload
  svqtui ctl events --follow
  svqtui ctl --host ssh://root@hv1/run/svqtui/control.sock shadow blk0 on
"""

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "status": (
        "show every VM, device and queue (the table of `svqtui --once`)",
        "  svqtui ctl status\n  svqtui ctl status --json | jq '.vms[].devices[].queues[]'",
    ),
    "snapshot": (
        "print every field of the latest snapshot as JSON (what an attaching console reads)",
        "  svqtui ctl snapshot | jq '.rows | keys'",
    ),
    "events": (
        "print the event log (svqtui keeps the last 2000 events)",
        "  svqtui ctl events\n  svqtui ctl events --follow --json",
    ),
    "shadow": (
        "route a device's notifications through svqtui's relay engine (on), or give "
        "the device its own fds back (off)",
        "  svqtui ctl shadow blk0 on\n  svqtui ctl shadow vm1/net0 off",
    ),
    "mask": (
        "mask a queue's guest notifier: calls are held (PENDING) instead of delivered",
        "  svqtui ctl mask vm1/net0 0",
    ),
    "unmask": (
        "unmask a queue's guest notifier: a held call is delivered once",
        "  svqtui ctl unmask vm1/net0 0",
    ),
    "kick": (
        "inject one kick (guest -> device) into a queue",
        "  svqtui ctl kick blk0 0",
    ),
    "call": (
        "inject one call (device -> guest) into a queue",
        "  svqtui ctl call blk0 0",
    ),
    "fault": (
        "arm a fault on a shadowed queue, to rehearse a stuck queue or test a guest "
        "driver: drop-kick N / drop-call N (swallow the next N, counted as dropped), "
        "delay-call MS (every call waits MS ms until cleared), dup-call N (write the "
        "next N calls twice), or clear (every fault of the queue; a delayed call is "
        "delivered at once). Faults disarm after N, on clear, on shadow off and with "
        "svqtui",
        "  svqtui ctl fault blk0 0 drop-call\n  svqtui ctl fault blk0 0 delay-call 500\n"
        "  svqtui ctl fault blk0 0 clear",
    ),
    "reset": (
        "zero the counters of one device, or of every device",
        "  svqtui ctl reset blk0\n  svqtui ctl reset",
    ),
    "reload": (
        "make the running svqtui re-read its config file (as SIGHUP does): added "
        "vhost-user devices listen, removed ones are drained and closed, changed "
        "settings apply; an invalid file is refused (exit 2) and nothing changes",
        "  svqtui ctl reload\n  svqtui ctl reload --json",
    ),
    "record": (
        "write the flight recorder's window (the last record.window of snapshots and log "
        "lines) to a file now; replay it with `svqtui --replay FILE`",
        "  svqtui ctl record dump\n  svqtui ctl record dump /tmp/incident.svqrec",
    ),
}


def _queue_arg(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"QUEUE must be a whole number >= 0, not {text!r}")
    return int(text)


def _count_arg(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"N|MS must be a whole number >= 1, not {text!r}")
    return int(text)


def _timeout_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"SECONDS must be a number in (0, 3600], not {text!r}")
    return value


def _common(suppress: bool) -> argparse.ArgumentParser:
    """-c/--socket/--timeout, accepted before and after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    default: dict[str, Any] = {"default": argparse.SUPPRESS} if suppress else {}
    p.add_argument(
        "-c",
        "--config",
        metavar="PATH",
        help="the configuration svqtui --headless runs with",
        **default,
    )
    p.add_argument("--socket", metavar="PATH", help="the control socket (overrides -c)", **default)
    p.add_argument(
        "--host",
        metavar="SSH_URL",
        help="a headless svqtui on another host: ssh://[user@]host[:port][/socket path] "
        "(overrides -c and --socket)",
        **default,
    )
    p.add_argument(
        "--timeout",
        type=_timeout_arg,
        metavar="SECONDS",
        help=f"wait this long for a reply (default {DEFAULT_TIMEOUT_S:g})",
        **default,
    )
    return p


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="svqtui ctl",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=raw,
        parents=[_common(suppress=False)],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = _common(suppress=True)
    subs: dict[str, argparse.ArgumentParser] = {}
    for name, (summary, examples) in SUBCOMMANDS.items():
        subs[name] = sub.add_parser(
            name,
            help=summary,
            description=textwrap.fill(summary[0].upper() + summary[1:] + "."),
            epilog="examples:\n" + examples,
            formatter_class=raw,
            parents=[common],
        )
    subs["status"].add_argument(
        "--json", action="store_true", help="the JSON of `svqtui --once --json` instead"
    )
    subs["events"].add_argument(
        "--since", type=int, default=0, metavar="SEQ", help="only events after this number"
    )
    subs["events"].add_argument(
        "--follow", "-f", action="store_true", help="keep printing new events (Ctrl-C stops)"
    )
    subs["events"].add_argument("--json", action="store_true", help="one JSON object a line")
    device_help = "device key, name, or VM/NAME (see `svqtui ctl status`)"
    subs["shadow"].add_argument("device", metavar="DEVICE", help=device_help)
    subs["shadow"].add_argument("state", choices=("on", "off"), metavar="on|off")
    for name in ("mask", "unmask", "kick", "call"):
        subs[name].add_argument("device", metavar="DEVICE", help=device_help)
        subs[name].add_argument("queue", type=_queue_arg, metavar="QUEUE", help="queue index")
    subs["fault"].add_argument("device", metavar="DEVICE", help=device_help)
    subs["fault"].add_argument("queue", type=_queue_arg, metavar="QUEUE", help="queue index")
    subs["fault"].add_argument(
        "fault",
        choices=(*FAULT_NAMES, "clear"),
        metavar="FAULT",
        help="drop-kick, drop-call, delay-call, dup-call or clear",
    )
    subs["fault"].add_argument(
        "amount", type=_count_arg, nargs="?", metavar="N|MS", help="default: 1 (or 500 ms)"
    )
    subs["reload"].add_argument("--json", action="store_true", help="the reload report as JSON")
    subs["reset"].add_argument(
        "device", metavar="DEVICE", nargs="?", help=device_help + "; default: every device"
    )
    subs["record"].add_argument("action", choices=("dump",), metavar="dump")
    subs["record"].add_argument(
        "path",
        metavar="PATH",
        nargs="?",
        help="a file or a directory (default: record.dir of the headless svqtui)",
    )
    return parser


def socket_path(args: argparse.Namespace) -> str:
    """--socket, else control.socket of the configuration (raises ConfigError)."""
    if args.socket:
        return str(args.socket)
    from svqtui.config import load_config

    return load_config(args.config).control_path


def ctl_main(argv: list[str]) -> int:
    """``svqtui ctl ARGV...``; returns the exit code."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2)
        return exit_.code if isinstance(exit_.code, int) else EXIT_CONFIG
    from svqtui.control.endpoint import Endpoint

    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT_S
    try:
        endpoint = Endpoint(args.host if args.host else socket_path(args))
    except ConfigError as err:
        print(f"svqtui: bad configuration: {err}", file=sys.stderr)
        return EXIT_CONFIG
    except AttachTargetInvalid as err:
        print(f"svqtui: --host: {err}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        with endpoint.client(timeout) as client:
            return _run(client, args)
    except SvqtuiError as err:
        print(f"svqtui: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:  # `svqtui ctl events -f | head`
        return EXIT_OK
    finally:
        endpoint.close()


def _run(client: ControlClient, args: argparse.Namespace) -> int:
    command: str = args.command
    if command == "status":
        if args.json:
            _print_json(client.status())
        else:
            from svqtui.outputs.table import format_table

            print(format_table(client.snapshot()))
    elif command == "snapshot":
        _print_json(client.request(Command.SNAPSHOT))
    elif command == "events":
        _events(client, args.since, args.follow, args.json)
    elif command == "reload":
        return _reload(client, args.json)
    elif command == "record":
        path = os.path.abspath(args.path) if args.path else None  # the server's cwd differs
        print(f"svqtui: recorded: {client.record_dump(path)}")
    else:
        if command == "shadow":
            result = client.shadow(args.device, args.state == "on")
        elif command in ("mask", "unmask"):
            result = client.mask(args.device, args.queue, masked=command == "mask")
        elif command == "kick":
            result = client.kick(args.device, args.queue)
        elif command == "call":
            result = client.call(args.device, args.queue)
        elif command == "fault":
            result = client.fault(args.device, args.queue, args.fault, args.amount)
        else:
            result = client.reset(args.device)
        print(f"svqtui: done: {result.get('done', command)}")
    return EXIT_OK


def _reload(client: ControlClient, as_json: bool) -> int:
    try:
        report = client.reload()
    except ConfigError as err:
        print(f"svqtui: reload refused: {err}; the running configuration is kept", file=sys.stderr)
        return EXIT_CONFIG
    if as_json:
        _print_json(report)
        return EXIT_OK
    changes = [str(c) for c in report.get("changes", [])]
    restart = [str(c) for c in report.get("restart", [])]
    ms = float(report.get("seconds", 0)) * 1000
    print(
        f"svqtui: reloaded {report.get('config')} in {ms:.0f} ms"
        + ("" if changes or restart else ": nothing changed")
    )
    for line in changes:
        print(f"  applied: {line}")
    for line in restart:
        print(f"  needs a restart (running value kept): {line}")
    return EXIT_OK


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


#: ``events --follow``: how long a lost control socket is tried again (a
#: takeover: the new svqtui serves the same socket, docs/design.md#takeover).
FOLLOW_RECONNECT_S = 15.0


def _events(client: ControlClient, since: int, follow: bool, as_json: bool) -> None:
    from svqtui.control.codec import encode_event
    from svqtui.control.headless import format_event

    lost_at: float | None = None
    while True:
        try:
            since, events = client.events(since)
        except ControlUnreachable:
            now = time.monotonic()
            lost_at = lost_at if lost_at is not None else now
            if not follow or now - lost_at > FOLLOW_RECONNECT_S:
                raise
            client.close()
            time.sleep(0.1)
            continue
        lost_at = None
        for event in events:
            print(json.dumps(encode_event(event)) if as_json else format_event(event))
        sys.stdout.flush()
        if not follow:
            return
        time.sleep(0.5)
