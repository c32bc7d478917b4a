"""The delta between two JSON values (the wire form of two snapshots).

Between two refreshes most of a snapshot stays put and the rest moves a
little: counters grow by a few, rate histories shift by one sample. A patch
says only that, in small tagged lists that compress well:

- ``["=", value]``: replace with ``value``;
- ``["+", n]``: an integer that grew (or shrank) by ``n``;
- ``["d", {key: patch}, [removed keys]]``: a changed object;
- ``["l", {"index": patch}]``: a list of the same length, some items changed;
- ``["s", k, [items]]``: a list that dropped its first ``k`` items and got
  ``items`` at its end (a rate history).

``diff(a, b)`` is None when the two are equal; ``apply(a, diff(a, b)) == b``.
"""

from __future__ import annotations

from typing import Any

Patch = list[Any]
MAX_SHIFT = 4  # list shifts looked for (a history moves by one per refresh)
_MISSING = object()


class BadPatch(ValueError):
    """A patch that does not fit the value it is applied to."""


def _is_int(v: Any) -> bool:
    return type(v) is int


def diff(a: Any, b: Any) -> Patch | None:
    """The patch turning ``a`` into ``b``, or None when they are equal."""
    kind = type(a)
    if kind is not type(b):
        return ["=", b]
    if kind is dict:
        return _diff_dict(a, b)
    if a == b:  # compared in C: an unchanged list costs no recursion
        return None
    if kind is list:
        return _diff_list(a, b)
    if kind is int:
        return ["+", b - a]
    return ["=", b]


def _diff_dict(a: dict[str, Any], b: dict[str, Any]) -> Patch | None:
    changed: dict[str, Patch] = {}
    for key, value in b.items():
        old = a.get(key, _MISSING)
        if old is value or old == value:
            continue
        sub = ["=", value] if old is _MISSING else diff(old, value)
        if sub is not None:
            changed[key] = sub
    removed = [] if a.keys() == b.keys() else [key for key in a if key not in b]
    if not changed and not removed:
        return None
    return ["d", changed, removed]


def _diff_list(a: list[Any], b: list[Any]) -> Patch | None:
    if len(a) == len(b):
        items = {str(i): p for i, (x, y) in enumerate(zip(a, b, strict=True)) if (p := diff(x, y))}
        if not items:
            return None
        if len(items) * 2 <= len(a) or not all(isinstance(x, dict | list) for x in a):
            # a few items changed, or a list of scalars: try a shift first
            shifted = _shift(a, b)
            if shifted is not None and len(shifted[2]) < len(items):
                return shifted
        return ["l", items]
    shifted = _shift(a, b)
    return shifted if shifted is not None else ["=", b]


def _shift(a: list[Any], b: list[Any]) -> Patch | None:
    for k in range(min(MAX_SHIFT, len(a)) + 1):
        kept = len(a) - k
        if len(b) >= kept and a[k:] == b[:kept]:
            return ["s", k, b[kept:]]
    return None


def apply(a: Any, patch: Patch) -> Any:
    """``a`` with ``patch`` applied (a new value; ``a`` is not changed)."""
    if not isinstance(patch, list) or not patch:
        raise BadPatch(f"not a patch: {patch!r:.60}")
    tag = patch[0]
    try:
        if tag == "=":
            return patch[1]
        if tag == "+":
            if not _is_int(a) or not _is_int(patch[1]):
                raise BadPatch("an integer patch on a non-integer")
            return a + patch[1]
        if tag == "d":
            if not isinstance(a, dict):
                raise BadPatch("an object patch on a non-object")
            out = {k: v for k, v in a.items() if k not in patch[2]}
            for key, sub in patch[1].items():
                out[key] = apply(a.get(key), sub)
            return out
        if tag == "l":
            if not isinstance(a, list):
                raise BadPatch("a list patch on a non-list")
            items = list(a)
            for index, sub in patch[1].items():
                items[int(index)] = apply(items[int(index)], sub)
            return items
        if tag == "s":
            if not isinstance(a, list):
                raise BadPatch("a shift patch on a non-list")
            return a[patch[1] :] + list(patch[2])
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise BadPatch(f"patch {tag!r} does not fit: {err}") from None
    raise BadPatch(f"unknown patch tag {tag!r}")
