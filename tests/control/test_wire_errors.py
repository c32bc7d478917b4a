"""The wire registry of error classes: stable names, lossless round trips over
the control protocol, and a decoder that never fails on names it does not know."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

import svqtui
from svqtui.control.protocol import WIRE_ERROR_MODULES, Response
from svqtui.errors import (
    WIRE_ERRORS,
    ConfigError,
    SvqtuiError,
    WireNameTaken,
    from_wire,
    wire_error,
    wire_lineage,
)
from svqtui.sources.errors import UnknownDevice
from svqtui.sources.qmp.errors import QMPCommandFailed

#: The wire names in use. A name here is part of the protocol: it may be
#: added to, never renamed or removed (older consoles look these up).
PINNED_NAMES = frozenset(
    {
        "SvqtuiError",
        "ConfigError",
        "EngineError",
        "SourceError",
        "ProtocolError",
        "ActionError",
        "ControlError",
        "ControlBusy",
        "ControlIdleTimeout",
        "IOLoopError",
        "LabError",
        "EngineStartError",
        "EngineNotRunning",
        "EngineTimeout",
        "EngineFull",
        "UnknownQueue",
        "BadFd",
        "FdInUse",
        "DeviceLimitExceeded",
        "ActionUnsupported",
        "UnknownDevice",
        "QueueOutOfRange",
        "QMPError",
        "QMPUnreachable",
        "QMPConnectionLost",
        "QMPProtocolViolation",
        "QMPCommandFailed",
        "VMDisconnected",
        "VhostUserError",
        "MessageTooLarge",
        "TooManyFds",
        "BadHeader",
        "TruncatedMessage",
        "BadPayload",
        "BackendUnavailable",
        "BadFault",
        "ListenError",
        "ShadowSwitchError",
        "NotConnected",
        "ControlProtocolError",
        "ControlUnreachable",
        "ControlSocketInUse",
        "AttachTargetInvalid",
        "SshTransportLost",
        "IOLoopTimeout",
        "IOLoopReentry",
        "IOLoopStopped",
        "GuestImageError",
        "LabToolMissing",
        "LabProcessError",
        "GuestTimeout",
        "GuestIOError",
        "LabBusy",
        "MigrationFailed",
        "RecorderOff",
        "RecorderBusy",
        "RecordingWriteFailed",
        "ReplayReadOnly",
        "TakeoverError",
        "TakeoverStateRefused",
        "TakeoverRunning",
        "TakeoverBusy",
    }
)

#: Error classes that never cross the control socket (a reply would carry
#: their nearest registered base): the lab check script's own failure.
LOCAL_ONLY = frozenset(  # raised and reported in the same process, never sent
    {
        "svqtui.lab.check.CheckFailed",
        "svqtui.batch.MonitorStalled",
        "svqtui.outputs.base.UnknownOutput",
        "svqtui.outputs.prometheus.MetricsListenError",
        "svqtui.unix_socket.SocketPathTooLong",
        "svqtui.web.WebUnavailable",
        # guest memory reads fail into a ring view's one line, never a reply
        "svqtui.virtio.guest_memory.GuestMemoryError",
        "svqtui.virtio.guest_memory.MemoryReleased",
        "svqtui.virtio.guest_memory.ReadTooLarge",
        "svqtui.virtio.guest_memory.UnmappedAddress",
        "svqtui.virtio.guest_memory.RegionUnreadable",
        "svqtui.virtio.guest_memory.RegionTruncated",
        "svqtui.control.sd_notify.NotifySocketError",
        "svqtui.takeover.errors.TransportError",
        "svqtui.takeover.errors.TakeoverAborted",
        # the libvirt source turns its errors into status lines and device text
        "svqtui.sources.libvirt.errors.LibvirtSourceError",
        "svqtui.sources.libvirt.errors.LibvirtUnavailable",
        "svqtui.sources.libvirt.errors.DomainXMLError",
        "svqtui.sources.libvirt.errors.MonitorCommandFailed",
        "svqtui.control.errors.UnsafeRuntimePath",
        "svqtui.control.errors.UntrustedServer",
        "svqtui.recording.errors.RecordingError",
        "svqtui.recording.errors.RecordingDamaged",
        "svqtui.recording.batch.BadTime",
    }
)

REGISTERED = sorted(WIRE_ERRORS.items())
messages = st.text(min_size=1, max_size=200)


def _all_svqtui_error_classes() -> set[type[SvqtuiError]]:
    """Every SvqtuiError subclass defined in the svqtui package (all imported)."""
    for info in pkgutil.walk_packages(svqtui.__path__, "svqtui."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)
    found: set[type[SvqtuiError]] = set()
    todo: list[type[SvqtuiError]] = [SvqtuiError]
    while todo:
        cls = todo.pop()
        if cls.__module__.startswith("svqtui.") and cls not in found:
            found.add(cls)
            todo.extend(cls.__subclasses__())
    return found


def _roundtrip(err: SvqtuiError) -> SvqtuiError:
    line = Response.for_error(9, err).encode()
    reply = Response.from_wire(json.loads(line))
    with pytest.raises(SvqtuiError) as raised:
        reply.unwrap()
    return raised.value


def test_the_pinned_wire_names_are_all_registered() -> None:
    """No wire name in use was renamed or dropped (importing only the control
    protocol registers them all)."""
    code = (
        "import svqtui.control.protocol, svqtui.errors as e; print(' '.join(sorted(e.WIRE_ERRORS)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    assert set(out.split()) >= PINNED_NAMES


def test_every_svqtui_error_class_is_registered_by_a_wire_module() -> None:
    """Each error class in the package has its own wire name, in a pinned set,
    and its module is one the control protocol imports (so a client can
    decode it without having imported that layer)."""
    wire_modules = {m.__name__ for m in WIRE_ERROR_MODULES}
    for cls in _all_svqtui_error_classes():
        if f"{cls.__module__}.{cls.__qualname__}" in LOCAL_ONLY:
            continue
        assert "wire_name" in vars(cls), f"{cls.__qualname__} has no @wire_error"
        assert WIRE_ERRORS[cls.wire_name] is cls
        assert cls.wire_name in PINNED_NAMES, f"pin the new wire name {cls.wire_name!r}"
        assert cls.__module__ in wire_modules, f"{cls.__module__} is not in WIRE_ERROR_MODULES"


@pytest.mark.parametrize(("name", "cls"), REGISTERED, ids=[n for n, _ in REGISTERED])
@given(message=messages)
def test_every_registered_class_round_trips(
    name: str, cls: type[SvqtuiError], message: str
) -> None:
    """Any registered error, with any message, is raised on the client as the
    same class with the same text."""
    back = _roundtrip(cls.from_wire(message))
    assert type(back) is cls and str(back) == message


def test_errors_with_structured_constructors_keep_their_text() -> None:
    """ConfigError and QMPCommandFailed, built with their own arguments, come
    back as their class with their one-line text."""
    for err in (
        ConfigError("/etc/svqtui.yaml", 4, "qmp.sockets", "must be a list"),
        QMPCommandFailed("x-svq", "GenericError", "no such device"),
    ):
        back = _roundtrip(err)
        assert type(back) is type(err) and str(back) == str(err)


@given(
    unknown=st.text(min_size=1, max_size=40).filter(lambda n: n not in WIRE_ERRORS),
    base=st.sampled_from([n for n, _ in REGISTERED]),
    message=messages,
)
def test_an_unknown_name_decodes_to_its_nearest_known_base(
    unknown: str, base: str, message: str
) -> None:
    """A name this side does not know (a newer peer's class) decodes to the
    first known name of its lineage, with its message intact; with no known
    name at all, to SvqtuiError. Decoding never raises."""
    err = from_wire(unknown, message, [unknown + "Base", base, "SvqtuiError"])
    assert type(err) is WIRE_ERRORS[base] and str(err) == message
    bare = from_wire(unknown, message, [unknown + "Base"])
    assert type(bare) is SvqtuiError and str(bare) == message


def test_an_unregistered_subclass_travels_as_its_nearest_registered_class() -> None:
    """A subclass without a wire name of its own is sent under its nearest
    registered base, with that base's lineage."""

    class LocalOnly(UnknownDevice):
        pass

    assert wire_lineage(LocalOnly) == ["UnknownDevice", "ActionError", "SvqtuiError"]
    back = _roundtrip(LocalOnly("no such thing"))
    assert type(back) is UnknownDevice and str(back) == "no such thing"


def test_the_lineage_a_server_sends_lets_an_older_client_fall_back() -> None:
    """The reply carries the wire names of the class's bases, nearest first."""
    line = Response.for_error(1, QMPCommandFailed("q", "GenericError", "d")).encode()
    error = json.loads(line)["error"]
    assert error["type"] == "QMPCommandFailed"
    assert error["lineage"] == ["QMPError", "SourceError", "SvqtuiError"]


def test_a_wire_name_cannot_be_claimed_twice() -> None:
    """Registering a second class under a name in use fails at import time."""
    with pytest.raises(WireNameTaken, match="UnknownDevice"):

        @wire_error("UnknownDevice")
        class Impostor(SvqtuiError):
            pass

    assert WIRE_ERRORS["UnknownDevice"] is UnknownDevice
    assert inspect.isclass(WIRE_ERRORS["SvqtuiError"])
