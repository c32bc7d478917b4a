"""Discovery: reading QEMU command lines, finding a real QEMU by pid, and the
QMP source's discovered rows (added, unreachable, turned disconnected, dropped).

Scans in source tests are limited to the test's own QEMUs: discovery connects
to every QMP socket it finds, and a QEMU monitor serves one client at a time,
so an unfiltered scan would take other tests' monitors.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from svqtui.eventlog import EventLog
from svqtui.sources import discovery
from svqtui.sources.discovery import DiscoveredVM, is_qemu_system, parse_cmdline, split_opts
from tests.support.qemu import QemuLab, QemuSpec, virtio_blk_net
from tests.support.qmp import WatchFn, connected_vm, log_lines, rows, vm
from tests.support.wait import wait_until

Q = "qemu-system-x86_64"


@pytest.mark.parametrize(
    ("argv", "name"),
    [
        ([Q, "-name", "plain"], "plain"),
        ([Q, "-name", "guest=vm1,debug-threads=on"], "vm1"),
        ([Q, "-name", "vm2,process=qemu-vm2"], "vm2"),
        ([Q, "--name", "dashes"], "dashes"),
        ([Q, "-m", "64"], None),
    ],
)
def test_vm_name_from_the_command_line(argv: list[str], name: str | None) -> None:
    """-name in its plain, guest= and --name forms."""
    assert parse_cmdline(argv).name == name


@pytest.mark.parametrize(
    ("args", "sockets"),
    [
        (["-qmp", "unix:/run/a.qmp,server=on,wait=off"], ("/run/a.qmp",)),
        (["-qmp", "unix:/run/b.qmp,server,nowait"], ("/run/b.qmp",)),
        (["-qmp-pretty", "unix:/run/c.qmp,server=on"], ("/run/c.qmp",)),
        (["--qmp", "unix:/run/d.qmp,server=on,wait=off"], ("/run/d.qmp",)),
        (["-qmp", "unix:/run/odd,,name.qmp,server=on"], ("/run/odd,name.qmp",)),
        (["-qmp", "unix:/run/client.qmp"], ()),  # QEMU connects out: nothing to connect to
        (["-qmp", "tcp:127.0.0.1:4444,server=on"], ()),
        (
            [
                "-chardev",
                "socket,id=mon0,path=/run/e.qmp,server=on,wait=off",
                "-mon",
                "chardev=mon0,mode=control,pretty=on",
            ],
            ("/run/e.qmp",),
        ),
        (
            ["-chardev", "socket,id=hmp,path=/run/hmp.sock,server=on", "-mon", "chardev=hmp"],
            (),  # a human monitor (readline mode), not QMP
        ),
        (
            [
                "-qmp",
                "unix:/run/1.qmp,server=on,wait=off",
                "-qmp",
                "unix:/run/2.qmp,server=on,wait=off",
            ],
            ("/run/1.qmp", "/run/2.qmp"),
        ),
    ],
)
def test_qmp_sockets_from_the_command_line(args: list[str], sockets: tuple[str, ...]) -> None:
    """QMP server sockets in every spelling; client, TCP and HMP monitors are not."""
    assert parse_cmdline([Q, *args]).qmp_sockets == sockets


def test_a_socket_named_for_svqtui_is_preferred() -> None:
    """With several QMP sockets, svqtui takes one named for it, else the first
    (QEMU serves one client per socket: the others stay free for other tools)."""
    assert discovery.preferred_qmp_socket(["/run/a.qmp", "/run/vm-svqtui.qmp"]) == (
        "/run/vm-svqtui.qmp"
    )
    assert discovery.preferred_qmp_socket(["/run/a.qmp", "/run/b.qmp"]) == "/run/a.qmp"
    assert discovery.preferred_qmp_socket([]) is None


def test_relative_paths_and_fd_monitors() -> None:
    """Relative socket paths resolve against QEMU's cwd; a monitor on an inherited
    fd (libvirt) is counted, having no path."""
    cmd = parse_cmdline(
        [
            Q,
            "-qmp",
            "unix:rel.qmp,server=on,wait=off",
            "-chardev",
            "socket,id=charmonitor,fd=27,server=on,wait=off",
            "-mon",
            "chardev=charmonitor,id=monitor,mode=control",
        ],
        cwd="/var/lib/vm",
    )
    assert cmd.qmp_sockets == ("/var/lib/vm/rel.qmp",)
    assert cmd.fd_monitors == 1


def test_vhost_user_netdev_chardevs() -> None:
    """vhost-user netdevs (key=value and JSON) map to their chardev's path."""
    cmd = parse_cmdline(
        [
            Q,
            "-chardev",
            "socket,id=c1,path=/run/vu1.sock",
            "-netdev",
            "vhost-user,id=n1,chardev=c1",
            "-chardev",
            "socket,id=c2,path=/run/vu2.sock",
            "-netdev",
            '{"type":"vhost-user","id":"n2","chardev":"c2"}',
            "-netdev",
            "user,id=n3",
        ]
    )
    assert cmd.netdev_chardevs == {"n1": "c1", "n2": "c2"}
    assert cmd.chardev_paths == {"c1": "/run/vu1.sock", "c2": "/run/vu2.sock"}


