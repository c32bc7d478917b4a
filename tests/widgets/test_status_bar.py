"""The status bar's engine polling figure: spin share of a core, or "off"."""

from __future__ import annotations

import dataclasses

from svqtui.model import EngineStatus
from svqtui.widgets.status_bar import ViewState, status_text
from tests.support.console import synthetic_snapshot


def _text(engine: EngineStatus) -> str:
    snap = dataclasses.replace(synthetic_snapshot(1, 1), engine=engine)
    return status_text(snap, ViewState(1.0)).plain


def test_status_bar_shows_polling_share_or_off() -> None:
    """Adaptive/fixed polling shows the spin share over the last interval as
    "poll N%"; polling off shows "poll off"; no engine shows nothing."""
    base = EngineStatus(alive=True, relays_per_s=10.0, queues=2, backlog=0)
    assert "poll 3%" in _text(dataclasses.replace(base, polling="adaptive", spin_share=0.031))
    assert "poll 57%" in _text(dataclasses.replace(base, polling="fixed", spin_share=0.57))
    assert "poll off" in _text(dataclasses.replace(base, polling="off"))
    assert "poll" not in _text(base)
