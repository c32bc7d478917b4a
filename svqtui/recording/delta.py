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

``diff(a, b)`` is None when the two are equal; ``apply(a, diff(a, b)) == b``
(``apply`` changes ``a`` in place: pass a copy to keep it).
"""

from __future__ import annotations

from typing import Any

Patch = list[Any]
MAX_SHIFT = 4  # list shifts looked for (a history moves by one per refresh)
_MISSING = object()


class BadPatch(ValueError):
    """A patch that does not fit the value it is applied to."""


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
    """``a`` with ``patch`` applied, IN PLACE: the objects and lists of ``a``
    that the patch changes are changed (the reader owns the value it patches:
    it was just decoded). Returns the new value (a replaced or added scalar)."""
    if type(patch) is not list or not patch:
        raise BadPatch(f"not a patch: {patch!r:.60}")
    tag = patch[0]
    try:
        if tag == "=":
            return patch[1]
        if tag == "+":
            if type(a) is not int or type(patch[1]) is not int:
                raise BadPatch("an integer patch on a non-integer")
            return a + patch[1]
        if tag == "d":
            if type(a) is not dict:
                raise BadPatch("an object patch on a non-object")
            for key in patch[2]:
                a.pop(key, None)
            for key, sub in patch[1].items():
                a[key] = apply(a.get(key), sub)
            return a
        if tag == "l":
            if type(a) is not list:
                raise BadPatch("a list patch on a non-list")
            for index, sub in patch[1].items():
                i = int(index)
                a[i] = apply(a[i], sub)
            return a
        if tag == "s":
            if type(a) is not list:
                raise BadPatch("a shift patch on a non-list")
            del a[: patch[1]]
            a.extend(patch[2])
            return a
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
        raise BadPatch(f"patch {tag!r} does not fit: {err}") from None
    raise BadPatch(f"unknown patch tag {tag!r}")
