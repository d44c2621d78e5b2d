"""onMetaData as the relay keeps it: plain values, bounded in size.

A publisher's onMetaData is shown in ``/api/streams``, rewritten by the
cleaner and re-encoded for every player and upstream. What arrives may hold
anything AMF can carry (AMF3 byte arrays, typed objects, thousands of keys,
huge strings): kept as it came, it crashed the AMF0 re-encode or made every
API call slow. So only values AMF0 writes back unchanged are kept (numbers,
booleans, strings, null, dates, and objects and arrays of those), within the
bounds below; everything else is left out and counted.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import attrs

__all__ = ["MAX_ITEMS", "MAX_STRING", "SanitizedMetadata", "sanitize_metadata"]

#: Values kept in all (keys and list items, at every level).
MAX_ITEMS = 256
#: Characters kept of a string or key; longer ones are cut.
MAX_STRING = 256
#: Containers nested below the top-level object.
MAX_NESTING = 2


@attrs.frozen
class SanitizedMetadata:
    metadata: dict
    #: Values left out (unsupported type, too deep, over MAX_ITEMS) or cut (strings).
    altered: int


def sanitize_metadata(metadata: dict) -> SanitizedMetadata:
    """``metadata`` with only plain, bounded values (see the module doc)."""
    budget = _Budget()
    return SanitizedMetadata(_object(metadata, 0, budget), budget.altered)


class _Budget:
    __slots__ = ("items", "altered")

    def __init__(self) -> None:
        self.items = 0
        self.altered = 0

    def take(self) -> bool:
        self.items += 1
        if self.items > MAX_ITEMS:
            self.altered += 1
            return False
        return True


_MISSING = object()


def _object(members: dict, depth: int, budget: _Budget) -> dict:
    out: dict = {}
    for key, value in members.items():
        if not budget.take():
            continue
        if isinstance(key, int) and not isinstance(key, bool):
            key = str(key)
        if not isinstance(key, str):
            budget.altered += 1
            continue
        if len(key) > MAX_STRING:
            key = key[:MAX_STRING]
            budget.altered += 1
        kept = _value(value, depth, budget)
        if kept is not _MISSING:
            out[key] = kept
    return out


def _value(value: Any, depth: int, budget: _Budget) -> Any:
    if value is None or isinstance(value, (bool, int, float, _dt.datetime)):
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING:
            budget.altered += 1
            return value[:MAX_STRING]
        return value
    if isinstance(value, (dict, list, tuple)) and depth < MAX_NESTING:
        if isinstance(value, dict):
            return type(value)(_object(value, depth + 1, budget))  # dict, or AMF0's ECMAArray
        items = []
        for item in value:
            if not budget.take():
                continue
            kept = _value(item, depth + 1, budget)
            if kept is not _MISSING:
                items.append(kept)
        return items
    budget.altered += 1
    return _MISSING
