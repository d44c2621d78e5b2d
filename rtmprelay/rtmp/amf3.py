"""AMF3 decoding: enough for type 15 (data) and 17 (command) messages.

Sans-IO: a function of bytes only.  Values map to the same Python types as
AMF0 (see ``amf0``), so layers above need not care which encoding arrived:

=====================  ==============================================
AMF3 type (marker)     Python value
=====================  ==============================================
undefined (0x00)       ``UNDEFINED``
null (0x01)            ``None``
false, true (0x02/3)   ``bool``
integer (0x04)         ``int`` (29 bits, sign-extended)
double (0x05)          ``float``
string (0x06)          ``str``
XML document (0x07)    ``str``
date (0x08)            ``datetime``, timezone-aware UTC
array (0x09)           ``list`` when it has no associative part;
                       otherwise an ``ECMAArray`` holding the
                       associative members under their ``str`` keys
                       *and* the dense items under ``int`` keys 0..n-1
object (0x0A)          ``dict`` for an anonymous object, else
                       ``TypedObject(class_name, members)``;
                       sealed and dynamic members together
XML (0x0B)             ``str``
byte array (0x0C)      ``bytes``
=====================  ==============================================

Externalizable objects, vectors (0x0D-0x10) and dictionaries (0x11) raise
``AMFError`` as unsupported.  The string, object and trait reference tables
live for one ``decode`` call (and for one AVM+ value inside AMF0: each 0x11
starts fresh tables).  References resolve to the very object decoded earlier;
the limits of ``amf0`` apply (cycles, nesting through references, expansion).
Every malformed input raises ``AMFError(what, "offset N")``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

import attrs

from rtmprelay.errors import AMFError
from rtmprelay.rtmp import _amf

__all__ = ["decode"]

_UNDEFINED = 0x00
_NULL = 0x01
_FALSE = 0x02
_TRUE = 0x03
_INTEGER = 0x04
_DOUBLE = 0x05
_STRING = 0x06
_XML_DOCUMENT = 0x07
_DATE = 0x08
_ARRAY = 0x09
_OBJECT = 0x0A
_XML = 0x0B
_BYTE_ARRAY = 0x0C
_VECTOR_INT = 0x0D
_VECTOR_UINT = 0x0E
_VECTOR_DOUBLE = 0x0F
_VECTOR_OBJECT = 0x10
_DICTIONARY = 0x11

_FLOAT64 = struct.Struct(">d")


@attrs.frozen
class _Traits:
    class_name: str
    dynamic: bool
    sealed: tuple[str, ...]


_Reader = Callable[["_Decoder", int, int], tuple[Any, int]]


class _Decoder:
    """Reads AMF3 values from one input, with one set of reference tables.

    Readers take the offset just past the type marker and the nesting level a
    container starting there would have; they return ``(value, offset)``.
    """

    __slots__ = ("_view", "_limits", "_strings", "_objects", "_traits")

    def __init__(self, view: memoryview, limits: _amf._Limits) -> None:
        self._view = view
        self._limits = limits
        self._strings: list[str] = []
        self._objects: list[Any] = []  # _amf._Limits table entries
        self._traits: list[_Traits] = []

    def value(self, offset: int, depth: int) -> tuple[Any, int]:
        view = self._view
        if offset >= len(view):
            raise AMFError(
                "truncated AMF3 value: need 1 byte for the type marker, have 0",
                _amf._at(offset),
            )
        marker = view[offset]
        reader = _READERS.get(marker)
        if reader is None:
            raise AMFError(f"unknown AMF3 type marker 0x{marker:02x}", _amf._at(offset))
        limits = self._limits
        limits.values += 1
        if limits.values > limits.max_values:
            raise AMFError(f"more than {limits.max_values} values", _amf._at(offset))
        return reader(self, offset + 1, depth)

    # -- building blocks

    def _u29(self, offset: int, what: str) -> tuple[int, int]:
        """A variable-length unsigned 29-bit integer: 7+7+7+8 bits at most."""
        view = self._view
        size = min(4, len(view) - offset)
        result = 0
        for index in range(size):
            byte = view[offset + index]
            if index == 3:
                return (result << 8) | byte, offset + 4
            if byte < 0x80:
                return (result << 7) | byte, offset + index + 1
            result = (result << 7) | (byte & 0x7F)
        raise AMFError(f"truncated {what}: U29 cut off after {size} bytes", _amf._at(offset))

    def _utf8_vr(self, offset: int, what: str) -> tuple[str, int]:
        """A string, or a reference to one in the string table."""
        header, body = self._u29(offset, what)
        if not header & 1:
            index = header >> 1
            if index >= len(self._strings):
                raise AMFError(
                    f"{what} reference {index}, but only {len(self._strings)} strings so far",
                    _amf._at(offset),
                )
            return self._strings[index], body
        size = header >> 1
        text = _amf._utf8(self._view, body, size, what)
        if size:  # the empty string is never put in the table
            self._strings.append(text)
        return text, body + size

    def _object_reference(self, header: int, depth: int, offset: int) -> Any:
        return self._limits.resolve(self._objects, header >> 1, depth, offset)

    def _left(self, offset: int) -> int:
        return len(self._view) - offset

    # -- readers

    def _undefined(self, offset: int, depth: int) -> tuple[Any, int]:
        return _amf.UNDEFINED, offset

    def _null(self, offset: int, depth: int) -> tuple[None, int]:
        return None, offset

    def _false(self, offset: int, depth: int) -> tuple[bool, int]:
        return False, offset

    def _true(self, offset: int, depth: int) -> tuple[bool, int]:
        return True, offset

    def _integer(self, offset: int, depth: int) -> tuple[int, int]:
        value, offset = self._u29(offset, "integer")
        if value & 0x10000000:
            value -= 0x20000000
        return value, offset

    def _double(self, offset: int, depth: int) -> tuple[float, int]:
        _amf._need(self._view, offset, 8, "double")
        return _FLOAT64.unpack_from(self._view, offset)[0], offset + 8

    def _string(self, offset: int, depth: int) -> tuple[str, int]:
        return self._utf8_vr(offset, "string")

    def _text_object(self, offset: int, depth: int, what: str) -> tuple[Any, int]:
        """XML and XML documents: UTF-8 text kept in the object table."""
        header, body = self._u29(offset, what)
        if not header & 1:
            return self._object_reference(header, depth, offset - 1), body
        size = header >> 1
        text = _amf._utf8(self._view, body, size, what)
        self._objects.append((text, 0, 1))
        return text, body + size

    def _xml_document(self, offset: int, depth: int) -> tuple[Any, int]:
        return self._text_object(offset, depth, "XML document")

    def _xml(self, offset: int, depth: int) -> tuple[Any, int]:
        return self._text_object(offset, depth, "XML")

    def _date(self, offset: int, depth: int) -> tuple[Any, int]:
        header, body = self._u29(offset, "date")
        if not header & 1:
            return self._object_reference(header, depth, offset - 1), body
        _amf._need(self._view, body, 8, "date")
        (milliseconds,) = _FLOAT64.unpack_from(self._view, body)
        value = _amf._datetime(milliseconds, body)
        self._objects.append((value, 0, 1))
        return value, body + 8

    def _byte_array(self, offset: int, depth: int) -> tuple[Any, int]:
        header, body = self._u29(offset, "byte array")
        if not header & 1:
            return self._object_reference(header, depth, offset - 1), body
        size = header >> 1
        _amf._need(self._view, body, size, "byte array")
        value = bytes(self._view[body : body + size])
        self._objects.append((value, 0, 1))
        return value, body + size

    def _array(self, offset: int, depth: int) -> tuple[Any, int]:
        start = offset - 1
        header, offset = self._u29(offset, "array header")
        if not header & 1:
            return self._object_reference(header, depth, start), offset
        count = header >> 1
        token = self._limits.open(self._objects, depth, start)
        associative: dict[str, Any] = {}
        while True:
            key, offset = self._utf8_vr(offset, "array key")
            if not key:
                break
            associative[key], offset = self.value(offset, depth + 1)
        if count > self._left(offset):  # every item takes at least its marker byte
            raise AMFError(
                f"array claims {count} dense items but only {self._left(offset)} bytes are left",
                _amf._at(start),
            )
        dense = []
        for _ in range(count):
            item, offset = self.value(offset, depth + 1)
            dense.append(item)
        value: Any = dense
        if associative:
            value = _amf.ECMAArray(enumerate(dense))
            value.update(associative)
        self._limits.close(self._objects, token, value, depth)
        return value, offset

    def _object(self, offset: int, depth: int) -> tuple[Any, int]:
        start = offset - 1
        header, offset = self._u29(offset, "object header")
        if not header & 1:
            return self._object_reference(header, depth, start), offset
        if not header & 2:
            index = header >> 2
            if index >= len(self._traits):
                raise AMFError(
                    f"traits reference {index}, but only {len(self._traits)} traits so far",
                    _amf._at(start),
                )
            traits = self._traits[index]
        elif header & 4:
            class_name, offset = self._utf8_vr(offset, "class name")
            raise AMFError(
                f"unsupported externalizable AMF3 object (class {class_name!r})",
                _amf._at(start),
            )
        else:
            class_name, offset = self._utf8_vr(offset, "class name")
            count = header >> 4
            if count > self._left(offset):  # every name takes at least one byte
                raise AMFError(
                    f"traits claim {count} sealed members but only "
                    f"{self._left(offset)} bytes are left",
                    _amf._at(start),
                )
            names = []
            for _ in range(count):
                name, offset = self._utf8_vr(offset, "sealed member name")
                names.append(name)
            traits = _Traits(class_name, bool(header & 8), tuple(names))
            self._traits.append(traits)
        token = self._limits.open(self._objects, depth, start)
        members: dict[str, Any] = {}
        for name in traits.sealed:
            members[name], offset = self.value(offset, depth + 1)
        if traits.dynamic:
            while True:
                key, offset = self._utf8_vr(offset, "dynamic member name")
                if not key:
                    break
                members[key], offset = self.value(offset, depth + 1)
        value: Any = members
        if traits.class_name:
            value = _amf.TypedObject(traits.class_name, members)
        self._limits.close(self._objects, token, value, depth)
        return value, offset


def _refuse(marker: int, name: str) -> _Reader:
    def refuse(decoder: _Decoder, offset: int, depth: int) -> tuple[Any, int]:
        raise AMFError(
            f"unsupported AMF3 type marker 0x{marker:02x} ({name})", _amf._at(offset - 1)
        )

    return refuse


_READERS: dict[int, _Reader] = {
    _UNDEFINED: _Decoder._undefined,
    _NULL: _Decoder._null,
    _FALSE: _Decoder._false,
    _TRUE: _Decoder._true,
    _INTEGER: _Decoder._integer,
    _DOUBLE: _Decoder._double,
    _STRING: _Decoder._string,
    _XML_DOCUMENT: _Decoder._xml_document,
    _DATE: _Decoder._date,
    _ARRAY: _Decoder._array,
    _OBJECT: _Decoder._object,
    _XML: _Decoder._xml,
    _BYTE_ARRAY: _Decoder._byte_array,
    _VECTOR_INT: _refuse(_VECTOR_INT, "vector of int"),
    _VECTOR_UINT: _refuse(_VECTOR_UINT, "vector of uint"),
    _VECTOR_DOUBLE: _refuse(_VECTOR_DOUBLE, "vector of double"),
    _VECTOR_OBJECT: _refuse(_VECTOR_OBJECT, "vector of object"),
    _DICTIONARY: _refuse(_DICTIONARY, "dictionary"),
}


def decode(
    data: bytes | bytearray | memoryview, offset: int = 0, *, max_depth: int = 64
) -> tuple[Any, int]:
    """Decode the AMF3 value at ``offset``; return it and the offset after it.

    Bytes after the value are left alone; the reference tables start empty.
    ``max_depth`` bounds how many containers may nest (at most
    ``amf0.MAX_DEPTH``).
    """
    with _amf._byte_view(data) as view:
        _amf._check_arguments(view, offset, max_depth)
        return _Decoder(view, _amf._Limits(max_depth, len(view))).value(offset, 1)

