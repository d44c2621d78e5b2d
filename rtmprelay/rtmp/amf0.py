"""AMF0: encode Python values to bytes and decode bytes to Python values.

Sans-IO: functions of bytes and values only.  The mapping both ways:

============================  ==========================================
AMF0 type (marker)            Python value
============================  ==========================================
number (0x00)                 ``float`` (``int`` and ``float`` encode here)
boolean (0x01)                ``bool``
string (0x02)                 ``str`` up to 65535 UTF-8 bytes
object (0x03)                 ``dict`` with ``str`` keys
movieclip (0x04)              refused: ``AMFError``
null (0x05)                   ``None``
undefined (0x06)              ``UNDEFINED``
reference (0x07)              the earlier object it points at (decode only)
ECMA array (0x08)             ``ECMAArray``
object end (0x09)             ends an object; anywhere else ``AMFError``
strict array (0x0A)           ``list`` (``tuple`` encodes here too)
date (0x0B)                   ``datetime``, timezone-aware UTC
long string (0x0C)            ``str`` above 65535 UTF-8 bytes
unsupported (0x0D)            ``UNSUPPORTED``
recordset (0x0E)              refused: ``AMFError``
XML document (0x0F)           ``str`` (decode only)
typed object (0x10)           ``TypedObject``
AVM+ object (0x11)            one AMF3 value, see ``amf3`` (decode only)
============================  ==========================================

Decoding:

* Numbers always come back as ``float`` (``3`` encodes and decodes as ``3.0``).
* Strings must be valid UTF-8; anything else is an ``AMFError``.
* The timezone field of a date is ignored (the spec reserves it; the
  milliseconds are UTC whatever it says).
* The count of an ECMA array is ignored: members run up to the object-end
  marker, because ffmpeg and FMS sometimes write a count of 0.
* References resolve to the very object decoded earlier (not a copy).  A
  reference to an object that is still being decoded (a cycle) is refused,
  and so is one that would nest the value deeper than ``max_depth`` or make
  it, counting shared objects once per use, larger than the input plus
  ``MAX_REFERENCE_EXPANSION`` values: a few bytes of references must not
  become a value that takes exponential time to walk or re-encode.
* ``decode_all`` shares one reference table across the values it decodes (one
  RTMP message, as Red5 reads it); each ``decode`` call starts a fresh one.
  Each AVM+ value starts fresh AMF3 tables.
* Malformed input of any kind raises ``AMFError(what, "offset N")``; nesting
  deeper than ``max_depth`` containers is malformed input, never a
  ``RecursionError``.  Sizes are checked against the bytes actually left
  before anything is allocated.

Encoding never writes references, movieclips, recordsets, XML documents or
AVM+ values.  A naive ``datetime`` is taken to be UTC.  ``ECMAArray`` keys
may be ``int`` as well as ``str`` (written as their decimal string, as dense
AMF3 array items need); object and typed-object keys must be ``str``.  Values
of other types raise ``TypeError``, values that cannot fit (a key over 65535
bytes, nesting over ``MAX_DEPTH``, which a cycle also trips) ``ValueError``.
"""

from __future__ import annotations

import datetime as _dt
import struct
from collections.abc import Callable, Iterable
from typing import Any

from rtmprelay.errors import AMFError
from rtmprelay.rtmp import amf3
from rtmprelay.rtmp._amf import (
    MAX_DEPTH,
    MAX_REFERENCE_EXPANSION,
    UNDEFINED,
    UNSUPPORTED,
    ECMAArray,
    TypedObject,
    _at,
    _byte_view,
    _check_arguments,
    _datetime,
    _Limits,
    _milliseconds,
    _need,
    _Sentinel,
    _utf8,
)

__all__ = [
    "MAX_DEPTH",
    "MAX_REFERENCE_EXPANSION",
    "UNDEFINED",
    "UNSUPPORTED",
    "ECMAArray",
    "TypedObject",
    "decode",
    "decode_all",
    "encode",
    "encode_values",
]

# --- values ----------------------------------------------------------------


# --- wire constants ----------------------------------------------------------

