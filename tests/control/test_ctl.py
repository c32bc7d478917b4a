"""`svqtui ctl` subprocesses against a real `python -m svqtui --headless` (the
demo source with a seed, the control socket in a temporary directory)."""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from svqtui.control.client import ctl_main
from tests.support.headless import HeadlessProcess, svqtui
from tests.support.wait import wait_until

NET = "web01/net0"


@pytest.fixture(scope="module")
def headless(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HeadlessProcess]:
    proc = HeadlessProcess(tmp_path_factory.mktemp("ctl"))
    with proc:
        yield proc


def ctl(headless: HeadlessProcess, *args: str) -> tuple[int, str, str]:
    result = svqtui("ctl", "-c", str(headless.config), *args, home=headless.directory)
    return result.returncode, result.stdout, result.stderr


def ok(headless: HeadlessProcess, *args: str) -> str:
    code, out, err = ctl(headless, *args)
    assert code == 0, err
    return out


def one_line_error(headless: HeadlessProcess, code: int, *args: str) -> str:
    """Run ctl expecting exit ``code`` and exactly one stderr line; return it."""
    got, out, err = ctl(headless, *args)
    assert got == code, (out, err)
    assert "Traceback" not in err and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def status(headless: HeadlessProcess) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ok(headless, "status", "--json"))
    return result


def device(doc: dict[str, Any], vm: str, name: str) -> dict[str, Any]:
    for v in doc["vms"]:
        for d in v["devices"]:
            if (v["name"], d["name"]) == (vm, name):
                return dict(d)
    raise KeyError(f"{vm}/{name}")


def test_status_json_has_vms_devices_queues(headless: HeadlessProcess) -> None:
    """`status --json` is the --once --json shape: VMs -> devices -> queues with
    kick/call counters, mask and shadow state; the demo's counters move."""
    doc = status(headless)
    assert [vm["name"] for vm in doc["vms"]] == ["web01", "db01"]
    queues = device(doc, "web01", "net0")["queues"]
    assert len(queues) == 8
    for q in queues:
        assert {"index", "kicks", "calls", "mask", "shadow", "kicks_per_s"} <= set(q)
        assert q["shadow"] is True and q["mask"] in ("UNMASKED", "MASKED", "PENDING")
    assert doc["engine"]["alive"] is True
    wait_until(
        lambda: sum(q["kicks"] for q in device(status(headless), "web01", "net0")["queues"]) > 0,
        what="the demo's kicks to be counted",
    )


def test_status_prints_the_once_table(headless: HeadlessProcess) -> None:
    """`status` without --json prints the table of `svqtui --once`: same header,
    same rows (VM, device, queue), same summary line."""
    table = ok(headless, "status").splitlines()
    result = svqtui("-c", str(headless.config), "--once", home=headless.directory)
    assert result.returncode == 0, result.stderr
    once = result.stdout.splitlines()
    assert table[0] == once[0]
    assert [r.split()[:3] for r in table[1:-1]] == [r.split()[:3] for r in once[1:-1]]
    assert len(table) == 12 and table[-1].startswith("engine alive")


def test_mask_and_unmask_show_in_status(headless: HeadlessProcess) -> None:
    """`mask` holds a queue's calls (status: hold, and MASKED/PENDING);
    `unmask` releases the hold, and the queue turns UNMASKED once the demo's
    guest does not mask it itself (it masks queues now and then, for a few
    ticks: the test waits that out rather than assuming it never happens)."""
    assert "mask net0 queue 5" in ok(headless, "mask", NET, "5")
    held = device(status(headless), "web01", "net0")["queues"][5]
    assert held["hold"] is True and held["mask"] in ("MASKED", "PENDING")
    ok(headless, "unmask", NET, "5")
    assert device(status(headless), "web01", "net0")["queues"][5]["hold"] is False
    wait_until(
        lambda: device(status(headless), "web01", "net0")["queues"][5]["mask"] == "UNMASKED",
        timeout=10.0,
        what="queue 5 unmasked",
    )


def test_kick_and_call_are_injected(headless: HeadlessProcess) -> None:
    """`kick` and `call` inject one notification each: the injected counters of
    that queue (in `ctl snapshot`, every field) go up by one."""

    def injected() -> tuple[int, int]:
        snap = json.loads(ok(headless, "snapshot"))
        q = device(snap, "db01", "blk0")["queues"][0]
        return q["injected_kicks"], q["injected_calls"]

    kicks, calls = injected()
    ok(headless, "kick", "db01/blk0", "0")
    ok(headless, "call", "db01/blk0", "0")
    assert injected() == (kicks + 1, calls + 1)


def test_shadow_off_and_on_show_in_status(headless: HeadlessProcess) -> None:
    """`shadow DEVICE off` gives the device its own fds (status: shadow false, and
    masking is refused as unsupported); `shadow DEVICE on` routes it again."""
    ok(headless, "shadow", "blk0", "off")
    try:
        blk = device(status(headless), "db01", "blk0")
        assert blk["shadow"] is False and not any(q["shadow"] for q in blk["queues"])
        line = one_line_error(headless, 1, "mask", "blk0", "0")
        assert "shadow mode is off" in line
    finally:
        ok(headless, "shadow", "blk0", "on")
    assert device(status(headless), "db01", "blk0")["shadow"] is True


