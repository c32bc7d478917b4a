"""Per-vring notification state and its relay through the engine (shadow mode).

A ``Vring`` remembers, for one ring index of one connection, the front-end's
kick and call fds (our own dups, so the engine and hand-back can use them),
which fds the back-end currently holds, and, while shadowed, the engine slot
and the two eventfds svqtui owns: ``eng_kick`` (the back-end's kick fd; the
engine writes it when the front-end kicks) and ``eng_call`` (the back-end's
call fd; the engine reads it and signals the front-end's call fd).

Mask tracking (docs/design.md#masking-model): QEMU gives each ring
its internal masked notifier as the first call fd (vhost_virtqueue_init) and
a fresh guest notifier before each start; it applies the guest's vector
masking inside QEMU/KVM. The first call eventfd of a ring is remembered (by
eventfd-id) as QEMU's masked notifier, unless the ring is then started with
that same fd in place (a front-end without init-time masking). While the
ring's call fd is that notifier, the queue is MASKED by QEMU.

Fd lifetime: an fd handed to the engine is closed only once the engine has
confirmed it no longer uses it. If an engine command times out (a wedged
engine thread), the ring is *tainted*: the engine may still apply the command
later, so its fds are never closed (closing would let the fd number be reused
for another file the engine might then write to); they are kept open in
``QUARANTINE`` for the life of the process.

Only the I/O loop thread touches a ``Vring``; ``snapshot()`` freezes it
for other threads.
"""

from __future__ import annotations

import contextlib
import enum
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from svqtui.engine import End, Engine, Link
from svqtui.engine.errors import EngineTimeout
from svqtui.sources.vhost_user.codec import VringAddr, close_fds
from svqtui.sources.vhost_user.fdident import describe, eventfd_id, is_eventfd, new_eventfd
from svqtui.sources.vhost_user.rings import SplitRing

QUARANTINE: list[int] = []  # fds a timed-out engine command may still reference


class Holder(enum.Enum):
    """Whose eventfd the back-end was last given for one link."""

    NONE = "none"  # none, NOFD, or the ring was stopped (GET_VRING_BASE)
    FRONTEND = "front-end"
    ENGINE = "engine"


@dataclass(frozen=True, slots=True)
class VringSnapshot:
    """One vring as the console sees it, frozen for other threads."""

    index: int
    kick_fd: str | None
    call_fd: str | None
    qemu_masked: bool
    hold: bool
    slot: int | None
    ring: SplitRing | None
    started: bool
    kick_base: int
    call_base: int
    error: str | None


