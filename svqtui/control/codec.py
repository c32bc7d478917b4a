"""Model objects to and from JSON values, without loss, for the control socket.

``svqtui.outputs.json_doc`` is the public, script-friendly shape (``--once --json``,
``svqtui ctl status --json``); it leaves out what a table or a script does not
need (rate history, fd identities, injected counts...). A client that rebuilds
the console's view (``svqtui ctl status``, a later attaching console) needs
every field, so this codec walks the model dataclasses by their type hints:
a field added to svqtui.model goes over the wire with no change here. A union
of dataclasses (``svqtui.virtio.requests.Request``) decodes as the option
whose fields name every key sent.

Decoding is strict about types (a wrong type is a ``ControlProtocolError``
naming the field) and lenient about versions: unknown keys are ignored and a
missing key takes the field's default when it has one.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from collections import abc
from typing import Any, TypeVar

from svqtui.control.errors import ControlProtocolError
from svqtui.model import History, LogEvent, QueueRow, QueueView, Snapshot, VMView

T = TypeVar("T")


_PLAIN = frozenset({str, int, float, bool, type(None)})
_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}  # None: not a dataclass


def _field_names(cls: type) -> tuple[str, ...] | None:
    names = _FIELD_NAMES.get(cls, ())
    if names == ():
        if dataclasses.is_dataclass(cls):
            names = tuple(f.name for f in dataclasses.fields(cls))
        else:
            names = None
        _FIELD_NAMES[cls] = names
    return names


def encode(value: Any) -> Any:
    """A dataclass tree as plain JSON values (dicts, lists, str, numbers, None).

    Dispatches on the exact type, with each dataclass's field names looked up
    once: the flight recorder encodes every snapshot (svqtui.recording)."""
    cls = type(value)
    if cls in _PLAIN:
        return value
    names = _field_names(cls)
    if names is not None:
        return {name: encode(getattr(value, name)) for name in names}
    if cls is History:  # a row's rate history: its floats, as a tuple's
        return value.values().tolist()
    if isinstance(value, enum.Enum):
        return value.value
    if cls is tuple or cls is list or isinstance(value, tuple | list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode(v) for k, v in value.items()}
    return value


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS[cls] = typing.get_type_hints(cls)
    return hints


def _fail(where: str, expected: str, data: Any) -> ControlProtocolError:
    got = type(data).__name__ if data is not None else "null"
    return ControlProtocolError(f"bad field {where or '<top>'}: expected {expected}, got {got}")


def decode(tp: Any, data: Any, where: str = "") -> Any:
    """``data`` (plain JSON values) as an instance of type ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return data
    if origin is types.UnionType or origin is typing.Union:
        if data is None and type(None) in args:
            return None
        last: ControlProtocolError | None = None
        for option in _by_fit(args, data):
            try:
                return decode(option, data, where)
            except ControlProtocolError as err:
                last = err
        raise last or _fail(where, str(tp), data)
    if origin is tuple or origin is list or origin is abc.Sequence:
        if not isinstance(data, list):
            raise _fail(where, "a list", data)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(args) != len(data):
                raise _fail(where, f"a list of {len(args)}", data)
            pairs = enumerate(zip(args, data, strict=True))
            return tuple(decode(a, v, f"{where}[{i}]") for i, (a, v) in pairs)
        items = [decode(args[0], v, f"{where}[{i}]") for i, v in enumerate(data)]
        return items if origin is list else tuple(items)  # a Sequence as a tuple
    if origin is dict:
        if not isinstance(data, dict):
            raise _fail(where, "an object", data)
        return {str(k): decode(args[1], v, f"{where}.{k}") for k, v in data.items()}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(data)
        except ValueError:
            raise _fail(where, f"one of {', '.join(str(m.value) for m in tp)}", data) from None
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return decode_dataclass(tp, data, where)
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise _fail(where, "a number", data)
        return float(data)
    if tp in (int, str, bool):
        if not isinstance(data, tp) or (tp is int and isinstance(data, bool)):
            raise _fail(where, tp.__name__, data)
        return data
    if tp is type(None):
        if data is not None:
            raise _fail(where, "null", data)
        return None
    raise ControlProtocolError(f"cannot decode field {where} of type {tp!r}")


