"""Making untrusted text safe for the terminal and the log.

Names and strings that come from peers (a QMP server's VM and device names,
event data and error descriptions; a vhost-user peer's memfd names; a control
client's arguments) may carry terminal escape sequences, other control
characters, bidirectional overrides or megabytes of text. ``safe_text`` is the
one place that turns such a string into one bounded, printable line: every
control character (C0, DEL, C1, which covers ESC and CSI, hence every escape
sequence), every line or paragraph separator and every bidirectional
formatting character is replaced by a visible escape (``\\x1b``,
``\\u202e``), and the result is cut to a length limit with a note of how much
was cut. Clean text within the limit comes back unchanged.

``safe_json`` applies it to every string (keys included) of a decoded JSON
value, bounding the nesting depth and the size of containers on the way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MAX_TEXT = 1000  # characters: a log line or a status text
MAX_NAME = 128  # characters: a VM, device or chardev name shown in a table
MAX_JSON_DEPTH = 32  # QMP replies svqtui reads nest 4 deep at most
MAX_JSON_ITEMS = 4096  # per list or object

# Characters that move the cursor, change the terminal's state or reorder
# text, beyond the C0/DEL/C1 controls: line/paragraph separators and the
# bidirectional embeddings, overrides and isolates ("Trojan source").
_FORMAT_CONTROLS = frozenset(
    [0x2028, 0x2029, 0x200E, 0x200F, 0x061C, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)


def is_unsafe(ch: str) -> bool:
    """Whether one character must not reach a terminal as it is."""
    code = ord(ch)
    return code < 0x20 or 0x7F <= code <= 0x9F or code in _FORMAT_CONTROLS


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


# str.translate table for every unsafe character (built once).
_TABLE = {
    code: _escape(chr(code))
    for code in [*range(0x20), *range(0x7F, 0xA0), *sorted(_FORMAT_CONTROLS)]
}


def safe_text(value: object, limit: int = MAX_TEXT) -> str:
    """``value`` as one printable line of at most ``limit`` characters plus a
    short "(+N chars)" note when cut. Bytes are decoded as UTF-8 (invalid
    bytes become U+FFFD); anything else goes through ``str()``."""
    if isinstance(value, bytes | bytearray):
        text = bytes(value).decode("utf-8", "replace")
    else:
        text = value if isinstance(value, str) else str(value)
    # Cut before escaping (an escape must not be cut in half), with room
    # for what escaping may add: at most 6 characters per input character.
    cut = len(text) - limit if len(text) > limit else 0
    if cut:
        text = text[:limit]
    safe = text.translate(_TABLE)
    if len(safe) > limit:
        kept = 0
        out: list[str] = []
        for ch in text:
            piece = _TABLE.get(ord(ch), ch)
            if kept + len(piece) > limit:
                break
            out.append(piece)
            kept += len(piece)
        cut += len(text) - len(out)
        safe = "".join(out)
    if cut:
        safe += f"…(+{cut} chars)"
    return safe


def safe_name(value: object) -> str:
    """``safe_text`` with the limit for names (VM, device, chardev)."""
    return safe_text(value, MAX_NAME)


class JSONTooDeep(ValueError):
    """A decoded JSON value nests deeper than ``MAX_JSON_DEPTH``."""


def safe_json(value: Any, limit: int = MAX_TEXT, depth: int = MAX_JSON_DEPTH) -> Any:
    """A copy of a decoded JSON value with every string made safe (keys too),
    lists and objects cut to ``MAX_JSON_ITEMS`` entries; ``JSONTooDeep`` when
    it nests deeper than ``depth``."""
    if isinstance(value, str):
        return safe_text(value, limit)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if depth <= 0:
        raise JSONTooDeep(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(value, Mapping):
        return {
            safe_text(k, limit): safe_json(v, limit, depth - 1)
            for k, v in list(value.items())[:MAX_JSON_ITEMS]
        }
    if isinstance(value, list | tuple):
        return [safe_json(v, limit, depth - 1) for v in value[:MAX_JSON_ITEMS]]
    return safe_text(value, limit)
