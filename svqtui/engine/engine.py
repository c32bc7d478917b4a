"""The relay engine's Python face: thread lifecycle, the command ring, snapshots.

The C loop (relay.c) runs in one dedicated thread with the GIL released. This
module never reads or writes a relayed eventfd: it submits commands, which the
engine thread takes off its command ring and applies in order, and copies counters out
with the engine's lock-free seqlock reader.

The engine thread must never block (docs/design.md#limits): before an fd goes
to the engine it is checked here. An open fd that is not an eventfd or a
pipe is refused (``BadFd``); every accepted fd is switched to O_NONBLOCK
(a blocking pipe, or an eventfd a peer filled to its maximum, would stop the
engine thread in write() and every queue with it). A closed fd is left to
the engine, which reports it as the link's error. A source fd that is
already another link's source is refused (``FdInUse``): epoll watches fd
numbers, so removing either link would silently stop watching it for both.
"""

from __future__ import annotations

import collections
import contextlib
import enum
import fcntl
import os
import stat
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from svqtui.engine._relay import ffi, lib
from svqtui.engine.errors import (
    BadFd,
    EngineFull,
    EngineNotRunning,
    EngineStartError,
    EngineTimeout,
    FdInUse,
    UnknownQueue,
)
from svqtui.thread_priority import request_short_slice

DEFAULT_MAX_QUEUES = 4096
DEFAULT_TIMEOUT_S = 2.0
HEARTBEAT_STALE_S = 1.0  # the idle loop wakes every 100 ms
DEFAULT_POLL_US = 200
DEFAULT_POLL_CPU_BUDGET = 0.2
MAX_POLL_US = 1_000_000


class Link(enum.IntEnum):
    """The two directions of a virtqueue's notifications."""

    KICK = lib.SVQ_LINK_KICK  # guest -> device
    CALL = lib.SVQ_LINK_CALL  # device -> guest


class Polling(enum.StrEnum):
    """How the engine loop waits between batches of notifications (poll.c)."""

    OFF = "off"  # always sleep in epoll_wait
    ADAPTIVE = "adaptive"  # spin while traffic is dense, within a CPU budget
    FIXED = "fixed"  # spin poll_us after every batch (a blind spin, for comparison)


_POLL_MODES = {
    Polling.OFF: lib.SVQ_POLL_OFF,
    Polling.ADAPTIVE: lib.SVQ_POLL_ADAPTIVE,
    Polling.FIXED: lib.SVQ_POLL_FIXED,
}
_POLL_NAMES = {code: mode for mode, code in _POLL_MODES.items()}


class End(enum.IntEnum):
    """Which fd of a link: where notifications come from or go to."""

    SRC = lib.SVQ_END_SRC
    DST = lib.SVQ_END_DST


# err_op -> (which end failed, what failed); {errno} is filled in with strerror.
_ERROR_OPS = {
    lib.SVQ_ERR_READ: ("source", "read failed: {errno}"),
    lib.SVQ_ERR_WRITE: ("destination", "write failed: {errno}"),
    lib.SVQ_ERR_WATCH: ("source", "epoll watch failed: {errno}"),
    lib.SVQ_ERR_EOF: ("source", "read returned end of file (not an eventfd)"),
}


