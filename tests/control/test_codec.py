"""The lossless snapshot codec: every model field survives the wire."""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from typing import Any

import pytest

from svqtui.control.codec import (
    decode,
    decode_event,
    decode_snapshot,
    encode,
    encode_event,
    encode_snapshot,
    from_wire,
)
from svqtui.control.errors import ControlProtocolError
from svqtui.model import (
    DeviceView,
    LogEvent,
    MaskState,
    QueueRow,
    QueueView,
    Snapshot,
    VMView,
)
from svqtui.virtio.requests import BlkRequest, NetRequest, Request


def sample(tp: Any, n: int) -> Any:
    """A value of type ``tp`` that differs from every field default (n varies it)."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is types.UnionType or origin is typing.Union:
        return sample(next(a for a in args if a is not type(None)), n)
    if origin is tuple:
        return tuple(sample(args[0], n + i) for i in range(2))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        members = list(tp)
        return members[n % len(members)]
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return filled(tp, n)
    if tp is bool:
        return True
    if tp is int:
        return 1000 + n
    if tp is float:
        return 0.1 + n
    if tp is str:
        return f"s{n}"
    raise AssertionError(f"no sample for {tp!r}")


def filled(cls: type, n: int, **given: Any) -> Any:
    """An instance of model dataclass ``cls`` with every field set, none default."""
    hints = typing.get_type_hints(cls)
    kwargs = dict(given)
    for i, f in enumerate(dataclasses.fields(cls)):
        if f.name in kwargs:
            continue
        value = sample(hints[f.name], n + i)
        if value == f.default:  # a bool or enum that happened to land on it
            value = not value if isinstance(value, bool) else sample(hints[f.name], n + i + 1)
        kwargs[f.name] = value
    return cls(**kwargs)


def full_snapshot() -> Snapshot:
    """A snapshot whose every field, at every level, is set to a non-default value."""
    vms = []
    for v in range(2):
        vm_devices = tuple(
            filled(
                DeviceView,
                10 * v + d,
                key=f"demo:vm{v}/dev{d}",
                queues=tuple(filled(QueueView, q, index=q) for q in range(3)),
            )
            for d in range(2)
        )
        vms.append(filled(VMView, v, devices=vm_devices))
    devices = {d.key: d for vm in vms for d in vm.devices}
    rows = {
        f"{d.key}#{q.index}": filled(
            QueueRow, q.index, view=q, device_key=d.key, history=(1.5, 2.25, 0.0)
        )
        for d in devices.values()
        for q in d.queues
    }
    snap = filled(Snapshot, 1, vms=tuple(vms), rows=rows, devices=devices)
    assert isinstance(snap, Snapshot)
    return snap


def assert_no_defaults(obj: Any) -> None:
    """Every field of every dataclass in obj differs from its default, so a
    codec that dropped a field would be caught by an equality check."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if f.default is not dataclasses.MISSING:
                assert value != f.default, f"{type(obj).__name__}.{f.name} left at its default"
            assert_no_defaults(value)
    elif isinstance(obj, tuple | list):
        for v in obj:
            assert_no_defaults(v)
    elif isinstance(obj, dict):
        for v in obj.values():
            assert_no_defaults(v)


def test_snapshot_survives_json_with_every_field() -> None:
    """encode_snapshot -> JSON text -> decode_snapshot gives an equal snapshot,
    with every field of every model class set (so none can be dropped silently)."""
    snap = full_snapshot()
    assert_no_defaults(snap)
    back = decode_snapshot(json.loads(json.dumps(encode_snapshot(snap))))
    assert back == snap
    for key, row in back.rows.items():
        device = back.devices[row.device_key]
        assert row.view is next(q for q in device.queues if f"{device.key}#{q.index}" == key)


def test_each_queue_is_sent_once() -> None:
    """The wire form holds a queue view once (in its device), not again in its row."""
    wire = encode_snapshot(full_snapshot())
    assert "devices" not in wire
    assert all("view" not in row for row in wire["rows"].values())


def test_events_round_trip() -> None:
    """A log event with every field set survives the wire."""
    event = LogEvent(1.5, "warning", "queue 0: hold", "demo:web01/net0", 0)
    assert decode_event(json.loads(json.dumps(encode_event(event)))) == event


def test_wrong_types_name_the_field() -> None:
    """A mistyped field is a ControlProtocolError naming where it is."""
    wire = encode_snapshot(full_snapshot())
    wire["vms"][1]["devices"][0]["queues"][2]["kicks"] = "many"
    with pytest.raises(ControlProtocolError, match=r"vms\[1\]\.devices\[0\]\.queues\[2\]\.kicks"):
        decode_snapshot(wire)
    wire = encode_snapshot(full_snapshot())
    wire["vms"][0]["devices"][0]["queues"][0]["mask"] = "HALF"
    with pytest.raises(ControlProtocolError, match="UNMASKED, MASKED, PENDING"):
        decode_snapshot(wire)
    with pytest.raises(ControlProtocolError, match="no such queue"):
        decode_snapshot({**encode_snapshot(full_snapshot()), "rows": {"x#0": {}}})


def test_versions_may_differ() -> None:
    """Unknown keys are ignored and missing keys with defaults take them, so an
    older client reads a newer server's snapshot (and the reverse)."""
    q = from_wire(QueueView, {"index": 2, "kicks": 5, "added_by_a_newer_svqtui": 1})
    assert q == QueueView(index=2, kicks=5)
    with pytest.raises(ControlProtocolError, match="index: missing"):
        from_wire(QueueView, {"kicks": 5})


def test_primitives_are_strict() -> None:
    """Booleans are not numbers, ints are accepted as floats, null only where optional."""
    assert decode(float, 3) == 3.0 and isinstance(decode(float, 3), float)
    assert decode(MaskState | None, None) is None
    for tp, value in [(int, True), (float, False), (str, 1), (int, None), (bool, 0)]:
        with pytest.raises(ControlProtocolError):
            decode(tp, value, "x")


@pytest.mark.parametrize("request_type", typing.get_args(Request), ids=lambda t: t.__name__)
def test_each_request_kind_decodes_as_itself(request_type: type) -> None:
    """A queue's oldest request (a union of dataclasses) comes back as the
    same class with every field, whichever option of the union it is."""
    oldest = filled(request_type, 7)
    assert_no_defaults(oldest)
    view = filled(QueueView, 3, index=0, oldest=oldest)
    back = decode(QueueView, json.loads(json.dumps(encode(view))))
    assert type(back.oldest) is request_type
    assert back == view


@dataclasses.dataclass(frozen=True)
class _Short:
    head: int


@dataclasses.dataclass(frozen=True)
class _Long:
    head: int
    extra: int = 0


def test_union_of_dataclasses_prefers_the_exact_fields() -> None:
    """An object decodes as the union option whose fields name all its keys,
    even when an earlier option would accept it by ignoring a key."""
    assert decode(_Short | _Long, encode(_Long(1, 2))) == _Long(1, 2)
    assert decode(_Long | _Short, encode(_Short(1))) == _Long(1, 0)  # both fit: as written
    assert decode(BlkRequest | NetRequest, encode(NetRequest(4, "RX", 1526))) == NetRequest(
        4, "RX", 1526
    )
