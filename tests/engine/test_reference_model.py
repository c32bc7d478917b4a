"""Property test: the relay engine (svqtui.engine) against a reference model of
one queue defined here (the expected signal counts and mask state; this is not
svqtui/model.py, the console's data model).

A hypothesis state machine drives one queue through random sequences of
source notifications, injections, mask/unmask, fd replacements, counter
resets and shadow stop/start (remove with hand-back, then add again), and
after every step checks, on the real eventfds, exactly how many signals each
current destination received, that replaced destinations and sources went
quiet, and that the engine's masked/pending state matches the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule

from svqtui.engine import End, Engine, Link
from tests.support.engine import Rig, drain, signal
from tests.support.wait import wait_until

LINKS = st.sampled_from([Link.KICK, Link.CALL])


@dataclass
class LinkModel:
    """What the destination of one link should have received since last checked."""

    src: int
    dst: int
    expected: int = 0  # signals the destination should hold now
    notifications: int = 0  # sum of values read from the source (the counter)


@dataclass
class QueueModel:
    """The reference semantics (docs/design.md#relay-rules, rules 1 and 2) of one queue."""

    kick: LinkModel
    call: LinkModel
    masked: bool = False
    pending: bool = False
    stale: list[int] = field(default_factory=list)  # replaced fds: the engine leaves them be
    stale_written: dict[int, int] = field(default_factory=dict)  # by the test, this step

    def link(self, link: Link) -> LinkModel:
        return self.kick if link is Link.KICK else self.call

    def notify(self, link: Link) -> None:
        """A notification on a link: delivered, or latched if the call is masked."""
        if link is Link.CALL and self.masked:
            self.pending = True
        else:
            self.link(link).expected += 1

    def set_masked(self, masked: bool) -> None:
        self.masked = masked
        if not masked and self.pending:
            self.pending = False
            self.call.expected += 1


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine(max_queues=4)
        self.engine.start()
        self.rig = Rig(self.engine)
        self.slot = -1
        self.model: QueueModel

    @initialize(masked=st.booleans())
    def add(self, masked: bool) -> None:
        fds = [self.rig.efd() for _ in range(4)]
        self.slot = self.engine.add_queue(*fds, masked=masked)
        self.model = QueueModel(LinkModel(fds[0], fds[1]), LinkModel(fds[2], fds[3]))
        self.model.masked = masked
        self.model.notify(Link.KICK)  # the add's signal-once
        self.model.notify(Link.CALL)
        self.check()

    @rule(link=LINKS, value=st.integers(1, 3))
    def source_fires(self, link: Link, value: int) -> None:
        lm = self.model.link(link)
        signal(lm.src, value)
        lm.notifications += value
        self.model.notify(link)
        wait_until(
            lambda: self.counters(link).notifications == lm.notifications,
            what=f"the {link.name} source to be read",
        )
        self.check()

    @precondition(lambda self: self.model.stale)
    @rule(data=st.data())
    def stale_fd_fires(self, data: st.DataObject) -> None:
        """A replaced source (or destination) is written: nothing is relayed."""
        fd = data.draw(st.sampled_from(self.model.stale))
        signal(fd)
        self.model.stale_written[fd] = self.model.stale_written.get(fd, 0) + 1
        self.check()

    @rule(masked=st.booleans())
    def set_masked(self, masked: bool) -> None:
        self.engine.set_masked(self.slot, masked)
        self.model.set_masked(masked)
        self.check()

    @rule(link=LINKS)
    def inject(self, link: Link) -> None:
        self.engine.inject(self.slot, link)
        self.model.notify(link)
        self.check()

    @rule(link=LINKS, end=st.sampled_from([End.SRC, End.DST]))
    def set_fd(self, link: Link, end: End) -> None:
        lm = self.model.link(link)
        new = self.rig.efd()
        self.engine.set_fd(self.slot, link, end, new)
        if end is End.SRC:
            self.model.stale.append(lm.src)
            lm.src = new
        else:
            self.model.stale.append(lm.dst)
            lm.dst = new
        self.model.notify(link)  # rule 1: the new path is signalled once
        self.check()

    @rule()
    def reset(self) -> None:
        self.engine.reset(self.slot)
        self.model.kick.notifications = self.model.call.notifications = 0
        self.check()

    @rule(masked=st.booleans())
    def handback_and_readd(self, masked: bool) -> None:
        """Shadow stop then start: hand-back signals the front-end's kick fd
        and call fd once (even when masked); the new add signals both
        destinations once and starts with the given mask."""
        m = self.model
        self.engine.remove_queue(self.slot, handback=True)
        assert drain(m.kick.src) == 1
        m.call.expected += 1
        self.slot = self.engine.add_queue(m.kick.src, m.kick.dst, m.call.src, m.call.dst, masked)
        m.masked, m.pending = masked, False
        m.kick.notifications = m.call.notifications = 0
        m.notify(Link.KICK)
        m.notify(Link.CALL)
        self.check()

    def counters(self, link: Link):
        q = self.engine.queue(self.slot)
        return q.kick if link is Link.KICK else q.call

    def check(self) -> None:
        self.rig.barrier()
        m = self.model
        for name, lm in (("kick", m.kick), ("call", m.call)):
            got = drain(lm.dst)
            assert got == lm.expected, f"{name} destination got {got}, expected {lm.expected}"
            lm.expected = 0
        for fd in m.stale:  # only what the test itself wrote: never relayed, never signalled
            assert drain(fd) == m.stale_written.get(fd, 0), f"replaced fd {fd} was used"
        m.stale_written.clear()
        q = self.engine.queue(self.slot)
        assert (q.call.masked, q.call.pending) == (m.masked, m.pending)
        assert not q.kick.masked and not q.kick.pending
        assert q.kick.notifications == m.kick.notifications
        assert q.call.notifications == m.call.notifications
        assert q.error is None

    def teardown(self) -> None:
        self.engine.stop()
        self.rig.close()


EngineMachine.TestCase.settings = settings(
    max_examples=60,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestEngineModel = EngineMachine.TestCase