_NUMBER = 0x00
_BOOLEAN = 0x01
_STRING = 0x02
_OBJECT = 0x03
_MOVIECLIP = 0x04
_NULL = 0x05
_UNDEFINED = 0x06
_REFERENCE = 0x07
_ECMA_ARRAY = 0x08
_OBJECT_END = 0x09
_STRICT_ARRAY = 0x0A
_DATE = 0x0B
_LONG_STRING = 0x0C
_UNSUPPORTED = 0x0D
_RECORDSET = 0x0E
_XML_DOCUMENT = 0x0F
_TYPED_OBJECT = 0x10
_AVMPLUS = 0x11

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_DOUBLE = struct.Struct(">d")
_DATE_BODY = struct.Struct(">dh")  # milliseconds since the epoch, timezone
_MARKER_U16 = struct.Struct(">BH")
_MARKER_U32 = struct.Struct(">BI")
_MARKER_DOUBLE = struct.Struct(">Bd")
_MARKER_DATE = struct.Struct(">Bdh")

_END_OF_MEMBERS = b"\x00\x00\x09"  # empty key, then the object-end marker


# --- decoding ------------------------------------------------------------------

_Reader = Callable[["_Decoder", int, int], tuple[Any, int]]


class _Decoder:
    """Reads AMF0 values from one input, with one reference table.

    Every reader takes the offset just past its type marker and the nesting
    level a container starting there would have, and returns
    ``(value, offset after it)``.
    """

    __slots__ = ("_view", "_limits", "_references")

    def __init__(self, view: memoryview, limits: _Limits) -> None:
        self._view = view
        self._limits = limits
        self._references: list[Any] = []

    def value(self, offset: int, depth: int) -> tuple[Any, int]:
        view = self._view
        if offset >= len(view):
            raise AMFError("truncated value: need 1 byte for the type marker, have 0", _at(offset))
        marker = view[offset]
        reader = _READERS.get(marker)
        if reader is None:
            raise AMFError(f"unknown AMF0 type marker 0x{marker:02x}", _at(offset))
        limits = self._limits
        limits.values += 1
        if limits.values > limits.max_values:
            raise AMFError(f"more than {limits.max_values} values", _at(offset))
        return reader(self, offset + 1, depth)

    def _number(self, offset: int, depth: int) -> tuple[float, int]:
        _need(self._view, offset, 8, "number")
        return _DOUBLE.unpack_from(self._view, offset)[0], offset + 8

    def _boolean(self, offset: int, depth: int) -> tuple[bool, int]:
        _need(self._view, offset, 1, "boolean")
        return self._view[offset] != 0, offset + 1

    def _short_utf8(self, offset: int, what: str) -> tuple[str, int]:
        _need(self._view, offset, 2, f"{what} length")
        (size,) = _U16.unpack_from(self._view, offset)
        return _utf8(self._view, offset + 2, size, what), offset + 2 + size

    def _long_utf8(self, offset: int, what: str) -> tuple[str, int]:
        _need(self._view, offset, 4, f"{what} length")
        (size,) = _U32.unpack_from(self._view, offset)
        return _utf8(self._view, offset + 4, size, what), offset + 4 + size

    def _string(self, offset: int, depth: int) -> tuple[str, int]:
        return self._short_utf8(offset, "string")

    def _long_string(self, offset: int, depth: int) -> tuple[str, int]:
        return self._long_utf8(offset, "long string")

    def _xml_document(self, offset: int, depth: int) -> tuple[str, int]:
        return self._long_utf8(offset, "XML document")

    def _null(self, offset: int, depth: int) -> tuple[None, int]:
        return None, offset

    def _undefined(self, offset: int, depth: int) -> tuple[Any, int]:
        return UNDEFINED, offset

    def _unsupported(self, offset: int, depth: int) -> tuple[Any, int]:
        return UNSUPPORTED, offset

    def _members(self, offset: int, depth: int, into: dict[Any, Any]) -> int:
        """Read ``key value`` pairs into ``into`` up to the end marker."""
        view = self._view
        while True:
            key, offset = self._short_utf8(offset, "member name")
            if not key and offset < len(view) and view[offset] == _OBJECT_END:
                return offset + 1
            into[key], offset = self.value(offset, depth + 1)

    def _object(self, offset: int, depth: int) -> tuple[dict[str, Any], int]:
        token = self._limits.open(self._references, depth, offset - 1)
        members: dict[str, Any] = {}
        offset = self._members(offset, depth, members)
        self._limits.close(self._references, token, members, depth)
        return members, offset

    def _typed_object(self, offset: int, depth: int) -> tuple[TypedObject, int]:
        token = self._limits.open(self._references, depth, offset - 1)
        class_name, offset = self._short_utf8(offset, "class name")
        members: dict[str, Any] = {}
        offset = self._members(offset, depth, members)
        value = TypedObject(class_name, members)
        self._limits.close(self._references, token, value, depth)
        return value, offset

    def _ecma_array(self, offset: int, depth: int) -> tuple[ECMAArray, int]:
        token = self._limits.open(self._references, depth, offset - 1)
        _need(self._view, offset, 4, "ECMA array count")
        members = ECMAArray()  # the count is a hint at best: read to the end marker
        offset = self._members(offset + 4, depth, members)
        self._limits.close(self._references, token, members, depth)
        return members, offset

    def _strict_array(self, offset: int, depth: int) -> tuple[list[Any], int]:
        token = self._limits.open(self._references, depth, offset - 1)
        _need(self._view, offset, 4, "strict array count")
        (count,) = _U32.unpack_from(self._view, offset)
        offset += 4
        left = len(self._view) - offset
        if count > left:  # every item takes at least its marker byte
            raise AMFError(
                f"strict array claims {count} items but only {left} bytes are left",
                _at(offset - 4),
            )
        items = []
        for _ in range(count):
            item, offset = self.value(offset, depth + 1)
            items.append(item)
        self._limits.close(self._references, token, items, depth)
        return items, offset

    def _date(self, offset: int, depth: int) -> tuple[_dt.datetime, int]:
        _need(self._view, offset, 10, "date")
        milliseconds, _timezone = _DATE_BODY.unpack_from(self._view, offset)
        return _datetime(milliseconds, offset), offset + 10

    def _reference(self, offset: int, depth: int) -> tuple[Any, int]:
        _need(self._view, offset, 2, "reference")
        (index,) = _U16.unpack_from(self._view, offset)
        return self._limits.resolve(self._references, index, depth, offset - 1), offset + 2

    def _avmplus(self, offset: int, depth: int) -> tuple[Any, int]:
        return amf3._Decoder(self._view, self._limits).value(offset, depth)

    def _object_end(self, offset: int, depth: int) -> tuple[Any, int]:
        raise AMFError("object-end marker 0x09 outside an object", _at(offset - 1))


