"""The control socket's wire format: newline-delimited JSON, one request and
one response per line, answered in order on each connection.

Request::

    {"id": 7, "cmd": "mask", "args": {"device": "vm1/net0", "queue": 0}}

Responses::

    {"id": 7, "ok": true, "result": {...}}
    {"id": 7, "ok": false, "error": {"type": "UnknownDevice", "message": "...",
                                     "lineage": ["ActionError", "SvqtuiError"]}}

``error.type`` is the wire name of the error's class (``@wire_error`` in
svqtui.errors), so a client raises the same precise error the server caught;
``error.lineage`` lists the wire names of its bases, nearest first, so a client
that does not know ``type`` (an older console, a newer server) raises the
nearest base it knows; ``error.message`` is the operator's one line.
Commands (``Command``) and their arguments:

========  =====================  =============================================
hello     -                      protocol version, server pid, config path
status    -                      the JSON document (svqtui.outputs.json_doc), as ``--once --json``
snapshot  -                      every field of the latest snapshot (svqtui.control.codec)
events    since (int, 0)         log events after sequence ``since``: {seq, events}
shadow    device, on (bool)      shadow mode on/off
mask      device, queue (int)    hold the queue's calls (guest notifier masked)
unmask    device, queue          release them (a pending call is delivered once)
kick      device, queue          inject one kick (guest -> device)
call      device, queue          inject one call (device -> guest)
reset     device (optional)      zero counters of one device, or of all
fault     device, queue, fault,  arm a fault (drop-kick, drop-call, delay-call,
          amount (optional)      dup-call; N or ms) or "clear" every fault
reload    -                      re-read the config file and apply it:
                                 {config, changes, restart, seconds}; an invalid
                                 file is a ConfigError and nothing changes
record-   path (optional)        write the flight recorder's window to a file now
dump                             (svqtui.recording); {path}
========  =====================  =============================================

A request line is at most ``MAX_REQUEST_BYTES``; a longer one is answered
with an error and the connection is closed.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from typing import Any

from svqtui import errors, io_loop
from svqtui.control import errors as control_errors
from svqtui.control.errors import ControlProtocolError
from svqtui.engine import errors as engine_errors
from svqtui.errors import SvqtuiError, wire_lineage
from svqtui.lab import errors as lab_errors
from svqtui.recording import errors as recording_errors
from svqtui.sources import errors as action_errors
from svqtui.sources.qmp import errors as qmp_errors
from svqtui.sources.vhost_user import errors as vhost_user_errors
from svqtui.takeover import errors as takeover_errors

#: Every module whose error classes can cross the socket; importing them
#: fills the wire registry (svqtui.errors.WIRE_ERRORS) before any decoding.
WIRE_ERROR_MODULES = (
    errors,
    control_errors,
    engine_errors,
    action_errors,
    qmp_errors,
    vhost_user_errors,
    lab_errors,
    recording_errors,
    io_loop,
    takeover_errors,
)

PROTOCOL_VERSION = 1
MAX_REQUEST_BYTES = 64 * 1024
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

RequestId = int | str | None


class Command(enum.StrEnum):
    HELLO = "hello"
    STATUS = "status"
    SNAPSHOT = "snapshot"
    EVENTS = "events"
    SHADOW = "shadow"
    MASK = "mask"
    UNMASK = "unmask"
    KICK = "kick"
    CALL = "call"
    RESET = "reset"
    FAULT = "fault"
    RELOAD = "reload"
    RECORD_DUMP = "record-dump"
    TAKEOVER = "takeover"


#: Commands that change something (run one at a time, in arrival order).
ACTIONS = frozenset(
    {
        Command.SHADOW,
        Command.MASK,
        Command.UNMASK,
        Command.KICK,
        Command.CALL,
        Command.RESET,
        Command.FAULT,
        Command.RELOAD,
        Command.TAKEOVER,
    }
)


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def decode_line(line: bytes, what: str = "request") -> dict[str, Any]:
    """One JSON object from one line; ``ControlProtocolError`` if it is not one."""
    try:
        obj = json.loads(line)
    except UnicodeDecodeError:
        raise ControlProtocolError(f"{what} is not UTF-8 text") from None
    except ValueError as err:
        raise ControlProtocolError(f"{what} is not JSON ({err})") from None
    if not isinstance(obj, dict):
        raise ControlProtocolError(f"{what} is not a JSON object")
    return obj


def request_id(obj: dict[str, Any]) -> RequestId:
    """The id to echo: the request's own, when it is an int or a string."""
    rid = obj.get("id")
    if isinstance(rid, bool) or not isinstance(rid, int | str):
        return None
    return rid


