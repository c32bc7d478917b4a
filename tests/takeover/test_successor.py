"""The new svqtui checks a handed-over state document whole before it uses
anything (svqtui.takeover.successor.parse, docs/design.md#takeover)."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from typing import Any

import pytest

from svqtui.model import LogEvent
from svqtui.takeover.errors import StateRefused
from svqtui.takeover.state import RECENT_EVENTS, header
from svqtui.takeover.successor import _marked, parse


@pytest.fixture
def fds() -> Iterator[list[int]]:
    """Six eventfds standing in for received fds (``seven`` adds one)."""
    made = [os.eventfd(0, os.EFD_CLOEXEC) for _ in range(6)]
    yield made
    for fd in made:
        os.close(fd)


def _channel(sock: int) -> dict[str, Any]:
    return {"sock": sock, "header": None, "buf": "", "fds": [], "out": []}


def _doc() -> dict[str, Any]:
    vring = {
        "index": 0,
        "fe_kick": None,
        "fe_call": None,
        "eng_kick": 4,
        "eng_call": 5,
        "shadowed": True,
        "watch_kick": True,
        "be_kick": "engine",
        "be_call": "engine",
        "addr": None,
        "enabled": True,
        "error": None,
        "call_sets": 2,
        "kick_base": 10,
        "call_base": 9,
        "init_call_id": None,
        "num": 256,
        "ever_started": True,
        "started": True,
        "ring_active": False,
        "hold": False,
    }
    device = {
        "name": "blk0",
        "listen_path": "/run/x.sock",
        "listen": 1,
        "shadow_wanted": True,
        "connection": {
            "shadow": True,
            "features": 0,
            "protocol_features": 0,
            "offered_hidden": 0,
            "backend_channel": False,
            "postcopy": False,
            "fe": _channel(2),
            "be": _channel(3),
            "memory": [],
            "vrings": [vring],
        },
    }
    control = {"listen": 0, "lock": 6, "ino": 1, "path": "/run/c.sock"}
    return header({"pid": 1, "control": control, "devices": [device]})


def _good() -> dict[str, Any]:
    """Refs: control listen 0 and lock 6, listen 1, sockets 2 and 3, the
    ring's engine eventfds 4 and 5: seven fds, each once."""
    return _doc()


@pytest.fixture
def seven(fds: list[int]) -> Iterator[list[int]]:
    extra = os.eventfd(0, os.EFD_CLOEXEC)
    yield [*fds, extra]
    os.close(extra)


def test_a_consistent_document_is_accepted(seven: list[int]) -> None:
    """Every fd referenced once, every field of the right type: parsed."""
    state = parse(_good(), seven)
    assert state.control.listen == 0 and state.control.lock == 6
    (dev,) = state.devices
    assert dev.name == "blk0" and dev.shadowed_rings == 1
    assert dev.connection is not None and dev.connection.vrings[0].fields["kick_base"] == 10


def test_an_unknown_state_version_is_refused_in_one_line(seven: list[int]) -> None:
    """A document of a version this svqtui does not list: refused before
    any field is looked at, one line naming both versions."""
    doc = _good()
    doc["state_version"] = 99
    doc["devices"] = "garbage"
    with pytest.raises(StateRefused) as refused:
        parse(doc, seven)
    assert "state version 99" in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("path", "value", "why"),
    [
        (("control", "listen"), 6, "referenced twice"),
        (("control", "lock"), 9, "referenced, 7 sent"),
        (("devices", 0, "listen"), "1", "not an fd reference"),
        (("devices", 0, "connection", "vrings", 0, "be_kick"), "nobody", "unknown fd holder"),
        (("devices", 0, "connection", "vrings", 0, "index"), 300, "out of range"),
        (("devices", 0, "connection", "fe", "buf"), "zz", "not hex"),
        (("devices", 0, "connection", "shadow"), "yes", "bad value"),
        (("devices", 0, "name"), None, "bad value"),
    ],
)
def test_a_bad_field_refuses_the_whole_document(
    seven: list[int], path: tuple[Any, ...], value: object, why: str
) -> None:
    """One bad field anywhere: StateRefused with one line, nothing used."""
    doc = copy.deepcopy(_good())
    target: Any = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(StateRefused, match=why):
        parse(doc, seven)


def test_an_fd_sent_but_not_referenced_is_refused(seven: list[int]) -> None:
    """An fd that came with the document but that nothing names: refused."""
    extra = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        with pytest.raises(StateRefused, match="not referenced"):
            parse(_good(), [*seven, extra])
    finally:
        os.close(extra)


def test_an_engine_eventfd_that_is_not_one_is_refused(seven: list[int]) -> None:
    """The engine will watch a relayed ring's eventfds: a pipe there is refused."""
    r, w = os.pipe()
    try:
        fds = list(seven)
        fds[4] = r
        with pytest.raises(StateRefused, match="eng_kick is not an eventfd"):
            parse(_good(), fds)
    finally:
        os.close(r)
        os.close(w)


def test_the_optional_parts_are_read_when_present(seven: list[int]) -> None:
    """``metrics`` (with its fd) and ``events`` parse; a document without
    them (an older svqtui's) parses too, with neither."""
    doc = copy.deepcopy(_good())
    extra = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        doc["metrics"] = {"listen": 7, "host": "127.0.0.1", "port": 9469, "bound": 9469}
        doc["events"] = {
            "seq": 40,
            "recent": [
                {
                    "time_s": 1.0,
                    "level": "info",
                    "text": "x",
                    "device_key": None,
                    "queue_index": None,
                }
            ],
        }
        state = parse(doc, [*seven, extra])
    finally:
        os.close(extra)
    assert state.metrics is not None and state.metrics.listen == 7
    assert state.events_seq == 40 and [e.text for e in state.events] == ["x"]
    plain = parse(_good(), seven)
    assert plain.metrics is None and plain.events_seq == 0 and plain.events == []


@pytest.mark.parametrize(
    ("part", "value", "why"),
    [
        ("events", {"seq": -1, "recent": []}, "no sequence number"),
        ("events", {"seq": 1, "recent": [{}, {}]}, "no list of recent lines"),
        ("events", {"seq": 2, "recent": [{"text": 1}]}, "events:"),
        ("metrics", {"listen": 7, "host": 1, "port": 1, "bound": 1}, "metrics:"),
        ("metrics", [], "metrics: not an object"),
    ],
)
def test_a_bad_optional_part_refuses_the_document(
    seven: list[int], part: str, value: object, why: str
) -> None:
    """An optional part that is present must be right: refused whole otherwise."""
    doc = copy.deepcopy(_good())
    doc[part] = value
    with pytest.raises(StateRefused, match=why):
        parse(doc, seven)


def test_the_old_svqtuis_lines_are_made_safe_bounded_and_marked_once() -> None:
    """Lines handed over by the old svqtui (a peer like any other) go through
    the log's sanitizer: escape sequences become visible, at most
    RECENT_EVENTS lines are kept (the newest), and each is marked as the old
    svqtui's exactly once."""
    lines = [LogEvent(float(i), "info", f"line {i}") for i in range(RECENT_EVENTS + 50)]
    lines[-1] = LogEvent(1.0, "info", "evil \x1b]0;owned\x07 title")
    lines[-2] = LogEvent(1.0, "info", "[svqtui pid 7] passed on")
    marked = _marked(lines, 42)
    assert len(marked) == RECENT_EVENTS
    assert marked[0].text == "[svqtui pid 42] line 50"
    assert marked[-2].text == "[svqtui pid 7] passed on"
    assert "\x1b" not in marked[-1].text and "\\x1b" in marked[-1].text