def _refuse(marker: int, name: str) -> _Reader:
    def refuse(decoder: _Decoder, offset: int, depth: int) -> tuple[Any, int]:
        raise AMFError(f"unsupported AMF0 type marker 0x{marker:02x} ({name})", _at(offset - 1))

    return refuse


_READERS: dict[int, _Reader] = {
    _NUMBER: _Decoder._number,
    _BOOLEAN: _Decoder._boolean,
    _STRING: _Decoder._string,
    _OBJECT: _Decoder._object,
    _MOVIECLIP: _refuse(_MOVIECLIP, "movieclip"),
    _NULL: _Decoder._null,
    _UNDEFINED: _Decoder._undefined,
    _REFERENCE: _Decoder._reference,
    _ECMA_ARRAY: _Decoder._ecma_array,
    _OBJECT_END: _Decoder._object_end,
    _STRICT_ARRAY: _Decoder._strict_array,
    _DATE: _Decoder._date,
    _LONG_STRING: _Decoder._long_string,
    _UNSUPPORTED: _Decoder._unsupported,
    _RECORDSET: _refuse(_RECORDSET, "recordset"),
    _XML_DOCUMENT: _Decoder._xml_document,
    _TYPED_OBJECT: _Decoder._typed_object,
    _AVMPLUS: _Decoder._avmplus,
}


def decode(
    data: bytes | bytearray | memoryview, offset: int = 0, *, max_depth: int = 64, max_values: int | None = None
) -> tuple[Any, int]:
    """Decode the AMF0 value at ``offset``; return it and the offset after it.

    Bytes after the value are left alone.  ``max_depth`` bounds how many
    containers may nest (0 allows scalars only, at most ``MAX_DEPTH``);
    ``max_values`` how many values may be read (the work a decode may do).
    """
    with _byte_view(data) as view:
        _check_arguments(view, offset, max_depth)
        return _Decoder(view, _Limits(max_depth, len(view), max_values)).value(offset, 1)


def decode_all(
    data: bytes | bytearray | memoryview, *, max_depth: int = 64, max_values: int | None = None
) -> list[Any]:
    """Decode every AMF0 value in ``data`` (one reference table for them all)."""
    with _byte_view(data) as view:
        _check_arguments(view, 0, max_depth)
        decoder = _Decoder(view, _Limits(max_depth, len(view), max_values))
        values = []
        offset = 0
        while offset < len(view):
            value, offset = decoder.value(offset, 1)
            values.append(value)
        return values


# --- encoding ------------------------------------------------------------------

_Writer = Callable[["_Encoder", Any, int], None]


