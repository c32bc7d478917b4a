"""What one interposed vhost-user device hands over in a takeover, as JSON
plus fd references (docs/design.md#takeover).

``capture_device`` runs in the old svqtui on its I/O loop while the device is
frozen (``DeviceInterposer.freeze``): nothing it reads changes meanwhile.
Every fd goes into the ``FdSink`` as the number the old process holds (the
transport sends duplicates; the old process keeps its own until it exits).
``parse_device`` runs in the new svqtui on the received document before
anything is used: it checks every field's type and records every fd
reference (``FdSource``), so a bad document is refused whole.

A device's document::

    {"name", "listen_path", "listen": fd, "shadow_wanted": bool,
     "connection": null | {
        "shadow", "features", "protocol_features", "offered_hidden",
        "backend_channel", "postcopy",
        "fe": CHANNEL, "be": CHANNEL,
        "memory": [{"guest_addr", "size", "user_addr", "mmap_offset",
                    "fd": fd | null, "problem"}],
        "vrings": [VRING]}}
    CHANNEL = {"sock": fd, "header": [request, flags, size] | null,
               "buf": hex, "fds": [fd], "out": [{"data": hex, "fds": [fd]}]}

A VRING carries every ``Vring`` field (svqtui.sources.vhost_user.shadow)
and its fds (``fe_kick``, ``fe_call``, ``eng_kick``, ``eng_call``); a ring
the old engine relays has ``"shadowed": true`` and ``"watch_kick"`` (the
engine reads the front-end's kick fd).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from svqtui.sources.vhost_user.channel import Channel
from svqtui.sources.vhost_user.codec import VringAddr
from svqtui.sources.vhost_user.fdident import eventfd_id, is_eventfd
from svqtui.sources.vhost_user.interposer import Connection
from svqtui.sources.vhost_user.shadow import Holder, Vring
from svqtui.takeover.errors import StateRefused, TakeoverBusy
from svqtui.takeover.state import FdSink, FdSource
from svqtui.virtio.guest_memory import Region, RegionTable, keep_region

_VRING_INTS = ("call_sets", "kick_base", "call_base")
_VRING_OPT_INTS = ("init_call_id", "num")
_VRING_BOOLS = ("ever_started", "started", "ring_active", "hold")


# -- capture (the old svqtui, on its I/O loop, frozen) -----------------------------


def _channel(ch: Channel, sink: FdSink, sock_fd: int) -> dict[str, Any]:
    header, buf, fds, out = ch.handover_state()
    return {
        "sock": sink.add(sock_fd),
        "header": list(header) if header is not None else None,
        "buf": buf.hex(),
        "fds": [sink.add(fd) for fd in fds],
        "out": [{"data": data.hex(), "fds": [sink.add(fd) for fd in fds]} for data, fds in out],
    }


def _vring(v: Vring, conn: Connection, sink: FdSink) -> dict[str, Any]:
    if v.tainted:
        raise TakeoverBusy(
            f"{conn.label}: an engine command on ring {v.index} timed out earlier; its fds "
            "are quarantined: restart svqtui instead of a takeover"
        )
    addr = v.addr
    return {
        "index": v.index,
        "fe_kick": sink.maybe(v.fe_kick),
        "fe_call": sink.maybe(v.fe_call),
        "eng_kick": sink.maybe(v.eng_kick),
        "eng_call": sink.maybe(v.eng_call),
        "shadowed": v.slot is not None,
        "watch_kick": v.watches_kick(conn.engine),
        "be_kick": v.be_kick.value,
        "be_call": v.be_call.value,
        "addr": None if addr is None else list(addr.pack()),
        "enabled": v.enabled,
        "error": v.error,
        **{name: getattr(v, name) for name in (*_VRING_INTS, *_VRING_OPT_INTS, *_VRING_BOOLS)},
    }


def capture_connection(conn: Connection, sink: FdSink) -> dict[str, Any]:
    """A frozen connection's state (its fds go into ``sink``)."""
    memory = []
    for r in conn.memory.regions:
        memory.append(
            {
                "guest_addr": r.guest_addr,
                "size": r.size,
                "user_addr": r.user_addr,
                "mmap_offset": r.mmap_offset,
                "fd": None if r.fd is None else sink.add(r.fd.fileno()),
                "problem": r.problem,
            }
        )
    return {
        "shadow": conn.shadow,
        "features": conn.features,
        "protocol_features": conn.protocol_features,
        "offered_hidden": conn.offered_hidden,
        "backend_channel": conn.backend_channel,
        "postcopy": conn.postcopy_listening,
        "fe": _channel(conn.fe, sink, conn.fe.fileno()),
        "be": _channel(conn.be, sink, conn.be.fileno()),
        "memory": memory,
        "vrings": [_vring(conn.vrings[i], conn, sink) for i in sorted(conn.vrings)],
    }


# -- parse (the new svqtui, before anything is used) ------------------------------


