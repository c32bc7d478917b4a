"""Unix socket servers that play a broken peer or a scripted QEMU, for the QMP tests.

Used only for what a real QEMU here cannot do: send garbage, hang up in the
middle of a command, stay silent, be an older QEMU without the x-query-virtio
commands, or offer the RFC's x-vhost-enable-shadow-vq (never merged upstream).
Each connection is served by a thread; ``close()`` shuts everything down.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

Reply = Any | Callable[[Mapping[str, Any]], Any]

BASE_COMMANDS = ("qmp_capabilities", "query-commands", "query-status", "query-migrate")


class FakeQMP:
    """A QMP-ish server on ``path``.

    ``mode``: "garbage" (greets with non-JSON), "silent" (never greets),
    "close-mid-command" (greets, negotiates, hangs up on the first command),
    "garbage-reply" (greets, negotiates, answers the first command with garbage),
    "qemu" (answers ``replies``; query-commands lists ``commands``).

    Hostile extras, for what no real QEMU sends: ``raw_replies`` maps a
    command to the exact bytes sent as its reply line (e.g. JSON nested
    20,000 deep); ``flood`` is a list of events sent over and over, as fast
    as the socket takes them (or in bursts ``flood_pause_s`` apart), from the
    first command on, until ``flood_stop`` is set (``events_sent`` counts them).
    """

    def __init__(
        self,
        path: Path,
        mode: str = "qemu",
        *,
        version: tuple[int, int, int] = (6, 2, 0),
        commands: tuple[str, ...] = BASE_COMMANDS,
        replies: Mapping[str, Reply] | None = None,
        raw_replies: Mapping[str, bytes] | None = None,
        flood: list[dict[str, Any]] | None = None,
        flood_pause_s: float = 0.0,
    ) -> None:
        self.flood_pause_s = flood_pause_s
        self.raw_replies = dict(raw_replies or {})
        self.flood = flood
        self._flood_events = list(flood or [])
        self.flood_stop = threading.Event()
        self.events_sent = 0
        self.path = path
        self.mode = mode
        self.version = version
        self.commands = commands
        self.replies: dict[str, Reply] = {
            "query-status": {"status": "running", "running": True, "singlestep": False},
            "query-migrate": {},
            **(replies or {}),
        }
        self.received: list[dict[str, Any]] = []
        self.connections = 0
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(8)
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with self._lock:
                if self._closed:
                    conn.close()
                    return
                self._conns.append(conn)
                self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket, obj: object) -> None:
        with self._send_lock:  # the flood thread writes the same socket
            conn.sendall(json.dumps(obj).encode() + b"\n")

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._converse(conn)
        except (OSError, ValueError):
            pass  # the client went away, or sent what this fake cannot parse
        finally:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _converse(self, conn: socket.socket) -> None:
        if self.mode == "silent":
            conn.recv(1)  # until the client gives up
            return
        if self.mode == "garbage":
            conn.sendall(b"SSH-2.0-OpenSSH_9.2 this is not QMP\r\n")
            conn.recv(1)
            return
        major, minor, micro = self.version
        version = {"qemu": {"major": major, "minor": minor, "micro": micro}, "package": "fake"}
        self._send(conn, {"QMP": {"version": version, "capabilities": []}})
        for msg in self._messages(conn):
            self.received.append(msg)
            if msg.get("execute") != "qmp_capabilities":
                if self.mode == "close-mid-command":
                    return
                if self.mode == "garbage-reply":
                    conn.sendall(b"<html>502 Bad Gateway</html>\n")
                    conn.recv(1)
                    return
            cmd = msg.get("execute")
            if isinstance(cmd, str) and cmd in self.raw_replies:
                with self._send_lock:
                    conn.sendall(self.raw_replies[cmd])
                continue
            self._send(conn, self._reply(msg))
            if self.flood and cmd != "qmp_capabilities":
                threading.Thread(target=self._flood, args=(conn,), daemon=True).start()
                self.flood = None  # one flood per server

    def _flood(self, conn: socket.socket) -> None:
        events = [json.dumps(e).encode() + b"\n" for e in self._flood_events]
        burst = b"".join(events * 64)
        try:
            while not self.flood_stop.is_set() and not self._closed:
                with self._send_lock:
                    conn.sendall(burst)
                self.events_sent += 64 * len(events)
                if self.flood_pause_s:
                    self.flood_stop.wait(self.flood_pause_s)
        except OSError:
            return

    @staticmethod
    def _messages(conn: socket.socket) -> Iterator[dict[str, Any]]:
        """JSON objects as they arrive (QMP clients need not end them with a newline)."""
        decoder = json.JSONDecoder()
        buf = ""
        while True:
            data = conn.recv(65536)
            if not data:
                return
            buf += data.decode()
            while buf.strip():
                try:
                    msg, end = decoder.raw_decode(buf.lstrip())
                except ValueError:
                    break  # incomplete: wait for more
                buf = buf.lstrip()[end:]
                yield msg

    def _reply(self, msg: dict[str, Any]) -> dict[str, Any]:
        cmd = msg.get("execute")
        reply: dict[str, Any] = {"id": msg["id"]} if "id" in msg else {}
        if cmd == "qmp_capabilities":
            reply["return"] = {}
        elif cmd == "query-commands":
            reply["return"] = [{"name": c} for c in self.commands]
        elif cmd in self.replies and cmd in self.commands:
            value = self.replies[cmd]
            reply["return"] = value(msg.get("arguments", {})) if callable(value) else value
        else:
            reply["error"] = {
                "class": "CommandNotFound",
                "desc": f"The command {cmd} has not been found",
            }
        return reply

    def commands_received(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.received if m.get("execute") == name]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._conns)
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        self._thread.join(5)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