@dataclass(frozen=True, slots=True)
class Request:
    cmd: Command
    args: dict[str, Any] = field(default_factory=dict)
    id: RequestId = None

    def encode(self) -> bytes:
        return _dump({"id": self.id, "cmd": self.cmd.value, "args": self.args})

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Request:
        cmd = obj.get("cmd")
        if not isinstance(cmd, str):
            raise ControlProtocolError('request has no "cmd" string')
        try:
            command = Command(cmd)
        except ValueError:
            known = ", ".join(c.value for c in Command)
            raise ControlProtocolError(f"unknown command {cmd[:40]!r} (known: {known})") from None
        args = obj.get("args", {})
        if args is None:
            args = {}
        if not isinstance(args, dict):
            raise ControlProtocolError(f'{cmd}: "args" must be a JSON object')
        return cls(command, args, request_id(obj))

    # -- typed arguments -----------------------------------------------------

    def _bad(self, name: str, expected: str) -> ControlProtocolError:
        return ControlProtocolError(f"{self.cmd}: argument {name!r} must be {expected}")

    def text(self, name: str) -> str:
        value = self.args.get(name)
        if not isinstance(value, str) or not value:
            raise self._bad(name, "a non-empty string")
        return value

    def optional_text(self, name: str) -> str | None:
        if self.args.get(name) is None:
            return None
        return self.text(name)

    def index(self, name: str) -> int:
        value = self.args.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._bad(name, "a whole number >= 0")
        return value

    def optional_index(self, name: str, default: int) -> int:
        if self.args.get(name) is None:
            return default
        return self.index(name)

    def optional_count(self, name: str) -> int | None:
        """A whole number >= 1, or None when absent."""
        value = self.args.get(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._bad(name, "a whole number >= 1")
        return value

    def flag(self, name: str) -> bool:
        value = self.args.get(name)
        if not isinstance(value, bool):
            raise self._bad(name, "true or false")
        return value


@dataclass(frozen=True, slots=True)
class Response:
    id: RequestId
    ok: bool
    result: Any = None
    error_type: str = ""
    message: str = ""
    error_lineage: tuple[str, ...] = ()

    def encode(self) -> bytes:
        if self.ok:
            return _dump({"id": self.id, "ok": True, "result": self.result})
        error: dict[str, Any] = {"type": self.error_type, "message": self.message}
        if self.error_lineage:
            error["lineage"] = list(self.error_lineage)
        return _dump({"id": self.id, "ok": False, "error": error})

    @classmethod
    def for_error(cls, rid: RequestId, err: SvqtuiError) -> Response:
        """The reply for ``err``: its nearest registered class's wire name, the
        wire names of that class's bases, and its text."""
        names = wire_lineage(type(err))
        return cls(
            rid, False, error_type=names[0], message=str(err), error_lineage=tuple(names[1:])
        )

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Response:
        ok = obj.get("ok")
        if ok is True:
            return cls(request_id(obj), True, obj.get("result"))
        error = obj.get("error")
        if ok is not False or not isinstance(error, dict):
            raise ControlProtocolError('response has neither "ok": true nor an "error" object')
        lineage = error.get("lineage")
        return cls(
            request_id(obj),
            False,
            error_type=str(error.get("type", "")),
            message=str(error.get("message", "")) or "the server gave no reason",
            error_lineage=tuple(str(n) for n in lineage) if isinstance(lineage, list) else (),
        )

    def unwrap(self) -> Any:
        """The result, or the server's error raised as its registered class."""
        if self.ok:
            return self.result
        raise error_from_wire(self.error_type, self.message, self.error_lineage)


def error_from_wire(type_name: str, message: str, lineage: tuple[str, ...] = ()) -> SvqtuiError:
    """The error class registered as ``type_name``, else the nearest known
    base of ``lineage``, else ``SvqtuiError``; never fails (``errors.from_wire``)."""
    return errors.from_wire(type_name, message, lineage)
