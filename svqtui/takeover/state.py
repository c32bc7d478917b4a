"""The takeover's state document: its version, and the rule that a document
this svqtui does not understand is refused whole (docs/design.md#takeover).

A document is ``{"state_version": N, "svqtui": VERSION, ...}`` plus, for
every fd sent with it, exactly one reference by index (``fd_refs``). The
receiver checks the version first and then every reference before it uses
anything: an unknown version, an fd referenced twice or out of range, or an
fd sent but never referenced is a ``StateRefused`` with one line, and the
caller closes every received fd (nothing half-applied).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import svqtui
from svqtui.takeover.errors import StateRefused

RECENT_EVENTS = 100  # event log lines that go along (N shows them as the old svqtui's)
STATE_VERSION = 1
UNDERSTOOD_VERSIONS = frozenset({1})


@dataclass(frozen=True, slots=True)
class StateHeader:
    version: int
    svqtui: str


def header(doc_fields: dict[str, Any]) -> dict[str, Any]:
    """A document with this svqtui's version stamp."""
    return {"state_version": STATE_VERSION, "svqtui": svqtui.__version__, **doc_fields}


class FdSink:
    """The fds of a document being built: ``add(fd)`` returns its reference."""

    def __init__(self) -> None:
        self.fds: list[int] = []

    def add(self, fd: int) -> int:
        self.fds.append(fd)
        return len(self.fds) - 1

    def maybe(self, fd: int | None) -> int | None:
        return None if fd is None else self.add(fd)


class FdSource:
    """The fds that came with a document: ``ref(value)`` checks one reference
    (an index) while the document is parsed and records it for ``check``."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.refs: list[int] = []

    def ref(self, value: object, what: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise StateRefused(f"takeover refused: {what}: not an fd reference ({value!r})")
        self.refs.append(value)
        return value

    def maybe(self, value: object, what: str) -> int | None:
        return None if value is None else self.ref(value, what)


def check_version(doc: dict[str, Any]) -> StateHeader:
    """The document's version, if this svqtui understands it; else StateRefused."""
    version = doc.get("state_version")
    sender = str(doc.get("svqtui", "an unknown svqtui"))
    if isinstance(version, bool) or not isinstance(version, int):
        raise StateRefused("takeover refused: the state document has no state_version")
    if version not in UNDERSTOOD_VERSIONS:
        known = ", ".join(str(v) for v in sorted(UNDERSTOOD_VERSIONS))
        raise StateRefused(
            f"takeover refused: svqtui {sender} sent state version {version}, this svqtui "
            f"{svqtui.__version__} understands {known}; nothing was taken over "
            "(the old svqtui keeps serving: upgrade in steps, or restart)"
        )
    return StateHeader(version, sender)


def check(doc: dict[str, Any], fd_count: int, fd_refs: Iterable[int]) -> StateHeader:
    """Validate ``doc`` against the fds that came with it; raise StateRefused."""
    head = check_version(doc)
    seen: set[int] = set()
    for ref in fd_refs:
        if not 0 <= ref < fd_count:
            raise StateRefused(f"takeover refused: fd #{ref} referenced, {fd_count} sent")
        if ref in seen:
            raise StateRefused(f"takeover refused: fd #{ref} referenced twice")
        seen.add(ref)
    if len(seen) != fd_count:
        unused = sorted(set(range(fd_count)) - seen)[:5]
        raise StateRefused(f"takeover refused: fds sent but not referenced: {unused}")
    return head