class Vring:
    """The notification state of one ring index on one connection."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.fe_kick: int | None = None
        self.fe_kick_id: int | None = None
        self.fe_call: int | None = None
        self.fe_call_id: int | None = None
        self.kick_ok = False  # the front-end's fd is an eventfd the engine may use
        self.call_ok = False
        self.init_call_id: int | None = None  # QEMU's masked notifier
        self.call_sets = 0
        self.ever_started = False
        self.started = False  # the back-end's ring runs (SET_VRING_KICK, no GET_VRING_BASE since)
        self.be_kick = Holder.NONE
        self.be_call = Holder.NONE
        self.num: int | None = None
        self.addr: VringAddr | None = None
        self.ring_active = False
        self.enabled: bool | None = None
        self.slot: int | None = None
        self.eng_kick: int | None = None
        self.eng_call: int | None = None
        self.eng_kick_id: int | None = None
        self.eng_call_id: int | None = None
        self.hold = False  # operator mask (needs shadow mode)
        self.kick_base = 0  # counts from earlier shadow periods
        self.call_base = 0
        self.error: str | None = None
        self.tainted = False  # an engine command on this ring timed out

    def dispose(self, fds: Iterable[int | None]) -> None:
        """Close fds the engine no longer uses (quarantine them if tainted)."""
        owned = [fd for fd in fds if fd is not None and fd >= 0]
        if self.tainted:
            QUARANTINE.extend(owned)
        else:
            close_fds(owned)

    @contextlib.contextmanager
    def _engine_command(self) -> Iterator[None]:
        try:
            yield
        except EngineTimeout:
            self.tainted = True
            raise

    # -- front-end fds ---------------------------------------------------------

    def take_kick(self, fd: int | None) -> int | None:
        """Keep a dup of the front-end's new kick fd; return the old dup (the
        caller closes it once the engine no longer uses it)."""
        old = self.fe_kick
        self.fe_kick = os.dup(fd) if fd is not None else None
        self.fe_kick_id = eventfd_id(self.fe_kick) if self.fe_kick is not None else None
        self.kick_ok = self.fe_kick is not None and is_eventfd(self.fe_kick)
        return old

    def take_call(self, fd: int | None) -> int | None:
        """Like take_kick, for the call fd; also tracks QEMU's masked notifier."""
        old = self.fe_call
        self.fe_call = os.dup(fd) if fd is not None else None
        self.fe_call_id = eventfd_id(self.fe_call) if self.fe_call is not None else None
        self.call_ok = self.fe_call is not None and is_eventfd(self.fe_call)
        self.call_sets += 1
        if self.call_sets == 1 and not self.ever_started:
            self.init_call_id = self.fe_call_id
        return old

    def on_start(self) -> None:
        """The back-end was given a kick fd: the ring runs."""
        if not self.ever_started and self.call_sets == 1:
            self.init_call_id = None  # started on its first call fd: not a masked notifier
        self.ever_started = True
        self.started = True
        self.ring_active = self.addr is not None

    def on_stop(self) -> None:
        """GET_VRING_BASE (or a reset) stopped the ring."""
        self.started = False
        self.ring_active = False
        self.be_kick = Holder.NONE

    @property
    def qemu_masked(self) -> bool:
        """The call fd is QEMU's masked notifier (the ring was never unmasked)."""
        if self.fe_call is None:
            return False
        if self.fe_call_id is not None:
            return self.fe_call_id == self.init_call_id
        return self.call_sets == 1 and not self.ever_started

    # -- the engine relay ----------------------------------------------------------

    @property
    def shadowed(self) -> bool:
        return self.slot is not None

    def attach(self, engine: Engine, watch_kick: bool = True) -> None:
        """Put this ring into the engine: front-end fds <-> svqtui's eventfds.

        An eventfd must have one reader: while the back-end may still read
        the front-end's kick fd, pass ``watch_kick=False`` and call
        ``relay_kick_from`` once the back-end has switched to ``eng_kick``."""
        if self.slot is not None:
            return
        kick, call = new_eventfd(), new_eventfd()
        kick_src = self.fe_kick if self.fe_kick is not None and self.kick_ok and watch_kick else -1
        try:
            with self._engine_command():
                slot = engine.add_queue(
                    kick_src=kick_src,
                    kick_dst=kick,
                    call_src=call,
                    call_dst=self.fe_call if self.fe_call is not None and self.call_ok else -1,
                    masked=self.hold,
                )
        except Exception:
            self.dispose((kick, call))
            raise
        self.slot, self.eng_kick, self.eng_call = slot, kick, call
        self.eng_kick_id, self.eng_call_id = eventfd_id(kick), eventfd_id(call)
        self.error = None

    def detach(self, engine: Engine, handback: bool) -> None:
        """Take this ring out of the engine and close svqtui's eventfds.

        With ``handback`` the engine signals the front-end's kick fd (the
        back-end polls it again) and call fd once, so nothing is lost."""
        slot = self._take_slot(engine)
        if slot is None:
            return
        try:
            with self._engine_command():
                engine.remove_queue(slot, handback=handback)
        finally:
            self.dispose((self.eng_kick, self.eng_call))
            self.eng_kick = self.eng_call = None
            self.eng_kick_id = self.eng_call_id = None
            if self.be_kick is Holder.ENGINE:
                self.be_kick = Holder.NONE
            if self.be_call is Holder.ENGINE:
                self.be_call = Holder.NONE

    def watches_kick(self, engine: Engine) -> bool:
        """The engine reads the front-end's kick fd for this ring (shadowed)."""
        if self.slot is None or self.fe_kick is None:
            return False
        return engine.source_fd(self.slot, Link.KICK) == self.fe_kick

    def release(self, engine: Engine) -> None:
        """A takeover's "released": the engine lets go of this ring without
        hand-back, and every fd stays open (the new svqtui holds the same
        eventfds now); the engine's totals move into the bases."""
        slot = self._take_slot(engine)
        if slot is None:
            return
        with self._engine_command():
            engine.remove_queue(slot, handback=False)

    def _take_slot(self, engine: Engine) -> int | None:
        """Forget this ring's engine slot (None: it had none), moving the
        engine's totals for it into the bases so the counts continue."""
        if self.slot is None:
            return None
        slot, self.slot = self.slot, None
        try:
            counters = engine.queue(slot)
            self.kick_base += counters.kick.notifications
            self.call_base += counters.call.notifications
        except Exception:  # counters are for display only
            pass
        return slot

    def arm(self, engine: Engine, watch_kick: bool) -> None:
        """Put this ring's existing eventfds into the engine (a takeover: the
        new svqtui after "released", or the old one taking its rings back).
        The call destination is signalled once (rule 1; masked: latched);
        the kick destination is not: a kick that arrived meanwhile waits in
        the front-end's kick eventfd, which the engine now reads."""
        if self.slot is not None or self.eng_kick is None or self.eng_call is None:
            return
        kick_src = self.fe_kick if watch_kick and self.fe_kick is not None and self.kick_ok else -1
        with self._engine_command():
            self.slot = engine.add_queue(
                kick_src=kick_src,
                kick_dst=self.eng_kick,
                call_src=self.eng_call,
                call_dst=self.fe_call if self.fe_call is not None and self.call_ok else -1,
                masked=self.hold,
                signal_kick=False,
            )

    def relay_kick_from(self, engine: Engine) -> None:
        """The engine watches the front-end's (new) kick fd; it signals the
        back-end's ``eng_kick`` once."""
        if self.slot is not None:
            fd = self.fe_kick if self.fe_kick is not None and self.kick_ok else -1
            with self._engine_command():
                engine.set_fd(self.slot, Link.KICK, End.SRC, fd)

    def stop_kick_relay(self, engine: Engine) -> None:
        """The engine stops reading the front-end's kick fd (before the
        back-end is given it back: an eventfd must have one reader)."""
        if self.slot is not None:
            with self._engine_command():
                engine.set_fd(self.slot, Link.KICK, End.SRC, -1)

    def kick_frontend_fd(self) -> None:
        """Signal the front-end's kick fd once: the back-end, now reading it
        again, rescans the ring for a kick the engine took during the switch."""
        if self.fe_kick is not None and self.kick_ok:
            with contextlib.suppress(OSError):
                os.eventfd_write(self.fe_kick, 1)

    def relay_call_to(self, engine: Engine) -> None:
        """The front-end's call fd changed: the engine signals the new one."""
        if self.slot is not None:
            fd = self.fe_call if self.fe_call is not None and self.call_ok else -1
            with self._engine_command():
                engine.set_fd(self.slot, Link.CALL, End.DST, fd)

    def close(self, engine: Engine | None) -> None:
        """Release everything (connection closed): engine queue, eventfds, dups."""
        try:
            if engine is not None:
                self.detach(engine, handback=True)
        finally:
            self.dispose((self.fe_kick, self.fe_call))
            self.fe_kick = self.fe_call = None

    # -- what the console sees ---------------------------------------------------------

    def _fd_label(
        self, fe_id: int | None, fe_fd: int | None, holder: Holder, eng_id: int | None
    ) -> str | None:
        """The front-end's fd, and svqtui's when the back-end holds that instead."""
        if fe_fd is None:
            return None
        label = describe(fe_id)
        if holder is Holder.ENGINE and eng_id is not None:
            label += f" -> svqtui {describe(eng_id)}"
        return label

    def snapshot(self, ring_ok: bool) -> VringSnapshot:
        ring = None
        if ring_ok and self.ring_active and self.addr is not None:
            ring = SplitRing(self.addr.avail, self.addr.used, self.addr.desc, self.num)
        return VringSnapshot(
            index=self.index,
            kick_fd=self._fd_label(self.fe_kick_id, self.fe_kick, self.be_kick, self.eng_kick_id),
            call_fd=self._fd_label(self.fe_call_id, self.fe_call, self.be_call, self.eng_call_id),
            qemu_masked=self.qemu_masked,
            hold=self.hold,
            slot=self.slot,
            ring=ring,
            started=self.started,
            kick_base=self.kick_base,
            call_base=self.call_base,
            error=self.error,
        )