def test_reset_zeroes_counters(headless: HeadlessProcess) -> None:
    """`reset DEVICE` zeroes that device's counters and leaves the others; `reset`
    zeroes all. (Counts are read in process right after each reset: the demo
    keeps counting, so "zeroed" means far below what had accumulated.)"""

    def kicks(vm: str, name: str) -> int:
        with headless.client() as c:
            return sum(q["kicks"] for q in device(c.status(), vm, name)["queues"])

    wait_until(lambda: kicks("web01", "net0") > 400, what="net0 counters to grow")
    before_net, before_blk = kicks("web01", "net0"), kicks("db01", "blk0")
    ok(headless, "reset", NET)
    assert kicks("web01", "net0") < before_net / 2
    assert kicks("db01", "blk0") >= before_blk  # another device is left alone
    wait_until(lambda: kicks("db01", "blk0") > 200, what="blk0 counters to grow")
    before_blk = kicks("db01", "blk0")
    ok(headless, "reset")
    assert kicks("db01", "blk0") < before_blk / 2


def test_errors_are_one_line_and_exit_1(headless: HeadlessProcess) -> None:
    """An unknown device or a queue out of range: exit 1, one line saying what."""
    assert "no device 'nope'" in one_line_error(headless, 1, "kick", "nope", "0")
    line = one_line_error(headless, 1, "mask", NET, "99")
    assert "net0" in line and "has queues 0-7, not 99" in line


def test_usage_and_config_errors_exit_2(headless: HeadlessProcess, tmp_path: Path) -> None:
    """A missing argument, a bad value or an unreadable config: exit 2."""
    assert ctl(headless, "mask", NET)[0] == 2
    assert ctl(headless, "mask", NET, "-1")[0] == 2
    assert ctl(headless, "shadow", NET, "maybe")[0] == 2
    assert ctl(headless, "frobnicate")[0] == 2
    result = svqtui("ctl", "-c", str(tmp_path / "none.yaml"), "status", home=tmp_path)
    assert result.returncode == 2 and "no such file" in result.stderr


def test_help_explains_with_examples(
    headless: HeadlessProcess, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ctl --help` and each subcommand's --help say what it does, with examples
    (the subcommands are checked in process, through ctl_main)."""
    out = ok(headless, "--help")
    for word in (
        "status",
        "shadow",
        "mask",
        "unmask",
        "kick",
        "call",
        "reset",
        "reload",
        "examples:",
    ):
        assert word in out
    for sub in (
        "status",
        "snapshot",
        "shadow",
        "mask",
        "unmask",
        "kick",
        "call",
        "reset",
        "reload",
    ):
        assert ctl_main([sub, "--help"]) == 0
        text = capsys.readouterr().out
        assert "examples:" in text and f"svqtui ctl {sub}" in text


def test_reload_says_what_changed(headless: HeadlessProcess) -> None:
    """`ctl reload`: an unchanged file is "nothing changed"; a new refresh is
    listed as applied and shows in the next status; --json is the report."""
    good = headless.config.read_text()
    try:
        out = ok(headless, "reload")
        assert out.startswith("svqtui: reloaded ") and out.strip().endswith("nothing changed")
        headless.config.write_text(good.replace("refresh: 0.2", "refresh: 0.3"))
        out = ok(headless, "reload")
        assert "  applied: refresh 0.2 s -> 0.3 s" in out.splitlines()
        assert json.loads(ok(headless, "status", "--json"))["interval_s"] == 0.3
        headless.config.write_text(good)
        report = json.loads(ok(headless, "reload", "--json"))
        assert report["changes"] == ["refresh 0.3 s -> 0.2 s"] and report["restart"] == []
    finally:
        headless.config.write_text(good)
        ok(headless, "reload")


def test_missing_socket_is_one_clear_line(tmp_path: Path) -> None:
    """ctl against a socket that does not exist: exit 1, one line naming the
    socket and what to do."""
    path = tmp_path / "absent.sock"
    result = svqtui("ctl", "--socket", str(path), "status", home=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"svqtui: cannot reach the control socket {path}: no such file "
        "(is `svqtui --headless` running? start it, or pass -c with the config it uses)"
    )


def test_stale_socket_is_one_clear_line(tmp_path: Path) -> None:
    """ctl against a socket file nobody listens on: exit 1, one line."""
    path = tmp_path / "stale.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.bind(str(path))
    result = svqtui("ctl", "--socket", str(path), "status", home=tmp_path)
    assert result.returncode == 1 and "nothing is listening" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_socket_is_private(headless: HeadlessProcess) -> None:
    """The control socket is mode 0600 in a directory svqtui created 0700."""
    st = os.lstat(headless.socket_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    parent = os.stat(os.path.dirname(headless.socket_path))
    assert stat.S_IMODE(parent.st_mode) == 0o700


def test_second_headless_refuses(headless: HeadlessProcess) -> None:
    """A second `svqtui --headless` on the same socket exits 1 with one line
    naming the running one, and the first keeps serving."""
    result = svqtui("-c", str(headless.config), "--headless", home=headless.directory)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"another svqtui (pid {headless.proc.pid if headless.proc else 0})" in lines[0]
    assert headless.socket_path in lines[0]
    assert status(headless)["engine"]["alive"] is True


def test_events_and_stderr_log(headless: HeadlessProcess) -> None:
    """Actions appear in `ctl events` and, one line each, on the headless stderr."""
    ok(headless, "kick", NET, "6")
    assert "control: kick net0 queue 6" in ok(headless, "events")
    lines = [json.loads(line) for line in ok(headless, "events", "--json").splitlines()]
    assert any(e["text"] == "control: kick net0 queue 6" for e in lines)
    wait_until(lambda: "control: kick net0 queue 6" in headless.stderr, what="the stderr log line")
    assert "headless: serving " + headless.socket_path in headless.stderr
