"""The output interface and its registry (docs/design.md#seams).

``SnapshotOutput.render(snap)`` is the whole contract: one snapshot in, text
out. A streaming output (``--log``) also gets ``begin(first)`` for a header,
and keeps what it needs between snapshots (its columns) in itself.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import ClassVar, TypeVar

from svqtui.errors import SvqtuiError
from svqtui.model import Snapshot


class UnknownOutput(SvqtuiError):
    """No output is registered under that name."""


class SnapshotOutput(abc.ABC):
    """Renders snapshots in one format."""

    name: ClassVar[str]
    summary: ClassVar[str]  # one line for --help
    streaming: ClassVar[bool] = False  # one line per refresh (--log) rather than a document

    def begin(self, first: Snapshot) -> str | None:
        """Text before the first rendering (a header), or None."""
        return None

    @abc.abstractmethod
    def render(self, snap: Snapshot) -> str:
        """``snap`` in this format (no trailing newline)."""


OUTPUTS: dict[str, type[SnapshotOutput]] = {}
OutputClass = TypeVar("OutputClass", bound=type[SnapshotOutput])


def register(name: str) -> Callable[[OutputClass], OutputClass]:
    """Class decorator: make an output available by ``name``."""

    def add(cls: OutputClass) -> OutputClass:
        if name in OUTPUTS:
            raise ValueError(f"output {name!r} is registered twice")
        cls.name = name
        OUTPUTS[name] = cls
        return cls

    return add


def output_named(name: str) -> SnapshotOutput:
    """A fresh instance of the output registered as ``name``."""
    cls = OUTPUTS.get(name)
    if cls is None:
        raise UnknownOutput(f"no output {name!r} (known: {', '.join(sorted(OUTPUTS))})")
    return cls()