@dataclass(frozen=True, slots=True)
class LinkCounters:
    """One link's counters and state, as copied from the engine."""

    src: int
    dst: int
    notifications: int
    reads: int
    delivered: int
    held: int
    injected: int
    signals: int
    errors: int
    last_ns: int
    masked: bool
    pending: bool
    error: str | None
    fault: int = 0  # svqtui.engine.faults.FaultKind armed on the link
    fault_left: int = 0  # drop/dup: arrivals still to affect
    fault_delay_ms: int = 0  # delay: how long each arrival waits
    dropped: int = 0  # arrivals swallowed by a drop fault
    duplicated: int = 0  # extra writes by a dup fault
    delayed: int = 0  # arrivals delivered late by a delay fault

    @property
    def healthy(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class QueueCounters:
    """A queue slot's two links, consistent with each other."""

    slot: int
    generation: int
    kick: LinkCounters
    call: LinkCounters

    @property
    def error(self) -> str | None:
        return self.kick.error or self.call.error


@dataclass(frozen=True, slots=True)
class EngineHealth:
    """Whether the engine thread is alive and keeping up."""

    alive: bool
    thread_alive: bool
    heartbeat_age_s: float
    loops: int
    relays: int
    submitted: int
    applied: int

    @property
    def backlog(self) -> int:
        return self.submitted - self.applied


@dataclass(frozen=True, slots=True)
class PollingStats:
    """The loop's polling settings and what spinning cost and found (totals)."""

    mode: Polling
    poll_us: int
    cpu_budget: float  # adaptive: fraction of a core spinning may use
    spinning: bool  # in a spin window right now (else asleep or relaying)
    spin_ns: int  # wall time spent spinning
    hits: int  # spin windows that found work
    misses: int  # spin windows that ran out finding nothing
    contended: int  # adaptive: windows in which the thread was preempted
    budget_stops: int  # adaptive: windows skipped or cut by the budget
    thread_cpu_ns: int | None  # the engine thread's CPU time, None when not running


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """Every active queue's counters at one moment (monotonic ns)."""

    taken_ns: int
    health: EngineHealth
    queues: dict[int, QueueCounters]
    polling: PollingStats | None = None  # None: no engine, or a partial copy

    @classmethod
    def empty(cls) -> EngineSnapshot:
        """No engine: no queues, a dead engine's health."""
        return cls(0, EngineHealth(False, False, float("inf"), 0, 0, 0, 0), {})


def _fd_kind(fd: int, st: os.stat_result) -> str:
    """'eventfd', 'pipe', or what else the fd is (for the error)."""
    if stat.S_ISFIFO(st.st_mode):
        return "pipe"
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        target = "?"
    if target == "anon_inode:[eventfd]":
        return "eventfd"
    if stat.S_ISREG(st.st_mode):
        return "a regular file"
    if stat.S_ISSOCK(st.st_mode):
        return "a socket"
    if stat.S_ISCHR(st.st_mode):
        return "a character device"
    if stat.S_ISDIR(st.st_mode):
        return "a directory"
    return target


def check_fd(fd: int, what: str) -> None:
    """Refuse an open fd the engine must not be given; make an accepted one
    nonblocking. ``what`` names it for the error ("kick destination")."""
    if fd < 0:
        return
    try:
        st = os.fstat(fd)
    except OSError:
        return  # closed: the engine reports it as this link's error
    kind = _fd_kind(fd, st)
    if kind not in ("eventfd", "pipe"):
        raise BadFd(f"{what} fd {fd} is {kind}: the engine relays eventfds (or pipes) only")
    try:
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        if not flags & os.O_NONBLOCK:
            fcntl.fcntl(fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
    except OSError as err:
        raise BadFd(f"{what} fd {fd}: cannot make it nonblocking: {err.strerror}") from None


def _link_counters(raw: Any, name: str) -> LinkCounters:
    error = None
    if raw.err_op:
        end, what = _ERROR_OPS.get(raw.err_op, ("fd", "failed: {errno}"))
        fd = raw.src if end == "source" else raw.dst
        error = f"{name} {end} fd {fd}: " + what.format(errno=os.strerror(raw.err_errno))
    return LinkCounters(
        src=raw.src,
        dst=raw.dst,
        notifications=raw.notifications,
        reads=raw.reads,
        delivered=raw.delivered,
        held=raw.held,
        injected=raw.injected,
        signals=raw.signals,
        errors=raw.errors,
        last_ns=raw.last_ns,
        masked=bool(raw.masked),
        pending=bool(raw.pending),
        error=error,
        fault=raw.fault,
        fault_left=raw.fault_left,
        fault_delay_ms=raw.fault_delay_ns // 1_000_000,
        dropped=raw.dropped,
        duplicated=raw.duplicated,
        delayed=raw.delayed,
    )


class Engine:
    """One relay engine: a C epoll loop in its own thread, driven by commands.

    Every command method submits a command to the command ring and, by default, waits until the
    engine thread has applied it, so when it returns the change is in force
    (and an fd passed out of the engine may be closed). Fds passed in stay
    owned by the caller, who must keep them open until they are replaced or
    their queue removed.
    """

    def __init__(
        self,
        max_queues: int = DEFAULT_MAX_QUEUES,
        polling: Polling | str = Polling.ADAPTIVE,
        poll_us: int = DEFAULT_POLL_US,
        poll_cpu_budget: float = DEFAULT_POLL_CPU_BUDGET,
        cpu: int | None = None,
    ) -> None:
        raw = lib.svq_create(max_queues)
        if raw == ffi.NULL:
            raise EngineStartError(
                f"cannot create the relay engine ({os.strerror(ffi.errno)}): "
                "check the open-file limit (ulimit -n)"
            )
        self._raw = raw
        self._finalizer = weakref.finalize(self, lib.svq_destroy, raw)
        self.max_queues = max_queues
        #: added to ``health().relays``: a takeover continues the old engine's count
        self.relays_base = 0
        self._slots_lock = threading.Lock()
        # FIFO reuse: a freed slot goes to the back, so a stale command for a
        # removed queue is unlikely to meet a new queue in the same slot.
        self._free = collections.deque(range(max_queues))
        self._active: set[int] = set()
        self._high_water = 0
        self._sources: dict[int, tuple[int, Link]] = {}  # source fd -> (slot, link)
        self._link_src: dict[tuple[int, Link], int] = {}  # (slot, link) -> source fd
        self._snap_buf = ffi.new("struct svq_queue[]", max_queues)
        self._snap_lock = threading.Lock()  # one reader of _snap_buf at a time
        self._thread: threading.Thread | None = None
        self._closed = False
        self.exit_code: int | None = None
        self.cpu = cpu
        self._start_error: str | None = None
        self.set_polling(polling, poll_us, poll_cpu_budget)

    # -- lifecycle ---------------------------------------------------------

    def start(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Start the engine thread and wait until its loop runs."""
        if self._thread is not None:
            raise EngineStartError("the engine was already started (engines are not restartable)")
        self._thread = threading.Thread(target=self._run, name="svqtui-engine", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._stats().running:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise EngineStartError(self._start_error or "the engine thread did not start")
            time.sleep(0.001)

    def _run(self) -> None:
        if self.cpu is not None:
            try:
                os.sched_setaffinity(0, {self.cpu})  # 0: this, the engine thread
            except (OSError, ValueError) as err:
                self._start_error = f"cannot pin the engine thread to CPU {self.cpu}: {err}"
                return
        request_short_slice()  # a woken engine preempts a running console thread at once
        self.exit_code = lib.svq_run(self._raw)

    @property
    def native_id(self) -> int | None:
        """The engine thread's kernel thread id (None before start)."""
        return self._thread.native_id if self._thread is not None else None

    def thread_cpu_ns(self) -> int | None:
        """CPU time the engine thread has used, or None when it is not running."""
        thread = self._thread
        if thread is None or thread.ident is None or not thread.is_alive():
            return None
        try:
            return time.clock_gettime_ns(time.pthread_getcpuclockid(thread.ident))
        except OSError:  # the thread ended in between
            return None

    # -- polling -------------------------------------------------------------

    def set_polling(
        self,
        mode: Polling | str,
        poll_us: int = DEFAULT_POLL_US,
        cpu_budget: float = DEFAULT_POLL_CPU_BUDGET,
    ) -> None:
        """Choose how the loop waits: ``off`` always sleeps, ``fixed`` spins
        poll_us after every batch, ``adaptive`` spins at most poll_us and only
        while it pays, within cpu_budget of a core. Takes effect at the next
        batch of notifications; any thread may call it."""
        try:
            code = _POLL_MODES[Polling(mode)]
        except ValueError:
            raise ValueError(f"unknown polling mode {mode!r} (off, adaptive, fixed)") from None
        if not 0 <= poll_us <= MAX_POLL_US:
            raise ValueError(f"poll_us must be between 0 and {MAX_POLL_US}, got {poll_us}")
        if not 0.0 <= cpu_budget <= 1.0:
            raise ValueError(f"cpu_budget must be between 0 and 1, got {cpu_budget}")
        lib.svq_set_polling(self._live_raw(), code, poll_us * 1000, round(cpu_budget * 1e6))

    def polling(self, stats: Any = None) -> PollingStats:
        """The polling settings in force and the spin counters (lock-free)."""
        stats = stats if stats is not None else self._stats()
        return PollingStats(
            mode=_POLL_NAMES.get(stats.poll_mode, Polling.OFF),
            poll_us=stats.poll_max_ns // 1000,
            cpu_budget=stats.poll_budget_ppm / 1e6,
            spinning=bool(stats.spinning),
            spin_ns=stats.spin_ns,
            hits=stats.spin_hits,
            misses=stats.spin_misses,
            contended=stats.spin_contended,
            budget_stops=stats.spin_budget_stops,
            thread_cpu_ns=self.thread_cpu_ns(),
        )

    def stop(self, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Stop the engine thread (idempotent). Queues are left as they are."""
        if self._thread is None or not self._thread.is_alive():
            return
        cmd = ffi.new("struct svq_cmd *", {"op": lib.SVQ_OP_STOP})
        lib.svq_submit(self._raw, cmd)
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise EngineTimeout(f"the engine thread did not stop within {timeout:.1f} s")

    def close(self) -> None:
        """Stop the thread and free the engine's own fds and memory now rather
        than at garbage collection. The caller guarantees no other thread
        uses the engine any more; afterwards every call raises EngineNotRunning."""
        self.stop()  # raises EngineTimeout, and frees nothing, if the thread lingers
        self._closed = True
        self._finalizer()

    def _live_raw(self) -> Any:
        if self._closed:
            raise EngineNotRunning("the relay engine was closed")
        return self._raw

    def __enter__(self) -> Engine:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stats(self) -> Any:
        stats = ffi.new("struct svq_stats *")
        lib.svq_stats(self._live_raw(), stats)
        return stats

    def health(self, stats: Any = None) -> EngineHealth:
        """Thread liveness, loop heartbeat and command-ring backlog."""
        if self._closed:
            return EngineHealth(False, False, float("inf"), 0, 0, 0, 0)
        stats = stats if stats is not None else self._stats()
        thread_alive = self._thread is not None and self._thread.is_alive()
        age = (
            (time.monotonic_ns() - stats.heartbeat_ns) / 1e9 if stats.heartbeat_ns else float("inf")
        )
        return EngineHealth(
            alive=thread_alive and bool(stats.running) and age < HEARTBEAT_STALE_S,
            thread_alive=thread_alive,
            heartbeat_age_s=age,
            loops=stats.loops,
            relays=stats.relays + self.relays_base,
            submitted=stats.submitted,
            applied=stats.applied,
        )

    # -- command ring --------------------------------------------------------

    def _submit(self, wait: bool, timeout: float, **fields: Any) -> None:
        if self._thread is None:
            raise EngineNotRunning("the relay engine was not started (call Engine.start())")
        cmd = ffi.new("struct svq_cmd *", fields)
        seq = lib.svq_submit(self._live_raw(), cmd)
        if seq == 0:
            raise EngineNotRunning("the relay engine is stopped: restart svqtui")
        if not wait:
            return
        rc = lib.svq_wait(self._raw, seq, int(timeout * 1000))
        if rc == 1:
            raise EngineTimeout(f"the engine did not apply a command within {timeout:.1f} s")
        if rc == 2:
            raise EngineNotRunning("the relay engine stopped before applying a command")

    def _check(self, slot: int) -> None:
        if slot not in self._active:
            raise UnknownQueue(f"queue slot {slot} is not in the engine")

    def add_queue(
        self,
        kick_src: int = -1,
        kick_dst: int = -1,
        call_src: int = -1,
        call_dst: int = -1,
        masked: bool = False,
        timeout: float = DEFAULT_TIMEOUT_S,
        signal_kick: bool = True,
    ) -> int:
        """Relay kick_src -> kick_dst and call_src -> call_dst; return the slot.

        Both destinations are signalled once (a masked call link latches it);
        ``signal_kick=False`` skips the kick destination (a takeover: the
        back-end keeps its kick eventfd and missed nothing).
        ``BadFd`` for an fd that is not an eventfd or pipe, ``FdInUse`` for a
        source that is already another link's source.
        """
        for fd, what in (
            (kick_src, "kick source"),
            (kick_dst, "kick destination"),
            (call_src, "call source"),
            (call_dst, "call destination"),
        ):
            check_fd(fd, what)
        if kick_src >= 0 and kick_src == call_src:
            raise FdInUse(f"fd {kick_src} cannot be the source of both the kick and the call link")
        with self._slots_lock:
            for fd, link in ((kick_src, Link.KICK), (call_src, Link.CALL)):
                self._check_source_free(fd, None, link)
            if not self._free:
                raise EngineFull(f"all {self.max_queues} engine queue slots are in use")
            slot = self._free.popleft()
            self._active.add(slot)
            self._high_water = max(self._high_water, slot + 1)
            self._claim_source(slot, Link.KICK, kick_src)
            self._claim_source(slot, Link.CALL, call_src)
        try:
            self._submit(
                True,
                timeout,
                op=lib.SVQ_OP_ADD,
                queue=slot,
                fds=[kick_src, kick_dst, call_src, call_dst],
                arg=(lib.SVQ_ADD_MASKED if masked else 0)
                | (0 if signal_kick else lib.SVQ_ADD_QUIET_KICK),
            )
        except Exception:
            self._release(slot)
            raise
        return slot

    def _release(self, slot: int) -> None:
        with self._slots_lock:
            self._active.discard(slot)
            self._free.append(slot)
            self._claim_source(slot, Link.KICK, -1)
            self._claim_source(slot, Link.CALL, -1)

    def _check_source_free(self, fd: int, slot: int | None, link: Link) -> None:
        """Raise FdInUse if ``fd`` is another link's source (caller holds _slots_lock)."""
        if fd < 0:
            return
        owner = self._sources.get(fd)
        if owner is not None and owner != (slot, link):
            other_slot, other_link = owner
            raise FdInUse(
                f"fd {fd} is already the {other_link.name.lower()} source of queue slot"
                f" {other_slot}: one fd can be the source of one link only"
            )

    def _claim_source(self, slot: int, link: Link, fd: int) -> None:
        """Record ``fd`` as the source of (slot, link) (caller holds _slots_lock)."""
        old = self._link_src.pop((slot, link), -1)
        if old >= 0 and self._sources.get(old) == (slot, link):
            del self._sources[old]
        if fd >= 0:
            self._sources[fd] = (slot, link)
            self._link_src[(slot, link)] = fd

    def source_fd(self, slot: int, link: Link) -> int:
        """The fd a link reads (-1: none), as last set by ADD or SET_FD."""
        with self._slots_lock:
            return self._link_src.get((slot, link), -1)

    def remove_queue(
        self, slot: int, handback: bool = False, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Stop relaying a queue. With handback, signal the kick source and
        the call destination once: their owner takes the path back."""
        self._check(slot)
        self._submit(True, timeout, op=lib.SVQ_OP_REMOVE, queue=slot, arg=int(handback))
        self._release(slot)

    def set_fd(
        self, slot: int, link: Link, end: End, fd: int, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Replace one fd of a link; the destination is then signalled once.
        ``BadFd`` / ``FdInUse`` as for ``add_queue``."""
        self._check(slot)
        check_fd(fd, f"{link.name.lower()} {'source' if end is End.SRC else 'destination'}")
        if end is End.SRC:
            with self._slots_lock:
                self._check_source_free(fd, slot, link)
                self._claim_source(slot, link, fd)
        self._submit(
            True,
            timeout,
            op=lib.SVQ_OP_SET_FD,
            queue=slot,
            link=int(link),
            end=int(end),
            fds=[fd, -1, -1, -1],
        )

    def set_masked(self, slot: int, masked: bool, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Mask (hold calls as pending) or unmask (deliver a pending call once)."""
        self._check(slot)
        self._submit(True, timeout, op=lib.SVQ_OP_MASK, queue=slot, arg=int(masked))

    def inject(self, slot: int, link: Link, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Signal a link's destination as if its source had fired."""
        self._check(slot)
        self._submit(True, timeout, op=lib.SVQ_OP_INJECT, queue=slot, link=int(link))

    def set_fault(
        self, slot: int, link: Link, kind: int, amount: int, timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        """Arm a fault on a link (svqtui.engine.faults: kind, N or ms), or
        clear it with kind 0; clearing delivers a notification a delay holds."""
        self._check(slot)
        self._submit(
            True,
            timeout,
            op=lib.SVQ_OP_FAULT,
            queue=slot,
            link=int(link),
            fds=[kind, -1, -1, -1],
            arg=amount,
        )

    def reset(self, slot: int | None = None, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        """Zero the counters of one queue, or of all (state is kept)."""
        if slot is not None:
            self._check(slot)
        self._submit(
            True, timeout, op=lib.SVQ_OP_RESET, queue=slot or 0, arg=-1 if slot is None else 0
        )

    # -- observation ---------------------------------------------------------

    @property
    def queue_count(self) -> int:
        """Queues currently in the engine."""
        with self._slots_lock:
            return len(self._active)

    def snapshot(self) -> EngineSnapshot:
        """Copy every active queue's counters (each queue self-consistent)."""
        with self._slots_lock:
            count = self._high_water
            active = sorted(self._active)
        queues: dict[int, QueueCounters] = {}
        # The copy and its conversion share one buffer: serialise them, or a
        # second thread's copy would overwrite a queue while it is converted.
        with self._snap_lock:
            lib.svq_snapshot(self._live_raw(), self._snap_buf, 0, count)
            for slot in active:
                counters = self._converted(slot)
                if counters is not None:
                    queues[slot] = counters
        stats = None if self._closed else self._stats()  # one read: health and polling
        return EngineSnapshot(
            taken_ns=time.monotonic_ns(),
            health=self.health(stats),
            queues=queues,
            polling=None if stats is None else self.polling(stats),
        )

    def snapshot_of(self, slots: Iterable[int]) -> EngineSnapshot:
        """Like ``snapshot()`` for the given slots only (each copied alone)."""
        queues: dict[int, QueueCounters] = {}
        for slot in slots:
            with contextlib.suppress(UnknownQueue):
                queues[slot] = self.queue(slot)
        return EngineSnapshot(taken_ns=time.monotonic_ns(), health=self.health(), queues=queues)

    def queue(self, slot: int) -> QueueCounters:
        """One queue's counters (copies that slot only)."""
        self._check(slot)
        with self._snap_lock:
            lib.svq_snapshot(self._live_raw(), self._snap_buf, slot, 1)
            counters = self._converted(slot)
        if counters is None:
            raise UnknownQueue(f"queue slot {slot} is not in the engine")
        return counters

    def _converted(self, slot: int) -> QueueCounters | None:
        """The copied slot as Python data (caller holds _snap_lock)."""
        raw = self._snap_buf[slot]
        if not raw.active:
            return None
        return QueueCounters(
            slot=slot,
            generation=raw.generation,
            kick=_link_counters(raw.link[Link.KICK], "kick"),
            call=_link_counters(raw.link[Link.CALL], "call"),
        )
