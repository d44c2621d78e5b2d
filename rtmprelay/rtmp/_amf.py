"""What AMF0 and AMF3 share: the Python values both decode to, the limits of one
decode call, and the small readers both use.

Private: ``amf0`` and ``amf3`` re-export what callers need. It exists so that
the two codecs do not import each other's internals (``amf0`` reads an AMF3
value inside its AVM+ marker and so imports ``amf3``; ``amf3`` imports only
this module).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import enum
import math
from collections.abc import Iterator
from typing import Any

import attrs

from rtmprelay.errors import AMFError

#: The largest ``max_depth`` a decode accepts, and the deepest value
#: ``encode`` writes: comfortably inside Python's recursion limit.
MAX_DEPTH = 200

#: How many values, beyond one per input byte, references may add to a decode.
MAX_REFERENCE_EXPANSION = 1 << 20



# --- values ----------------------------------------------------------------


class _Sentinel(enum.Enum):
    UNDEFINED = "undefined"
    UNSUPPORTED = "unsupported"

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    def __bool__(self) -> bool:
        return False


#: AMF undefined (``None`` is AMF null).  A falsy singleton.
UNDEFINED = _Sentinel.UNDEFINED
#: The AMF0 "unsupported" marker (0x0D).  A falsy singleton.
UNSUPPORTED = _Sentinel.UNSUPPORTED


class ECMAArray(dict):  # type: ignore[type-arg]
    """A dict that encodes as an AMF0 ECMA array (``onMetaData`` uses one)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"ECMAArray({dict.__repr__(self)})"


@attrs.frozen
class TypedObject:
    """An object with a class name (AMF0 typed object, AMF3 sealed class)."""

    class_name: str = attrs.field(validator=attrs.validators.instance_of(str))
    members: dict[str, Any] = attrs.field(
        factory=dict, validator=attrs.validators.instance_of(dict)
    )



_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_MS = _dt.timedelta(milliseconds=1)


# --- helpers for reading -------------------------------------------------------


def _at(offset: int) -> str:
    return f"offset {offset}"


def _need(view: memoryview, offset: int, size: int, what: str) -> None:
    """Raise unless ``size`` bytes are left at ``offset``."""
    have = len(view) - offset
    if have < size:
        raise AMFError(f"truncated {what}: need {size} bytes, have {have}", _at(offset))


def _utf8(view: memoryview, offset: int, size: int, what: str) -> str:
    _need(view, offset, size, what)
    try:
        return str(view[offset : offset + size], "utf-8")
    except UnicodeDecodeError as error:
        raise AMFError(
            f"invalid UTF-8 in {what}: {error.reason}", _at(offset + error.start)
        ) from None


def _datetime(milliseconds: float, offset: int) -> _dt.datetime:
    """The UTC datetime ``milliseconds`` after the epoch (read at ``offset``)."""
    if not math.isfinite(milliseconds):
        raise AMFError(f"date is not a finite number: {milliseconds}", _at(offset))
    try:
        return _EPOCH + _dt.timedelta(milliseconds=milliseconds)
    except OverflowError:
        raise AMFError(f"date out of range: {milliseconds} ms", _at(offset)) from None


def _milliseconds(value: _dt.datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=_dt.timezone.utc)
    return (value - _EPOCH) / _ONE_MS


@contextlib.contextmanager
def _byte_view(data: bytes | bytearray | memoryview) -> Iterator[memoryview]:
    """A flat unsigned-byte view of ``data``, released on the way out so a
    caller's bytearray can be resized again even if an error is in flight."""
    view = memoryview(data)
    flat = view if view.format == "B" and view.ndim == 1 else view.cast("B")
    try:
        yield flat
    finally:
        flat.release()
        view.release()


def _check_arguments(view: memoryview, offset: int, max_depth: int) -> None:
    if not 0 <= offset <= len(view):
        raise ValueError(f"offset {offset} is outside the {len(view)}-byte input")
    if not 0 <= max_depth <= MAX_DEPTH:
        raise ValueError(f"max_depth must be between 0 and {MAX_DEPTH}, not {max_depth}")


_PENDING = object()  # a reference table slot whose object is still being decoded


class _Limits:
    """What one decode call may still build: how deep, and, through
    references, how big.  Shared by the AMF0 and AMF3 decoders of one call.

    Reference tables hold ``(value, height, size)`` per object: the nesting
    levels the value spans and how many values it holds, so a reference can
    be charged for what it brings in.
    """

    __slots__ = ("max_depth", "max_values", "values", "deepest")

    def __init__(self, max_depth: int, input_size: int, max_values: int | None = None) -> None:
        self.max_depth = max_depth
        self.max_values = input_size + MAX_REFERENCE_EXPANSION
        if max_values is not None and max_values < self.max_values:
            self.max_values = max_values
        self.values = 0  # counted by the decoders, one per value read
        self.deepest = 0  # deepest nesting level reached in the open container

    def open(self, table: list[Any], depth: int, offset: int) -> tuple[int, int, int]:
        """Begin a container at nesting level ``depth``; reserve its slot."""
        if depth > self.max_depth:
            raise AMFError(f"nesting deeper than {self.max_depth}", _at(offset))
        token = (len(table), self.deepest, self.values)
        table.append(_PENDING)
        self.deepest = depth
        return token

    def close(
        self, table: list[Any], token: tuple[int, int, int], value: Any, depth: int
    ) -> None:
        slot, outer_deepest, values_before = token
        table[slot] = (value, self.deepest - depth + 1, self.values - values_before + 1)
        if outer_deepest > self.deepest:
            self.deepest = outer_deepest

    def resolve(self, table: list[Any], index: int, depth: int, offset: int) -> Any:
        """The object ``index`` refers to, placed at nesting level ``depth``."""
        if index >= len(table):
            raise AMFError(
                f"reference to object {index}, but only {len(table)} objects so far",
                _at(offset),
            )
        entry = table[index]
        if entry is _PENDING:
            raise AMFError(
                f"reference to object {index}, which is still being decoded (a cycle)",
                _at(offset),
            )
        value, height, size = entry
        reached = depth + height - 1
        if reached > self.max_depth:
            raise AMFError(
                f"nesting deeper than {self.max_depth} through reference {index}",
                _at(offset),
            )
        if reached > self.deepest:
            self.deepest = reached
        self.values += size - 1
        if self.values > self.max_values:
            raise AMFError(
                f"references expand the value past {self.max_values} values", _at(offset)
            )
        return value