def _get(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = doc.get(key)
    ok = isinstance(value, kind) and not (isinstance(value, bool) and kind is int)
    if not ok:
        raise StateRefused(f"takeover refused: {what}.{key}: bad value {value!r:.60}")
    return value


def _opt(doc: dict[str, Any], key: str, kind: type, what: str) -> Any:
    return None if doc.get(key) is None else _get(doc, key, kind, what)


def _obj(value: object, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise StateRefused(f"takeover refused: {what}: not an object")
    return value


def _list(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise StateRefused(f"takeover refused: {what}: not a list")
    return value


def _hex(value: object, what: str) -> bytes:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value)
        except ValueError:
            pass
    raise StateRefused(f"takeover refused: {what}: not hex bytes")


@dataclass(slots=True)
class ChannelState:
    sock: int
    header: tuple[int, int, int] | None
    buf: bytes
    fds: list[int]
    out: list[tuple[bytes, list[int]]]


@dataclass(slots=True)
class RegionState:
    guest_addr: int
    size: int
    user_addr: int
    mmap_offset: int
    fd: int | None
    problem: str | None


@dataclass(slots=True)
class VringState:
    index: int
    fields: dict[str, Any]
    fds: dict[str, int | None]
    shadowed: bool
    watch_kick: bool
    be_kick: Holder
    be_call: Holder
    addr: VringAddr | None


@dataclass(slots=True)
class ConnectionState:
    shadow: bool
    features: int | None
    protocol_features: int | None
    offered_hidden: int
    backend_channel: bool
    postcopy: bool
    fe: ChannelState
    be: ChannelState
    memory: list[RegionState]
    vrings: list[VringState]


@dataclass(slots=True)
class DeviceState:
    name: str
    listen_path: str
    listen: int
    shadow_wanted: bool
    connection: ConnectionState | None
    bases: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def shadowed_rings(self) -> int:
        conn = self.connection
        return 0 if conn is None else sum(v.shadowed for v in conn.vrings)


def _parse_channel(doc: object, fds: FdSource, what: str) -> ChannelState:
    d = _obj(doc, what)
    header = d.get("header")
    parsed: tuple[int, int, int] | None = None
    if header is not None:
        h = _list(header, f"{what}.header")
        if len(h) != 3 or not all(isinstance(x, int) and not isinstance(x, bool) for x in h):
            raise StateRefused(f"takeover refused: {what}.header: bad value")
        parsed = (h[0], h[1], h[2])
    out = []
    for i, item in enumerate(_list(d.get("out"), f"{what}.out")):
        o = _obj(item, f"{what}.out[{i}]")
        out.append(
            (
                _hex(o.get("data"), f"{what}.out[{i}].data"),
                [fds.ref(f, f"{what}.out[{i}].fds") for f in _list(o.get("fds"), what)],
            )
        )
    return ChannelState(
        sock=fds.ref(d.get("sock"), f"{what}.sock"),
        header=parsed,
        buf=_hex(d.get("buf"), f"{what}.buf"),
        fds=[fds.ref(f, f"{what}.fds") for f in _list(d.get("fds"), f"{what}.fds")],
        out=out,
    )


def _parse_vring(doc: object, fds: FdSource, what: str) -> VringState:
    d = _obj(doc, what)
    index = _get(d, "index", int, what)
    if not 0 <= index <= 255:
        raise StateRefused(f"takeover refused: {what}.index {index} out of range")
    values: dict[str, Any] = {}
    for name in _VRING_INTS:
        values[name] = _get(d, name, int, what)
    for name in _VRING_OPT_INTS:
        values[name] = _opt(d, name, int, what)
    for name in _VRING_BOOLS:
        values[name] = _get(d, name, bool, what)
    values["enabled"] = _opt(d, "enabled", bool, what)
    values["error"] = _opt(d, "error", str, what)
    try:
        be_kick, be_call = Holder(d.get("be_kick")), Holder(d.get("be_call"))
    except ValueError:
        raise StateRefused(f"takeover refused: {what}: unknown fd holder") from None
    addr = None
    if d.get("addr") is not None:
        raw = bytes(_list(d.get("addr"), f"{what}.addr"))
        try:
            addr = VringAddr.unpack(raw)
        except Exception:
            raise StateRefused(f"takeover refused: {what}.addr: bad value") from None
    ring_fds = {k: fds.maybe(d.get(k), f"{what}.{k}") for k in _FD_NAMES}
    shadowed = _get(d, "shadowed", bool, what)
    if shadowed and (ring_fds["eng_kick"] is None or ring_fds["eng_call"] is None):
        raise StateRefused(f"takeover refused: {what}: relayed without the engine's eventfds")
    return VringState(
        index=index,
        fields=values,
        fds=ring_fds,
        shadowed=shadowed,
        watch_kick=_get(d, "watch_kick", bool, what),
        be_kick=be_kick,
        be_call=be_call,
        addr=addr,
    )


_FD_NAMES = ("fe_kick", "fe_call", "eng_kick", "eng_call")


def _parse_connection(doc: object, fds: FdSource, what: str) -> ConnectionState:
    d = _obj(doc, what)
    memory = []
    for i, item in enumerate(_list(d.get("memory"), f"{what}.memory")):
        r = _obj(item, f"{what}.memory[{i}]")
        w = f"{what}.memory[{i}]"
        memory.append(
            RegionState(
                guest_addr=_get(r, "guest_addr", int, w),
                size=_get(r, "size", int, w),
                user_addr=_get(r, "user_addr", int, w),
                mmap_offset=_get(r, "mmap_offset", int, w),
                fd=fds.maybe(r.get("fd"), f"{w}.fd"),
                problem=_opt(r, "problem", str, w),
            )
        )
    vrings = [
        _parse_vring(v, fds, f"{what}.vrings[{i}]")
        for i, v in enumerate(_list(d.get("vrings"), f"{what}.vrings"))
    ]
    if len({v.index for v in vrings}) != len(vrings):
        raise StateRefused(f"takeover refused: {what}: a ring index twice")
    return ConnectionState(
        shadow=_get(d, "shadow", bool, what),
        features=_opt(d, "features", int, what),
        protocol_features=_opt(d, "protocol_features", int, what),
        offered_hidden=_get(d, "offered_hidden", int, what),
        backend_channel=_get(d, "backend_channel", bool, what),
        postcopy=_get(d, "postcopy", bool, what),
        fe=_parse_channel(d.get("fe"), fds, f"{what}.fe"),
        be=_parse_channel(d.get("be"), fds, f"{what}.be"),
        memory=memory,
        vrings=vrings,
    )


def parse_device(doc: object, fds: FdSource, what: str) -> DeviceState:
    """One device's document, checked whole (StateRefused on anything odd)."""
    d = _obj(doc, what)
    conn = d.get("connection")
    return DeviceState(
        name=_get(d, "name", str, what),
        listen_path=_get(d, "listen_path", str, what),
        listen=fds.ref(d.get("listen"), f"{what}.listen"),
        shadow_wanted=_get(d, "shadow_wanted", bool, what),
        connection=None if conn is None else _parse_connection(conn, fds, f"{what}.connection"),
    )


def check_fds(state: DeviceState, fds: list[int]) -> None:
    """The received fds are what the document says: the engine's eventfds
    of a relayed ring are eventfds (the new engine will watch them)."""
    conn = state.connection
    if conn is None:
        return
    for v in conn.vrings:
        if not v.shadowed:
            continue
        for name in ("eng_kick", "eng_call"):
            ref = v.fds[name]
            if ref is None or not is_eventfd(fds[ref]):
                raise StateRefused(
                    f"takeover refused: {state.name} ring {v.index}: {name} is not an eventfd"
                )


# -- restore (the new svqtui, on its I/O loop, after "released") ----------------------


def restore_vring(v: VringState, fds: list[int]) -> Vring:
    """A Vring with the received fds (it owns them now); not in the engine yet."""
    ring = Vring(v.index)
    for name, value in v.fields.items():
        setattr(ring, name, value)
    ring.be_kick, ring.be_call = v.be_kick, v.be_call
    ring.addr = v.addr
    got = {name: (fds[ref] if ref is not None else None) for name, ref in v.fds.items()}
    ring.fe_kick, ring.fe_call = got["fe_kick"], got["fe_call"]
    ring.eng_kick, ring.eng_call = got["eng_kick"], got["eng_call"]
    if ring.fe_kick is not None:
        ring.fe_kick_id = eventfd_id(ring.fe_kick)
        ring.kick_ok = is_eventfd(ring.fe_kick)
    if ring.fe_call is not None:
        ring.fe_call_id = eventfd_id(ring.fe_call)
        ring.call_ok = is_eventfd(ring.fe_call)
    if ring.eng_kick is not None:
        ring.eng_kick_id = eventfd_id(ring.eng_kick)
    if ring.eng_call is not None:
        ring.eng_call_id = eventfd_id(ring.eng_call)
    return ring


def restore_regions(regions: list[RegionState], fds: list[int]) -> RegionTable:
    """The memory table (each region keeps its own dup; the received fd is closed)."""
    kept: list[Region] = []
    for r in regions:
        if r.fd is None:
            kept.append(Region(r.guest_addr, r.size, r.user_addr, r.mmap_offset, None, r.problem))
        else:
            kept.append(keep_region(r.guest_addr, r.size, r.user_addr, r.mmap_offset, fds[r.fd]))
            os.close(fds[r.fd])  # the region keeps its own duplicate
    return RegionTable(kept)


def restore_channel(ch: Channel, state: ChannelState, fds: list[int]) -> None:
    ch.adopt(
        state.header,
        state.buf,
        [fds[r] for r in state.fds],
        [(data, [fds[r] for r in refs]) for data, refs in state.out],
    )


def restore_connection(conn: Connection, state: ConnectionState, fds: list[int]) -> None:
    """Fill a new Connection (built on the received sockets) with ``state``."""
    conn.features = state.features
    conn.protocol_features = state.protocol_features
    conn.offered_hidden = state.offered_hidden
    conn.backend_channel = state.backend_channel
    conn.postcopy_listening = state.postcopy
    restore_channel(conn.fe, state.fe, fds)
    restore_channel(conn.be, state.be, fds)
    conn.memory.adopt(restore_regions(state.memory, fds))
    for v in state.vrings:
        conn.vrings[v.index] = restore_vring(v, fds)
