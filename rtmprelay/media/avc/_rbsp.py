"""A raw NAL unit (7.3.1, no start code, no length prefix): its one-byte header,
and its RBSP with emulation prevention (7.4.1) removed or put back.

Bit offsets kept in parsed values count from the first bit of the RBSP, that is
``unescape_rbsp(nal[1:])``: the bytes after the header, emulation prevention
removed. ``rbsp_reader`` is where every parser of this package starts.
"""

from __future__ import annotations

import re

from rtmprelay.errors import MediaError
from rtmprelay.media.bits import BitReader

_EPB = b"\x00\x00\x03"
_NEEDS_EPB = re.compile(b"\x00\x00(?=[\x00-\x03])")


def unescape_rbsp(nal_payload: bytes) -> bytes:
    """Remove emulation_prevention_three_byte: every 0x03 after two zero bytes."""
    data = bytes(nal_payload)
    if _EPB not in data:
        return data
    return data.replace(_EPB, b"\x00\x00")


def escape_rbsp(rbsp: bytes) -> bytes:
    """Insert 0x03 wherever two zero bytes are followed by a byte <= 3, and after a
    final zero byte (an RBSP ending in cabac_zero_words), as 7.4.1 requires."""
    data = _NEEDS_EPB.sub(b"\x00\x00\x03", bytes(rbsp))
    if data.endswith(b"\x00"):
        data += b"\x03"
    return data


def nal_unit_type(nal: bytes) -> int:
    """``nal_unit_type``: the low 5 bits of the NAL header byte (the per-message quick read)."""
    if not nal:
        raise MediaError("empty NAL unit", "NAL unit byte 0")
    return nal[0] & 0x1F


def nal_ref_idc(nal: bytes) -> int:
    """``nal_ref_idc``: bits 5-6 of the NAL header byte (0 = not a reference)."""
    if not nal:
        raise MediaError("empty NAL unit", "NAL unit byte 0")
    return (nal[0] >> 5) & 0x03


def nal_header(nal: bytes) -> tuple[int, int]:
    """``(nal_ref_idc, nal_unit_type)`` of a raw NAL unit whose RBSP is to be parsed:
    a set forbidden_zero_bit is refused here."""
    if not nal:
        raise MediaError("empty NAL unit", where="NAL header")
    first = nal[0]
    if first & 0x80:
        raise MediaError("forbidden_zero_bit is set", where="NAL header")
    return (first >> 5) & 3, first & 0x1F


def make_nal(nal_ref_idc: int, nal_unit_type: int, rbsp: bytes) -> bytes:
    """A raw NAL unit: header byte then the escaped RBSP."""
    return bytes([(nal_ref_idc << 5) | nal_unit_type]) + escape_rbsp(rbsp)


def rbsp_reader(
    nal: bytes, what: str, nal_unit_types: tuple[int, ...]
) -> tuple[int, int, BitReader]:
    """``(nal_ref_idc, nal_unit_type, reader of the RBSP)`` of a NAL unit that must be
    one of ``nal_unit_types``; ``what`` names the structure in every error."""
    nal_ref_idc, nal_unit_type = nal_header(nal)
    if nal_unit_type not in nal_unit_types:
        raise MediaError(
            f"NAL unit type {nal_unit_type} is not a {what}", where=f"{what} NAL header"
        )
    return nal_ref_idc, nal_unit_type, BitReader(unescape_rbsp(nal[1:]), what)
