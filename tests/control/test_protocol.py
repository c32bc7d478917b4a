"""The control wire format: requests, replies, typed arguments, errors by class."""

from __future__ import annotations

import json
from typing import Any

import pytest

from svqtui.control.errors import ControlProtocolError
from svqtui.control.protocol import (
    Command,
    Request,
    Response,
    decode_line,
    error_from_wire,
    request_id,
)
from svqtui.engine.errors import EngineNotRunning
from svqtui.errors import ControlError, SvqtuiError
from svqtui.sources.errors import ActionUnsupported, QueueOutOfRange, UnknownDevice


def test_request_round_trips_as_one_json_line() -> None:
    """A request encodes to one newline-terminated JSON line that parses back equal."""
    req = Request(Command.MASK, {"device": "web01/net0", "queue": 3}, 42)
    line = req.encode()
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert Request.from_wire(decode_line(line)) == req


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (b"garbage\n", "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b"\xff\xfe{}\n", "not UTF-8"),
    ],
)
def test_undecodable_lines_are_protocol_errors(line: bytes, message: str) -> None:
    """Lines that are not a JSON object raise ControlProtocolError saying why."""
    with pytest.raises(ControlProtocolError, match=message):
        decode_line(line)


def test_unknown_command_names_the_known_ones() -> None:
    """An unknown command is refused with the list of commands that exist."""
    with pytest.raises(ControlProtocolError, match=r"unknown command 'frobnicate'.*status"):
        Request.from_wire({"cmd": "frobnicate"})
    with pytest.raises(ControlProtocolError, match='no "cmd"'):
        Request.from_wire({"id": 1})
    with pytest.raises(ControlProtocolError, match='"args" must be'):
        Request.from_wire({"cmd": "status", "args": [1]})


def test_typed_arguments_refuse_wrong_types() -> None:
    """Queue indexes are whole numbers >= 0 (not bools or strings), devices are
    non-empty strings, flags are booleans."""
    good = Request(Command.SHADOW, {"device": "d", "on": True, "queue": 0})
    assert (good.text("device"), good.flag("on"), good.index("queue")) == ("d", True, 0)
    cases: list[tuple[dict[str, Any], str]] = [
        ({"queue": -1}, "index"),
        ({"queue": True}, "index"),
        ({"queue": "1"}, "index"),
        ({"device": ""}, "text"),
        ({"device": 5}, "text"),
        ({"on": "yes"}, "flag"),
    ]
    for args, getter in cases:
        name = next(iter(args))
        with pytest.raises(ControlProtocolError, match=repr(name)):
            getattr(Request(Command.SHADOW, args), getter)(name)
    assert Request(Command.RESET, {"device": None}).optional_text("device") is None
    assert Request(Command.EVENTS, {}).optional_index("since", 0) == 0


def test_request_id_echoes_only_ints_and_strings() -> None:
    """The id echoed back is the request's own when it is an int or string, else null."""
    assert request_id({"id": 5}) == 5
    assert request_id({"id": "a"}) == "a"
    assert request_id({"id": True}) is None
    assert request_id({"id": [1]}) is None


def test_error_reply_raises_the_same_class_on_the_client() -> None:
    """A server error travels as its class name and message and is raised again
    as that svqtui.errors class, so callers can catch precise errors."""
    for err in (
        UnknownDevice("no device 'x'"),
        QueueOutOfRange("net0 has queues 0-7, not 9"),
        ActionUnsupported("qmp: shadow mode is not available"),
        EngineNotRunning("the relay engine is stopped"),
        ControlProtocolError("unknown command"),
    ):
        line = Response.for_error(3, err).encode()
        reply = Response.from_wire(json.loads(line))
        assert (reply.id, reply.ok) == (3, False)
        with pytest.raises(type(err)) as raised:
            reply.unwrap()
        assert type(raised.value) is type(err) and str(raised.value) == str(err)


def test_unknown_error_types_become_their_nearest_known_base() -> None:
    """An error name this side does not know decodes to the first known name of
    the lineage sent along, else to SvqtuiError, with the message kept."""
    err = error_from_wire("NoSuchError", "m", ("AlsoUnknown", "ControlError", "SvqtuiError"))
    assert type(err) is ControlError and str(err) == "m"
    assert type(error_from_wire("ValueError", "m")) is SvqtuiError
    assert str(error_from_wire("ValueError", "m")) == "m"


def test_an_error_reply_without_lineage_still_decodes() -> None:
    """A reply from an older server (no "lineage" key) decodes by its type, or
    to SvqtuiError when the type is unknown."""
    known = {"ok": False, "error": {"type": "UnknownDevice", "message": "no x"}}
    with pytest.raises(UnknownDevice, match="no x"):
        Response.from_wire(known).unwrap()
    unknown = {"ok": False, "error": {"type": "Gone", "message": "old"}}
    with pytest.raises(SvqtuiError, match="old") as raised:
        Response.from_wire(unknown).unwrap()
    assert type(raised.value) is SvqtuiError


def test_malformed_replies_are_protocol_errors() -> None:
    """A reply with neither ok:true nor an error object is a protocol error."""
    with pytest.raises(ControlProtocolError):
        Response.from_wire({"id": 1})
    with pytest.raises(ControlProtocolError):
        Response.from_wire({"ok": False, "error": "x"})
    assert Response.from_wire({"ok": True, "result": [1]}).unwrap() == [1]