class _Encoder:
    """Appends AMF0 values to one buffer.  ``depth`` is the nesting level a
    container written now would have."""

    __slots__ = ("out",)

    def __init__(self) -> None:
        self.out = bytearray()

    def value(self, value: Any, depth: int) -> None:
        writer = _WRITERS.get(type(value)) or _writer_for(type(value))
        writer(self, value, depth)

    def _number(self, value: float, depth: int) -> None:
        self.out += _MARKER_DOUBLE.pack(_NUMBER, value)

    def _boolean(self, value: bool, depth: int) -> None:
        self.out += b"\x01\x01" if value else b"\x01\x00"

    def _string(self, value: str, depth: int) -> None:
        raw = value.encode("utf-8")
        size = len(raw)
        if size <= 0xFFFF:
            self.out += _MARKER_U16.pack(_STRING, size)
        elif size <= 0xFFFFFFFF:
            self.out += _MARKER_U32.pack(_LONG_STRING, size)
        else:
            raise ValueError(f"string of {size} UTF-8 bytes is too long for AMF0")
        self.out += raw

    def _null(self, value: None, depth: int) -> None:
        self.out.append(_NULL)

    def _sentinel(self, value: _Sentinel, depth: int) -> None:
        self.out.append(_UNDEFINED if value is UNDEFINED else _UNSUPPORTED)

    def _date(self, value: _dt.datetime, depth: int) -> None:
        self.out += _MARKER_DATE.pack(_DATE, _milliseconds(value), 0)

    def _short_utf8(self, text: str, what: str) -> None:
        raw = text.encode("utf-8")
        if len(raw) > 0xFFFF:
            raise ValueError(f"{what} of {len(raw)} UTF-8 bytes is too long for AMF0")
        self.out += _U16.pack(len(raw))
        self.out += raw

    def _members(self, members: dict[Any, Any], depth: int, int_keys: bool = False) -> None:
        if depth > MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} (is it a cycle?)")
        for key, item in members.items():
            if isinstance(key, int) and int_keys and not isinstance(key, bool):
                key = str(key)
            elif not isinstance(key, str):
                raise TypeError(f"AMF0 member names must be str, not {type(key).__name__}")
            self._short_utf8(key, "member name")
            self.value(item, depth + 1)
        self.out += _END_OF_MEMBERS

    def _object(self, value: dict[str, Any], depth: int) -> None:
        self.out.append(_OBJECT)
        self._members(value, depth)

    def _ecma_array(self, value: ECMAArray, depth: int) -> None:
        self.out += _MARKER_U32.pack(_ECMA_ARRAY, len(value))
        self._members(value, depth, int_keys=True)

    def _typed_object(self, value: TypedObject, depth: int) -> None:
        self.out.append(_TYPED_OBJECT)
        self._short_utf8(value.class_name, "class name")
        self._members(value.members, depth)

    def _strict_array(self, value: list[Any] | tuple[Any, ...], depth: int) -> None:
        if depth > MAX_DEPTH:
            raise ValueError(f"value nests deeper than {MAX_DEPTH} (is it a cycle?)")
        self.out += _MARKER_U32.pack(_STRICT_ARRAY, len(value))
        for item in value:
            self.value(item, depth + 1)


_WRITERS: dict[type, _Writer] = {
    bool: _Encoder._boolean,  # bool before int: the MRO walk finds it first
    int: _Encoder._number,
    float: _Encoder._number,
    str: _Encoder._string,
    type(None): _Encoder._null,
    _Sentinel: _Encoder._sentinel,
    _dt.datetime: _Encoder._date,
    dict: _Encoder._object,
    ECMAArray: _Encoder._ecma_array,
    TypedObject: _Encoder._typed_object,
    list: _Encoder._strict_array,
    tuple: _Encoder._strict_array,
}


def _writer_for(cls: type) -> _Writer:
    """The writer of the nearest class in ``cls``'s MRO (IntEnum -> int, ...)."""
    for base in cls.__mro__:
        writer = _WRITERS.get(base)
        if writer is not None:
            return writer
    raise TypeError(f"cannot encode {cls.__name__} as AMF0")


def encode(value: Any) -> bytes:
    """The AMF0 bytes of ``value``."""
    encoder = _Encoder()
    encoder.value(value, 1)
    return bytes(encoder.out)


def encode_values(values: Iterable[Any]) -> bytes:
    """The AMF0 bytes of each of ``values``, one after another."""
    encoder = _Encoder()
    for value in values:
        encoder.value(value, 1)
    return bytes(encoder.out)
