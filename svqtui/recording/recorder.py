"""The flight recorder: an output that keeps the last minutes of snapshots
and log lines, and writes them to a file when something happens
(docs/design.md#data-flow).

It subscribes to the monitor (it never refreshes it). The monitor's callback
only hands the snapshot over (a bounded queue: when the recorder is behind,
the snapshot is dropped and counted). The recorder's own thread encodes it
(svqtui.recording.format: a key frame or a delta, with the log events since the
last one), keeps the rolling window (``record.window``) as encoded records, and
watches for incidents: a queue going stuck, a migration starting or failing.
An incident, ``svqtui ctl record dump`` and ``--record PATH`` hand bytes to a
writer thread (another bounded queue), which alone touches the disk: a full
filesystem or a dying disk is one log line, never a stall of the monitor.
"""

from __future__ import annotations

import collections
import concurrent.futures
import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import svqtui
from svqtui.eventlog import EventLog
from svqtui.model import Snapshot
from svqtui.recording import files
from svqtui.recording.errors import RecorderBusy, RecordingWriteFailed
from svqtui.recording.format import Encoded, FrameEncoder, file_header
from svqtui.recording.settings import RecordSettings
from svqtui.thread_priority import lower_thread_priority

INBOX = 8  # snapshots waiting to be encoded
OUTBOX = 64  # writes waiting for the disk
INCIDENT_AFTER_S = 10.0  # an incident file also holds this much after the incident
INCIDENT_GAP_S = 30.0  # at most one incident file per cause in this long
DUMP_TIMEOUT_S = 10.0
RECOVERED_AFTER = 20  # writes in a row that must succeed before a failure counts as over
STOP_TIMEOUT_S = 10.0
MIGRATING = frozenset(
    {"setup", "active", "pre-switchover", "device", "postcopy-active", "wait-unplug"}
)
ENDED = frozenset({"completed", "failed"})


@dataclass(frozen=True, slots=True)
class Incident:
    cause: str  # "stuck", "migration-start", "migration-failed", "request", ...
    what: str  # one line: which queue, which VM
    at: float  # snapshot time that triggered it
    due: float  # snapshot time at which to write it


@dataclass
class _Dump:
    path: Path | None  # None: an incident file in the recording directory
    cause: str
    what: str
    done: concurrent.futures.Future[str] | None = None


@dataclass
class _Write:
    """A whole file to write atomically (a dump)."""

    path: Path
    chunks: list[bytes]
    cause: str
    done: concurrent.futures.Future[str] | None


@dataclass
class _Append:
    """One encoded frame for the continuous recording."""

    frame: Encoded
    header: bytes


def _size_text(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.0f} kB"