def test_option_splitting_and_binary_names() -> None:
    """ ",," is a literal comma; QEMU system emulators are recognised by name."""
    assert split_opts("a,,b,c") == ["a,b", "c"]
    assert is_qemu_system("/usr/bin/qemu-system-x86_64")
    assert is_qemu_system("qemu-system-aarch64")
    assert is_qemu_system("x", "/usr/libexec/qemu-kvm")
    assert not is_qemu_system("/usr/bin/qemu-img")
    assert not is_qemu_system("python3", "/usr/bin/python3.11")


def test_scan_finds_a_real_qemu_with_its_name_and_qmp_socket(lab: QemuLab) -> None:
    """A QEMU started by the test is found by pid, with its -name and the QMP
    socket of its -chardev/-mon monitor."""
    qmp = lab.path("mon.qmp")
    proc = lab.qemu(QemuSpec(qmp=qmp, name="found-me", qmp_style="mon"))
    found = {vm.pid: vm for vm in discovery.scan()}
    assert proc.pid in found, sorted(found)
    mine = found[proc.pid]
    assert mine.name == "found-me"
    assert mine.qmp_sockets == (str(qmp),)
    assert "qemu-system" in mine.exe


def _only(pids: Callable[[], set[int]]) -> Callable[[int | None], list[DiscoveredVM]]:
    def scan(exclude: int | None) -> list[DiscoveredVM]:
        return [vm for vm in discovery.scan(exclude) if vm.pid in pids()]

    return scan


def test_discovered_vms_are_watched_listed_and_dropped_when_gone(
    lab: QemuLab, qmp_watch: WatchFn, event_log: EventLog
) -> None:
    """Discovery adds a row for a QEMU with a QMP socket (connected, its devices,
    pid), one for a QEMU without any (disconnected, saying how to add one); when
    the first QEMU dies its row turns disconnected and is dropped later."""
    with_qmp = lab.qemu(
        QemuSpec(qmp=lab.path("d.qmp"), name="disco", devices=virtio_blk_net(), qmp_style="mon")
    )
    without = lab.qemu(QemuSpec(qmp=lab.path("none.qmp"), name="mute", qmp_style="none"))
    mine = {with_qmp.pid, without.pid}
    source = qmp_watch(scan=_only(lambda: mine), rediscover_s=0.3, drop_after_s=1.0)

    row = wait_until(
        lambda: connected_vm(source, "disco"),
        what="the discovered VM",
        describe=lambda: rows(source),
    )
    assert row.label == "discovered" and row.pid == with_qmp.pid
    assert {d.name for d in row.devices} == {"blk0", "net0"}
    mute = wait_until(
        lambda: vm(source, "mute"), what="the QEMU without QMP", describe=lambda: rows(source)
    )
    assert not mute.connected and mute.pid == without.pid
    assert mute.status.startswith("no QMP unix socket on its command line; add -qmp unix:")

    with_qmp.kill()

    def disconnected() -> bool:
        r = vm(source, "disco")
        return r is not None and not r.connected

    wait_until(
        disconnected, what="the dead QEMU's row to turn disconnected", describe=lambda: rows(source)
    )
    wait_until(
        lambda: vm(source, "disco") is None,
        what="the row to be dropped",
        describe=lambda: rows(source),
    )
    assert vm(source, "mute") is not None
    assert any("disco: QEMU process gone; row dropped" in line for line in log_lines(event_log))


def test_the_source_answers_after_the_first_scan_and_its_vms_first_connect(
    lab: QemuLab, qmp_watch: WatchFn
) -> None:
    """With discovery on, the source's status is not answered (--once waits)
    until the first scan has run and every VM it found has had its first
    connection attempt; then it is, with the VM connected."""
    qemu = lab.qemu(QemuSpec(qmp=lab.path("a.qmp"), name="answer", qmp_style="mon"))
    release = threading.Event()
    scan = _only(lambda: {qemu.pid})

    def held_scan(exclude_pid: int | None) -> list[DiscoveredVM]:
        release.wait(30)
        return scan(exclude_pid)

    source = qmp_watch(scan=held_scan, rediscover_s=0.3)
    time.sleep(0.5)
    assert not source.status().answered  # the first scan has not returned
    release.set()
    wait_until(lambda: source.status().answered, what="the source's first answer")
    row = vm(source, "answer")
    assert row is not None and row.connected, rows(source)