def _by_fit(options: tuple[Any, ...], data: Any) -> list[Any]:
    """A union's options to try, best first: for an object, the dataclasses
    whose fields name all its keys before those that would ignore some (so
    ``BlkRequest | NetRequest | RawRequest`` decodes as the one encoded,
    whatever the order); otherwise as written."""
    options = tuple(o for o in options if o is not type(None))
    if not isinstance(data, dict):
        return list(options)

    def unknown(option: Any) -> int:
        if isinstance(option, type) and dataclasses.is_dataclass(option):
            names = {f.name for f in dataclasses.fields(option)}
            return sum(k not in names for k in data)
        return len(data) + 1

    return sorted(options, key=unknown)


def decode_dataclass(
    cls: type[T], data: Any, where: str = "", given: dict[str, Any] | None = None
) -> T:
    """An instance of dataclass ``cls``; ``given`` supplies already-built fields."""
    if not isinstance(data, dict):
        raise _fail(where, "an object", data)
    hints = _hints(cls)
    kwargs: dict[str, Any] = dict(given or {})
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if not f.init or f.name in kwargs:
            continue
        path = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            kwargs[f.name] = decode(hints[f.name], data[f.name], path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ControlProtocolError(f"bad field {path}: missing")
    return cls(**kwargs)


def from_wire(cls: type[T], data: Any) -> T:
    """Typed entry point: ``data`` as an instance of dataclass ``cls``."""
    return decode_dataclass(cls, data)


# -- snapshots ---------------------------------------------------------------
#
# A snapshot holds each QueueView twice (in its device and in its row) and
# each DeviceView twice (in its VM and in ``devices``). On the wire each is
# sent once; decoding links them again, as the monitor built them.


def encode_snapshot(snap: Snapshot) -> dict[str, Any]:
    """Every field of a snapshot, each queue and device sent once."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(snap):
        if f.name == "devices":
            continue
        if f.name == "rows":
            out["rows"] = {
                key: {
                    g.name: encode(getattr(row, g.name))
                    for g in dataclasses.fields(row)
                    if g.name != "view"
                }
                for key, row in snap.rows.items()
            }
        else:
            out[f.name] = encode(getattr(snap, f.name))
    return out


def decode_snapshot(data: Any) -> Snapshot:
    """The snapshot ``encode_snapshot`` sent, with its shared objects relinked."""
    if not isinstance(data, dict):
        raise _fail("snapshot", "an object", data)
    vms: tuple[VMView, ...] = decode(tuple[VMView, ...], data.get("vms", []), "vms")
    devices = {d.key: d for vm in vms for d in vm.devices}
    views: dict[str, QueueView] = {
        f"{d.key}#{q.index}": q for d in devices.values() for q in d.queues
    }
    raw_rows = data.get("rows", {})
    if not isinstance(raw_rows, dict):
        raise _fail("rows", "an object", raw_rows)
    rows: dict[str, QueueRow] = {}
    for key, raw in raw_rows.items():
        view = views.get(key)
        if view is None:
            raise ControlProtocolError(f"bad field rows.{key}: no such queue in vms")
        rows[key] = decode_dataclass(QueueRow, raw, f"rows.{key}", {"view": view})
    return decode_dataclass(Snapshot, data, "", {"vms": vms, "rows": rows, "devices": devices})


def encode_event(event: LogEvent) -> dict[str, Any]:
    result: dict[str, Any] = encode(event)
    return result


def decode_event(data: Any) -> LogEvent:
    return decode_dataclass(LogEvent, data, "event")