class Recorder:
    """The flight recorder of one svqtui process (start/attach/stop)."""

    def __init__(
        self,
        settings: RecordSettings,
        log: EventLog,
        *,
        continuous: str | None = None,
        host: str | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.settings = settings
        self.log = log
        self.host = host or socket.gethostname()
        self.continuous = Path(continuous) if continuous else None
        self.meta = dict(meta or {})
        self.dropped = 0  # snapshots the recorder was too far behind to take
        self.write_dropped = 0  # writes the disk was too far behind to take
        self.write_failures = 0
        self.written: list[Path] = []  # incident and dump files, in order
        self.frames = 0
        self.encode_s = 0.0  # CPU seconds spent encoding (figures)
        self._inbox: queue.Queue[Snapshot | _Dump | None] = queue.Queue(INBOX)
        self._outbox: queue.Queue[_Write | _Append | None] = queue.Queue(OUTBOX)
        self._encoder = FrameEncoder()
        self._groups: collections.deque[list[Encoded]] = collections.deque()
        self._event_seq = 0
        self._stuck: set[str] = set()
        self._migration: dict[str, str] = {}
        self._pending: list[Incident] = []
        self._last_incident: dict[str, float] = {}
        self._need_key = threading.Event()
        self._cont = (
            files.ContinuousFile(self.continuous, settings.rotate_bytes, settings.rotate_s)
            if self.continuous
            else None
        )
        self._cont_broken = False
        self._failing = False
        self._ok_writes = 0
        self._dropping = False
        self._write_dropping = False
        self._unsubscribe: Callable[[], None] | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            return
        for name, target in (("encode", self._encode_loop), ("write", self._write_loop)):
            thread = threading.Thread(target=target, name=f"svqtui-record-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def attach(self, monitor: Any) -> None:
        """Subscribe to ``monitor``'s snapshots (a Monitor or anything with subscribe)."""
        if self.settings.enabled:
            self.log.info(
                f"recording: keeping the last {self.settings.window_s:g}s; incident files go "
                f"to {self.directory}"
            )
        if self.continuous is not None:
            self.log.info(f"recording: every snapshot to {self.continuous}")
        self._event_seq = 0  # the first frame carries the log so far (sources starting...)
        self._unsubscribe = monitor.subscribe(self.offer)
        self.start()

    def stop(self) -> None:
        """Unsubscribe, write pending incidents, close the continuous file."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if not self._threads:
            return
        self._put(self._inbox, None, STOP_TIMEOUT_S)
        encoder, writer = self._threads
        encoder.join(STOP_TIMEOUT_S)
        self._put(self._outbox, None, STOP_TIMEOUT_S)
        writer.join(STOP_TIMEOUT_S)
        self._threads = []

    @staticmethod
    def _put(q: queue.Queue[Any], item: Any, timeout: float) -> None:
        with contextlib.suppress(queue.Full):
            q.put(item, timeout=timeout)

    @property
    def directory(self) -> Path:
        return Path(self.settings.directory)

    # -- the monitor's side: never blocks ------------------------------------------

    def offer(self, snap: Snapshot) -> None:
        """Called on the monitor's thread: hand ``snap`` over, or drop it."""
        try:
            self._inbox.put_nowait(snap)
        except queue.Full:
            self.dropped += 1
            if not self._dropping:
                self._dropping = True
                self.log.warning("recording: behind the monitor, dropping snapshots")
        else:
            self._dropping = False

    def dump(
        self, path: str | None = None, cause: str = "request", timeout: float = DUMP_TIMEOUT_S
    ) -> str:
        """Write the window now (to ``path``: a file or a directory; default the
        recording directory) and return the file written. ``RecorderBusy`` if
        that takes longer than ``timeout``; an OSError if the write failed."""
        done: concurrent.futures.Future[str] = concurrent.futures.Future()
        target = Path(path).expanduser() if path else None
        try:
            self._inbox.put(_Dump(target, cause, "on request", done), timeout=timeout)
            return done.result(timeout)
        except OSError as err:
            raise RecordingWriteFailed(
                f"recording: cannot write the dump: {err.strerror or err}"
            ) from None
        except (queue.Full, concurrent.futures.TimeoutError):
            raise RecorderBusy(
                f"recording: no dump within {timeout:g}s (the recorder or its disk is behind)"
            ) from None

    # -- the encoder thread -------------------------------------------------------------

    def _encode_loop(self) -> None:
        lower_thread_priority()
        while True:
            item = self._inbox.get()
            if item is None:
                break
            try:
                if isinstance(item, _Dump):
                    self._dump(item)
                else:
                    self._take(item)
            except Exception as err:  # the recorder must outlive its own bug
                self.log.error(f"recording: {type(err).__name__}: {err}")
                if isinstance(item, _Dump) and item.done is not None:
                    item.done.set_exception(err)
        for incident in self._pending:  # stopping: write what is due later now
            self._dump(_Dump(None, incident.cause, incident.what))
        self._pending = []

    def _take(self, snap: Snapshot) -> None:
        self._event_seq, events = self.log.since(self._event_seq)
        if self._need_key.is_set():
            self._need_key.clear()
            self._encoder.restart()
        if self._cont is not None and self._cont.due(snap.taken_at):
            self._encoder.restart()  # the next file starts with a key frame
        started = time.process_time()
        frame = self._encoder.encode(snap, events)
        self.encode_s += time.process_time() - started
        self.frames += 1
        self._keep(frame)
        if self._cont is not None:
            self._queue_write(_Append(frame, self._header("continuous", frame.time_s)))
        self._watch(snap)

    def _keep(self, frame: Encoded) -> None:
        if frame.key or not self._groups:
            self._groups.append([frame])
        else:
            self._groups[-1].append(frame)
        oldest = frame.time_s - self.settings.window_s
        while len(self._groups) > 1 and self._groups[1][0].time_s <= oldest:
            self._groups.popleft()

    def _header(self, cause: str, t: float) -> bytes:
        return file_header(
            {
                "host": self.host,
                "cause": cause,
                "created": t,
                "svqtui": svqtui.__version__,
                "window_s": self.settings.window_s,
                **self.meta,
            }
        )

    def _watch(self, snap: Snapshot) -> None:
        """Incidents: a queue that goes stuck, a migration that starts or fails."""
        now = snap.taken_at
        stuck = {key for key, row in snap.rows.items() if row.stuck}
        new = sorted(stuck - self._stuck)
        self._stuck = stuck
        if new and self.settings.on_stuck:
            row = snap.rows[new[0]]
            self._incident("stuck", f"{row.vm_name}/{row.device_name} queue {row.view.index}", now)
        for vm in snap.vms:
            status = vm.migration.status if vm.migration else "none"
            before = self._migration.get(vm.key)
            self._migration[vm.key] = status
            if not self.settings.on_migration or status == before:
                continue
            if before is None and status in ENDED:
                continue  # first seen after a migration ended: nothing started now
            if status in MIGRATING and before not in MIGRATING:
                self._incident("migration-start", vm.name, now)
            elif status in ENDED and before not in MIGRATING:
                # a migration shorter than the source's poll: its start was
                # never seen, its end is; the window still holds it
                self._incident("migration-start", vm.name, now)
            if status == "failed":
                self._incident("migration-failed", vm.name, now)
        due = [i for i in self._pending if i.due <= now]
        if due:
            self._pending = [i for i in self._pending if i.due > now]
            for incident in due:
                self._dump(_Dump(None, incident.cause, incident.what))

    def _incident(self, cause: str, what: str, now: float) -> None:
        last = self._last_incident.get(cause)
        if last is not None and now - last < INCIDENT_GAP_S:
            return
        self._last_incident[cause] = now
        self.log.info(f"recording: {cause} ({what}); writing the window in {INCIDENT_AFTER_S:g}s")
        self._pending.append(Incident(cause, what, now, now + INCIDENT_AFTER_S))

    def _dump(self, dump: _Dump) -> None:
        frames = [f for group in self._groups for f in group]
        t = frames[-1].time_s if frames else time.time()
        name = files.incident_name(self.host, t, dump.cause)
        if dump.path is None:
            path = self.directory / name
        elif dump.path.is_dir():
            path = dump.path / name
        else:
            path = dump.path
        chunks = [self._header(dump.cause, t), *(f.data for f in frames)]
        self._queue_write(_Write(path, chunks, dump.cause, dump.done))

    def _queue_write(self, job: _Write | _Append) -> None:
        try:
            self._outbox.put_nowait(job)
        except queue.Full:
            self.write_dropped += 1
            if isinstance(job, _Append):
                self._need_key.set()
            elif job.done is not None:
                job.done.set_exception(
                    RecorderBusy("recording: the disk is behind; the dump was dropped")
                )
            with self._lock:
                first = not self._write_dropping
                self._write_dropping = True
            if first:
                self.log.warning("recording: the disk is behind, dropping writes")

    # -- the writer thread ---------------------------------------------------------------

    def _write_loop(self) -> None:
        lower_thread_priority()
        while True:
            job = self._outbox.get()
            if job is None:
                break
            try:
                if isinstance(job, _Write):
                    self._write_file(job)
                else:
                    self._append(job)
            except OSError as err:
                self._failed(err, job)
            else:
                self._write_dropping = False
                self._ok_writes += 1
                if self._failing and self._ok_writes >= RECOVERED_AFTER:
                    self._failing = False
                    self.log.info("recording: writing again")
        if self._cont is not None:
            self._cont.close()

    def _write_file(self, job: _Write) -> None:
        job.path.parent.mkdir(parents=True, exist_ok=True)
        size = files.write_atomic(job.path, job.chunks)
        self.written.append(job.path)
        self.log.info(f"recording: wrote {job.path} ({job.cause}, {_size_text(size)})")
        if job.path.parent == self.directory:
            removed = files.prune(
                self.directory,
                f"svqtui-*{files.SUFFIX}",
                self.settings.keep_files,
                self.settings.keep_bytes,
            )
            for gone in removed:
                self.log.info(f"recording: removed {gone.name} (retention)")
        if job.done is not None:
            job.done.set_result(str(job.path))

    def _append(self, job: _Append) -> None:
        cont = self._cont
        assert cont is not None
        frame = job.frame
        if self._cont_broken or not cont.is_open or (frame.key and cont.due(frame.time_s)):
            if not frame.key:
                return  # a delta without its key frame: wait for the next key frame
            rotated = cont.is_open
            cont.open(job.header, frame.time_s)
            self._cont_broken = False
            if rotated:
                files.prune(
                    cont.path.parent,
                    cont.rotated_pattern,
                    self.settings.keep_files,
                    self.settings.keep_bytes,
                )
        cont.append(frame.data)

    def _failed(self, err: OSError, job: _Write | _Append) -> None:
        self.write_failures += 1
        self._ok_writes = 0
        if isinstance(job, _Append):
            self._cont_broken = True  # the next key frame starts a new file
            self._need_key.set()
            if self._cont is not None:
                self._cont.close()
            where = str(self._cont.path if self._cont else "the recording")
        else:
            where = str(job.path)
            if job.done is not None:
                job.done.set_exception(err)
        if not self._failing:
            self._failing = True
            self.log.error(
                f"recording: cannot write {where}: {err.strerror or err}; "
                "svqtui goes on without it (one line until writes succeed again)"
            )
